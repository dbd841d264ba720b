"""Benchmark machinery that must be right for the figures to mean anything (never timings)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.benchmarks import _child, _profiling, accelerator, training, training_kernels
from dpc_tf.errors import DpcError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_child_reports_its_own_peak_not_its_parents():
  ballast = np.ones(300 * 2 ** 20 // 8)  # 300 MB resident in this (the parent) process
  ballast[::512] = 2.0
  code = "from dpc_tf.benchmarks import _child; print(_child.peak_rss_mb())"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONPATH": ROOT})
  assert float(out.stdout.split()[-1]) < 150  # getrusage's ru_maxrss read >= 300 here
  assert _child.peak_rss_mb() >= 300 > ballast[0]


def test_memory_fit_inverts_a_linear_peak():
  peak = lambda crop, batch: 1000 + 2e-3 * batch * crop * crop  # MB
  points = [(c, b, peak(c, b)) for c, b in ((129, 1), (257, 1), (193, 2))]
  fit = training.memory_fit(points, limit_mb=peak(1025, 1) + 1)
  assert fit["intercept_mb"] == 1000 and fit["mb_per_megapixel"] == 2000
  assert fit["max_crop_per_batch"]["1"] == 1025 and fit["max_crop_per_batch"]["4"] == 497
  assert fit["max_batch_per_crop"]["513"] == 3  # 4 x 513^2 > 1025^2


def test_profiler_summary_finds_the_op_that_takes_the_time():
  a = tf.random.stateless_uniform((256, 256), seed=(1, 2))
  matmuls = tf.function(lambda: tf.reduce_sum(tf.matmul(tf.matmul(a, a), a)))
  matmuls()
  profile = _profiling.op_times(matmuls, calls=2)
  ops = {o["op"]: o for o in profile["ops"]}
  top = profile["ops"][0]["op"]
  assert top in ("MatMul", "BatchMatMulV2") and ops[top]["count"] == 2
  assert abs(sum(o["share"] for o in profile["ops"]) - 1) < 1e-3 and profile["wall_s"] > 0


def test_accelerator_benchmark_refuses_a_cpu(monkeypatch):
  monkeypatch.setattr(accelerator, "device_name", lambda: "CPU")
  accelerator.FLAGS(["prog"], known_only=True)
  with pytest.raises(DpcError, match="no GPU"):
    accelerator.run()


def test_training_kernels_variants_really_run_their_kernels():
  """Each variant's traced step holds its own kernels, and the patching is undone."""
  from dpc_tf.layers import batch_norm, conv_blocks  # pylint: disable=import-outside-toplevel
  fusable, pointwise = batch_norm.BatchNorm._fusable, conv_blocks.pointwise_conv
  make, x, y = training_kernels._models(crop=33, feature=3)["proxy step, ASPP head"]
  ops = {}
  for variant in training_kernels.VARIANTS:
    with training_kernels._variant(variant):
      run = training_kernels._step(make(), x, y, calls=1)
      run()
    graph = run.step.get_concrete_function().graph
    ops[variant] = {op.type for op in graph.get_operations()}
  assert "FusedBatchNormV3" not in ops["keras"] and "FusedBatchNormV3" in ops["fused"]
  assert "Einsum" not in ops["fused"] and "Einsum" in ops["fused+mm"]
  assert batch_norm.BatchNorm._fusable is fusable and conv_blocks.pointwise_conv is pointwise
