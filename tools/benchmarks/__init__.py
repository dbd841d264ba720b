"""One module per benchmark; see tools/benchmark.py."""
