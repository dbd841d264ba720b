"""Where the time goes: op-by-op TensorFlow profiler summaries of the forward pass and the
training step, beside the same process' matmul reference.

Cases (each in a fresh child process): the forward of MobileNet-v2 + DPC and Xception-71 +
DPC + decoder (batch 1, inference, tf.function), unfolded (batch norm as Keras runs it) and
with batch norm folded into the convolutions (dpc_tf.models.fold_batch_norm, what Predictor,
evaluation and the SavedModel run); and one training step of the real loop
(dpc_tf.training.Trainer's step function, float32) of MobileNet-v2 + DPC and Xception-71 +
DPC with the decoder on dpc_synthetic. Op times come from a profiler trace of `calls` runs
after a warm-up run (dpc_tf/benchmarks/_profiling.py): the sum over the executor's compute
threads per op type. Each child also measures a float32 matmul (the reference of the forward
benchmark) so the case's achieved GFLOP/s reads as a fraction of the machine's at that moment.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from absl import flags

from dpc_tf.benchmarks import _child as child
from dpc_tf.errors import DpcError
from dpc_tf.benchmarks import _profiling

CASES = {
    "forward:mobilenet_v2_dpc": dict(backbone="mobilenet_v2", decoder_output_stride=None),
    "forward_folded:mobilenet_v2_dpc": dict(backbone="mobilenet_v2", decoder_output_stride=None),
    "forward:xception_71_dpc_decoder": dict(backbone="xception_71", decoder_output_stride=4),
    "forward_folded:xception_71_dpc_decoder": dict(backbone="xception_71",
                                                   decoder_output_stride=4),
    "train:mobilenet_v2_dpc": dict(backbone="mobilenet_v2", head="dpc"),
    "train:xception_71_dpc": dict(backbone="xception_71", head="dpc"),
}

flags.DEFINE_list("profile_cases", list(CASES), f"Which of {', '.join(CASES)}.")
flags.DEFINE_integer("profile_size", 513, "Forward input size (square).")
flags.DEFINE_integer("profile_train_crop", 129, "Training crop (square).")
flags.DEFINE_integer("profile_train_batch", 4, "Training global batch.")
flags.DEFINE_integer("profile_calls", 2, "Profiled calls per case (after one warm-up call).")
flags.DEFINE_integer("profile_top", 8, "Ops listed per case.")
flags.DEFINE_integer("profile_child_timeout_s", 900, "Limit per case.")
FLAGS = flags.FLAGS


def _forward(spec: dict, config: dict):
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dpc_tf import costs, models  # pylint: disable=import-outside-toplevel
  size = (spec["size"], spec["size"])
  model = models.build_deeplab(19, config["backbone"], crop_size=size,
                               decoder_output_stride=config["decoder_output_stride"])
  madds = costs.model_costs(model, size + (3,), *models.model_parts(model))["total"]["madds"]
  if spec["case"].startswith("forward_folded"):
    model = models.fold_batch_norm(model)
  images = tf.constant(np.random.default_rng(0).uniform(0, 255, (1,) + size + (3,)), tf.float32)
  forward = tf.function(lambda x: model(x, training=False))
  return (lambda: forward(images)), 2 * madds, 1


def _train(spec: dict, config: dict, model_dir: str):
  from dpc_tf.training import inputs  # pylint: disable=import-outside-toplevel
  from dpc_tf.training.config import TrainConfig  # pylint: disable=import-outside-toplevel
  from dpc_tf.training.trainer import Trainer  # pylint: disable=import-outside-toplevel
  train = TrainConfig(dataset="dpc_synthetic", batch_size=spec["batch"], crop_size=spec["crop"],
                      num_steps=10, seed=0, bn_momentum=0.9, base_learning_rate=0.01)
  trainer = Trainer(train, model_dir, model_overrides=dict(config))
  batch = next(iter(inputs.distributed_train_dataset(train, trainer.strategy, 0)))
  step = trainer._train_step  # pylint: disable=protected-access
  return (lambda: step(batch)), None, spec["batch"]


def _case_child(spec: dict) -> dict:
  from dpc_tf.benchmarks.forward import matmul_gflops  # pylint: disable=import-outside-toplevel
  config = CASES[spec["case"]]
  with tempfile.TemporaryDirectory() as model_dir:
    if spec["case"].startswith("train"):
      fn, flops, images = _train(spec, config, model_dir)
    else:
      fn, flops, images = _forward(spec, config)
    start = time.perf_counter()
    _profiling.fetch(fn())  # warm-up: tracing and the first run
    first = time.perf_counter() - start
    profile = _profiling.op_times(fn, spec["calls"])
  reference = matmul_gflops(spec["matmul_size"], repeats=3)
  result = {"first_call_s": round(first, 3), "matmul_gflops": reference["gflops"],
            "images_per_s": round(images / profile["wall_s"], 2), **profile,
            "peak_rss_mb": round(child.peak_rss_mb())}
  result["ops"] = result["ops"][:spec["top"]]
  if flops:
    result["gflops"] = round(flops / profile["wall_s"] / 1e9, 2)
  return result


def run() -> dict:
  unknown = [c for c in FLAGS.profile_cases if c not in CASES]
  if unknown:
    raise DpcError(f"unknown profile case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
  result = {"size": FLAGS.profile_size, "train_crop": FLAGS.profile_train_crop,
            "train_batch": FLAGS.profile_train_batch, "calls": FLAGS.profile_calls,
            "cpus_usable": len(os.sched_getaffinity(0)),
            "load_average_before": [round(l, 2) for l in os.getloadavg()], "cases": {}}
  for case in FLAGS.profile_cases:
    spec = {"case": case, "size": FLAGS.profile_size, "crop": FLAGS.profile_train_crop,
            "batch": FLAGS.profile_train_batch, "calls": FLAGS.profile_calls,
            "top": FLAGS.profile_top, "matmul_size": FLAGS.forward_matmul_size}
    result["cases"][case] = child.run_child(__name__, spec, FLAGS.profile_child_timeout_s)
  result["load_average_after"] = [round(l, 2) for l in os.getloadavg()]
  return result


def to_markdown(result: dict) -> str:
  lines = [f"TensorFlow profiler, op by op: forward at {result['size']}x{result['size']} batch 1 "
           f"(tf.function, inference), training step at crop {result['train_crop']} global batch "
           f"{result['train_batch']} (Trainer's step function, float32); {result['calls']} "
           f"profiled calls after a warm-up, each case in a fresh process. {result['cpus_usable']}"
           f" usable CPU(s), load average {result['load_average_before'][0]} before / "
           f"{result['load_average_after'][0]} after. \"ms\" is per call, summed over the "
           f"executor's threads (so it can exceed the wall time); \"share\" is of that sum. "
           f"Wall times are under the profiler (a little slower than the other benchmarks).", ""]
  for case, m in result["cases"].items():
    if "error" in m:
      lines += [f"**{case}**: {m['error']}", ""]
      continue
    speed = (f", {m['gflops']:.1f} GFLOP/s = {100 * m['gflops'] / m['matmul_gflops']:.0f}% "
             f"of this process' matmul ({m['matmul_gflops']:.0f} GFLOP/s)" if "gflops" in m else
             f", {m['images_per_s']:.2f} images/s (matmul {m['matmul_gflops']:.0f} GFLOP/s)")
    lines += [f"**{case}**: {m['wall_s']:.3f} s per call{speed}; op time {m['op_ms']:.0f} ms.",
              "", "| op | ms | calls | share |", "|---|---|---|---|"]
    lines += [f"| {o['op']} | {o['ms']:.1f} | {o['count']} | {100 * o['share']:.0f}% |"
              for o in m["ops"]]
    lines.append("")
  return "\n".join(lines)


if __name__ == "__main__":
  # Child mode (see child.run_child): one JSON spec argument, one JSON result line.
  print(json.dumps(_case_child(json.loads(sys.argv[1]))))
