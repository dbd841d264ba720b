"""One module per benchmark (`python -m dpc_tf.benchmark NAME`); see dpc_tf/benchmark.py."""
