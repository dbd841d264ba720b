"""The paper's four claims in miniature on dpc_synthetic (`python -m dpc_tf.reproduce`).

  store.py    ResultStore: one JSON per finished trial, written atomically; a rerun reuses it
  stats.py    Spearman rho, best-so-far curves (pure Python)
  runners.py  TfRunner: the real proxy trial, full-task training and head costs (TensorFlow)
  claims.py   fidelity | vs_aspp | search_strategy | proxy_cost, against any runner
  report.py   docs/REPRODUCTION.md and its plots from the stored claim JSON
"""
