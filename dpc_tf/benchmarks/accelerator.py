"""Accelerator figures: forward latency, training images/s and proxy trials/hour on a GPU.

Run on a machine with an accelerator through tools/accelerator_benchmark.py (which passes
the paper-scale sizes); CI never runs it, and `python -m dpc_tf.benchmark all` skips it
(IN_ALL). Without a GPU it refuses unless --accelerator_allow_cpu (how its test runs it at
tiny sizes). Every measurement is a fresh child process (dpc_tf/benchmarks/_child.py):
  - forward: MobileNet-v2 + DPC and Xception-71 + DPC + decoder, the batch-norm-folded model
    that Predictor runs, as a tf.function, with XLA (jit_compile), and both again under the
    mixed_float16 policy; first call, median latency, GFLOP/s against the same process'
    float32 matmul (the forward benchmark's child, dpc_tf/benchmarks/forward.py);
  - training: the real Trainer loop (training benchmark's child), float32 and float16
    mixed precision, images/s over the steps after the first;
  - proxy: the proxy's train step (DPC + logits on cached MobileNet-v2 features, the proxy
    benchmark's step) with and without XLA; trials/hour = 3600 / (step x the paper's 30K
    steps per trial), a projection that leaves out evaluation and start-up.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from absl import flags

from dpc_tf.benchmarks import _child as child
from dpc_tf.errors import DpcError

IN_ALL = False  # `benchmark all` on a CPU machine must not overwrite a GPU's figures
NOT_MEASURED = ("Not measured yet: no accelerator was available when this benchmark was "
                "written (it was run on CPU at tiny sizes only). On a GPU machine run "
                "`python tools/accelerator_benchmark.py`; it fills this section with the "
                "device's name.")
FORWARD_MODES = {"function": dict(mode="function"), "xla": dict(mode="xla"),
                 "mixed": dict(mode="function", precision="mixed_float16"),
                 "mixed_xla": dict(mode="xla", precision="mixed_float16")}
PAPER_PROXY_STEPS = 30_000

flags.DEFINE_bool("accelerator_allow_cpu", False, "Run without a GPU (tests, tiny sizes).")
flags.DEFINE_list("accelerator_configs", ["mobilenet_v2_dpc", "xception_71_dpc_decoder"],
                  "Forward configurations (dpc_tf/benchmarks/forward.py's CONFIGS).")
flags.DEFINE_list("accelerator_forward_modes", list(FORWARD_MODES), "Forward modes.")
flags.DEFINE_integer("accelerator_forward_size", 0, "Square forward size; 0 = each "
                     "configuration's own (769x769, 1025x2049).")
flags.DEFINE_integer("accelerator_forward_batch", 1, "Forward batch.")
flags.DEFINE_integer("accelerator_forward_repeats", 20, "Timed forward calls.")
flags.DEFINE_list("accelerator_train_configs", ["mobilenet_v2_dpc", "xception_71_dpc"],
                  "Training configurations (dpc_tf/benchmarks/training.py's TRAIN_CONFIGS).")
flags.DEFINE_list("accelerator_train_precisions", ["float32", "float16"], "Training precisions.")
flags.DEFINE_integer("accelerator_train_crop", 513, "Training crop (square).")
flags.DEFINE_integer("accelerator_train_batch", 8, "Training global batch.")
flags.DEFINE_integer("accelerator_train_steps", 20, "Timed training steps.")
flags.DEFINE_integer("accelerator_proxy_crop", 769, "Proxy crop (features at crop / 16).")
flags.DEFINE_integer("accelerator_proxy_batch", 8, "Proxy batch (the paper's).")
flags.DEFINE_integer("accelerator_proxy_steps", 20, "Timed proxy steps.")
flags.DEFINE_integer("accelerator_matmul_size", 8192, "n of the float32 n^3 matmul reference.")
flags.DEFINE_integer("accelerator_child_timeout_s", 1800, "Limit per child process.")
FLAGS = flags.FLAGS


def device_name() -> str:
  """The first GPU's model name (e.g. 'NVIDIA H100 80GB HBM3'), or 'CPU' without one."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus:
    return "CPU"
  details = tf.config.experimental.get_device_details(gpus[0])
  return f"{details.get('device_name', gpus[0].name)} (x{len(gpus)})"


def _proxy_child(spec: dict) -> dict:
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dpc_tf import models  # pylint: disable=import-outside-toplevel
  from dpc_tf.backbones import backbone_channels  # pylint: disable=import-outside-toplevel
  from dpc_tf.benchmarks.proxy import _train_step  # pylint: disable=import-outside-toplevel
  from dpc_tf.layers import scale_dimension  # pylint: disable=import-outside-toplevel
  from dpc_tf.training.losses import mean_cross_entropy  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  crop, batch = spec["crop"], spec["batch"]
  feature, channels = scale_dimension(crop, 1 / 16), backbone_channels("mobilenet_v2")
  x = tf.constant(rng.normal(size=(batch, feature, feature, channels)), tf.float32)
  y = tf.constant(rng.integers(0, 19, (batch, crop, crop, 1)), tf.uint8)
  head = models.build_head_model(19, channels, crop_size=crop)
  step = _train_step(head, lambda out, labels: mean_cross_entropy(labels, out),
                     head.trainable_variables, jit=spec["xla"])
  start = time.perf_counter()
  step(x, y).numpy()
  first = time.perf_counter() - start
  runs = []
  for _ in range(spec["steps"]):
    start = time.perf_counter()
    step(x, y).numpy()
    runs.append(time.perf_counter() - start)
  median = statistics.median(runs)
  return {"first_step_s": round(first, 3), "step_s": round(median, 5),
          "trials_per_hour": round(3600.0 / (median * PAPER_PROXY_STEPS), 3)}


def run() -> dict:
  name = device_name()
  if name == "CPU" and not FLAGS.accelerator_allow_cpu:
    raise DpcError("no GPU visible to TensorFlow: the accelerator benchmark is for a GPU "
                   "machine (tools/accelerator_benchmark.py); --accelerator_allow_cpu runs it "
                   "anyway (tiny sizes, for testing)")
  result = {"device": name, "forward": {}, "train": {}, "proxy": {},
            "forward_batch": FLAGS.accelerator_forward_batch,
            "train_crop": FLAGS.accelerator_train_crop,
            "train_batch": FLAGS.accelerator_train_batch,
            "proxy_crop": FLAGS.accelerator_proxy_crop,
            "proxy_batch": FLAGS.accelerator_proxy_batch}
  timeout = FLAGS.accelerator_child_timeout_s
  size = FLAGS.accelerator_forward_size
  for config in FLAGS.accelerator_configs:
    for mode in FLAGS.accelerator_forward_modes:
      spec = {"config": config, **FORWARD_MODES[mode], "fold": True,
              "size": [size, size] if size else None,
              "batch": FLAGS.accelerator_forward_batch,
              "repeats": FLAGS.accelerator_forward_repeats, "budget_s": 120.0,
              "matmul_size": FLAGS.accelerator_matmul_size, "matmul_repeats": 5}
      result["forward"][f"{config}:{mode}"] = child.run_child(
          "dpc_tf.benchmarks.forward", spec, timeout)
  for config in FLAGS.accelerator_train_configs:
    for precision in FLAGS.accelerator_train_precisions:
      spec = {"kind": "train", "config": config, "crop": FLAGS.accelerator_train_crop,
              "batch": FLAGS.accelerator_train_batch, "steps": FLAGS.accelerator_train_steps,
              "mixed_precision": None if precision == "float32" else precision}
      result["train"][f"{config}:{precision}"] = child.run_child(
          "dpc_tf.benchmarks.training", spec, timeout)
  for xla in (False, True):
    spec = {"crop": FLAGS.accelerator_proxy_crop, "batch": FLAGS.accelerator_proxy_batch,
            "steps": FLAGS.accelerator_proxy_steps, "xla": xla}
    result["proxy"]["xla" if xla else "function"] = child.run_child(__name__, spec, timeout)
  return result


def _row(cells) -> str:
  return "| " + " | ".join(str(c) for c in cells) + " |"


def to_markdown(result: dict) -> str:
  lines = [f"Device: **{result['device']}**. Forward: batch {result['forward_batch']}, "
           f"batch-norm-folded model (what Predictor runs); \"% of matmul\" is of the same "
           f"process' float32 matmul.", "",
           "| forward | first call (s) | latency (s) | GFLOP/s | % of matmul |",
           "|---|---|---|---|---|"]
  for key, m in result["forward"].items():
    if "error" in m:
      lines.append(_row([key, m["error"], "", "", ""]))
      continue
    lines.append(_row([key, f"{m['first_call_s']:.2f}", f"{m['latency_s']:.4f}",
                       f"{m['gflops']:.0f}", f"{100 * m['fraction_of_matmul']:.0f}%"]))
  lines += ["", f"Training (Trainer loop, crop {result['train_crop']}, global batch "
            f"{result['train_batch']}):", "", "| training | first step (s) | step (s) | "
            "images/s | peak host RSS (MB) |", "|---|---|---|---|---|"]
  for key, m in result["train"].items():
    if "error" in m:
      lines.append(_row([key, m["error"], "", "", ""]))
      continue
    lines.append(_row([key, f"{m['first_step_s']:.1f}", f"{m['step_s_median']:.4f}",
                       f"{m['images_per_s']:.1f}", m["peak_rss_mb"]]))
  lines += ["", f"Proxy step (DPC + logits on MobileNet-v2 features of crop "
            f"{result['proxy_crop']}, batch {result['proxy_batch']}); trials/hour projected at "
            f"the paper's {PAPER_PROXY_STEPS} steps per trial, evaluation left out:", "",
            "| proxy | first step (s) | step (s) | trials/hour |", "|---|---|---|---|"]
  for key, m in result["proxy"].items():
    if "error" in m:
      lines.append(_row([key, m["error"], "", ""]))
      continue
    lines.append(_row([key, f"{m['first_step_s']:.2f}", f"{m['step_s']:.4f}",
                       f"{m['trials_per_hour']:.2f}"]))
  return "\n".join(lines)


if __name__ == "__main__":
  # Child mode (see child.run_child): one JSON spec argument, one JSON result line.
  print(json.dumps(_proxy_child(json.loads(sys.argv[1]))))
