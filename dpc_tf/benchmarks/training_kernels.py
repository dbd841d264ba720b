"""What the training kernels buy: fused batch norm and 1x1 convs as matmuls, step by step.

Three variants of the same train step, built side by side in one process and timed
round-robin (proxy._time_interleaved), so the shared machine's load hits them alike:
  - keras:    keras' BatchNormalization code and Conv2D for 1x1 convs (the code before);
  - fused:    layers/batch_norm.py's fused kernel when training;
  - fused+mm: that, and conv_blocks.pointwise_conv's matmul for stride-1 1x1 convs (today).
Steps: the demo's proxy step (gin/search/synthetic_demo.gin: 64 filters, 17x17x160 cached
features, batch 8, labels at the features) for the released cell and the ASPP head, and the
re-rank's full training step (MobileNet-v2 depth 0.5 + released DPC + decoder, crop 129,
batch 8). Random data of the right shapes (timings do not depend on values).
"""

from __future__ import annotations

import contextlib
import statistics

from absl import flags

from dpc_tf.benchmarks.proxy import _time_interleaved

flags.DEFINE_integer("training_kernels_rounds", 15, "Timed rounds (one call of each step "
                     "per round; the median is reported).")
flags.DEFINE_integer("training_kernels_calls", 10, "Steps per timed call.")
flags.DEFINE_integer("training_kernels_crop", 129, "Crop of the full training step.")
flags.DEFINE_integer("training_kernels_feature", 17, "Cached feature size of the proxy steps.")
FLAGS = flags.FLAGS

VARIANTS = ("keras", "fused", "fused+mm")


@contextlib.contextmanager
def _variant(name: str):
  """While tracing: the kernels of `name` (the code reads them at trace time)."""
  # pylint: disable=import-outside-toplevel,protected-access
  from dpc_tf.backbones import blocks
  from dpc_tf.layers import batch_norm, conv_blocks
  fusable, pointwise = batch_norm.BatchNorm._fusable, conv_blocks.pointwise_conv
  if name == "keras":
    batch_norm.BatchNorm._fusable = lambda self, *args: False
  if name != "fused+mm":
    conv_blocks.pointwise_conv = blocks.pointwise_conv = lambda conv, x, training=None: conv(x)
  try:
    yield
  finally:
    batch_norm.BatchNorm._fusable = fusable
    conv_blocks.pointwise_conv = blocks.pointwise_conv = pointwise


def _step(model, x, y, calls: int):
  """`calls` SGD steps of model on (x, y) as one Python call, the loss fetched at the end."""
  # pylint: disable=import-outside-toplevel
  import keras
  import tensorflow as tf
  from dpc_tf.training import losses
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  optimizer.build(model.trainable_variables)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      logits = losses.logits_at_label_size(model(x, training=True), y)
      loss = losses.mean_cross_entropy(y, logits) + losses.regularization_loss(model.losses)
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  def run():
    for _ in range(calls):
      loss = step()
    return float(loss)
  run.step = step
  return run


def _models(crop: int, feature: int):
  """{case: (make_model, x, y)} of the timed steps."""
  # pylint: disable=import-outside-toplevel
  import numpy as np
  import tensorflow as tf
  from dpc_tf import models
  rng = np.random.default_rng(0)
  classes, channels, batch = 6, 160, 8
  features = tf.constant(rng.normal(size=(batch, feature, feature, channels)), tf.float32)
  small = tf.constant(rng.integers(0, classes, (batch, feature, feature, 1)), tf.int32)
  images = tf.constant(rng.uniform(0, 255, (batch, crop, crop, 3)), tf.float32)
  labels = tf.constant(rng.integers(0, classes, (batch, crop, crop, 1)), tf.int32)
  proxy_crop = (feature - 1) * 16 + 1

  def head(kind):
    return lambda: models.build_head_model(classes, channels, head=kind, crop_size=proxy_crop,
                                           filters=64, bn_momentum=0.9,
                                           **({"projection_filters": 64} if kind == "dpc"
                                              else {}))
  return {"proxy step, released cell": (head("dpc"), features, small),
          "proxy step, ASPP head": (head("aspp"), features, small),
          "full training step": (lambda: models.build_deeplab(
              classes, "mobilenet_v2", crop_size=crop, depth_multiplier=0.5), images, labels)}


def run() -> dict:
  import keras  # pylint: disable=import-outside-toplevel
  out = {"rounds": FLAGS.training_kernels_rounds, "calls": FLAGS.training_kernels_calls,
         "crop": FLAGS.training_kernels_crop, "feature": FLAGS.training_kernels_feature,
         "cases": {}}
  for case, (make, x, y) in _models(out["crop"], out["feature"]).items():
    steps = {}
    for variant in VARIANTS:
      keras.utils.set_random_seed(0)
      with _variant(variant):
        steps[variant] = _step(make(), x, y, out["calls"])
        steps[variant]()  # traced here, with this variant's kernels
    timed = _time_interleaved(steps, warmup=1, repeats=out["rounds"], budget_s=1e9)
    base = timed["keras"]["median_s"]
    out["cases"][case] = {v: {"step_ms": t["median_s"] / out["calls"] * 1e3,
                              "vs_keras": t["median_s"] / base} for v, t in timed.items()}
  return out


def to_markdown(result: dict) -> str:
  lines = [f"Train steps (median ms per step over {result['rounds']} round-robin rounds of "
           f"{result['calls']} steps). keras: Keras' batch-norm code and Conv2D for 1x1 convs; "
           f"fused: batch norm through FusedBatchNormV3 when training (layers/batch_norm.py); "
           f"fused+mm: and stride-1 1x1 convs as matmuls when training "
           f"(conv_blocks.pointwise_conv), what runs today. Proxy steps: 64 filters on "
           f"{result['feature']}x{result['feature']}x160 features, batch 8; full step: "
           f"MobileNet-v2 (depth 0.5) + released DPC + decoder at crop {result['crop']}, "
           f"batch 8.", "", "| step | " + " | ".join(VARIANTS) + " | today vs keras |",
           "|---|" + "---|" * (len(VARIANTS) + 1)]
  for case, r in result["cases"].items():
    cells = " | ".join(f"{r[v]['step_ms']:.1f}" for v in VARIANTS)
    lines.append(f"| {case} | {cells} | {r['fused+mm']['vs_keras']:.2f}x the time |")
  speedups = [1 / r["fused+mm"]["vs_keras"] for r in result["cases"].values()]
  lines += ["", f"Steps per second, today against keras: {statistics.median(speedups):.2f}x "
            f"(median over the steps). Outputs and gradients agree to float noise "
            f"(tests/layers/test_training_kernels.py); inference runs the same ops as before."]
  return "\n".join(lines)
