"""Training throughput and peak memory of whole models, and SavedModel serving latency.

Training: the real loop (dpc_tf.training.Trainer, default strategy, float32) on the
built-in dpc_synthetic data at a small crop, for MobileNet-v2 + DPC, MobileNet-v2 + ASPP
(the DPC against the ASPP head on the same backbone) and Xception-71 + DPC, all with the
decoder. Throughput is global images per second over the steps after the first (which
includes tracing, reported apart); the input pipeline is part of the loop, as in real
training. Each child trains one model with every train.steps_per_call of
--training_steps_per_call in turn, round after round (the same process, weights and load:
before/after as a ratio), then times the step function alone on one fixed batch ("step
only"): the loop's rate against that is what the loop adds around the step (input pipeline,
host round trips for the guard, metrics and logging). Memory: the
child process' own peak resident set size (VmHWM, _child.peak_rss_mb) and its growth from
just before the trainer was built (tf.config.experimental.get_memory_info reads zero on CPU).

Memory limit: Xception-71 + DPC + decoder is trained for 2 steps at several (crop, batch)
sizes, each in a fresh process; a least-squares line peak = a + b * batch * crop^2 through
the measured peaks estimates the largest crop per batch (and batch per crop) whose peak
stays under the machine's memory (an extrapolation, labelled as such: a direct probe
near the limit would push a shared machine into swap).

Serving: MobileNet-v2 + DPC exported with dpc_tf.training.export_saved_model and loaded
with tf.saved_model.load, against the same model in process (Predictor in a tf.function),
batch 1 at the evaluation size; median of the timed calls after a warm-up call.

Each configuration runs in its own subprocess so that memory figures do not mix.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

from absl import flags

from dpc_tf.benchmarks import _child as child
from dpc_tf.errors import DpcError

TRAIN_CONFIGS = {
    "mobilenet_v2_dpc": dict(backbone="mobilenet_v2", head="dpc"),
    "mobilenet_v2_aspp": dict(backbone="mobilenet_v2", head="aspp"),
    "xception_71_dpc": dict(backbone="xception_71", head="dpc"),
}

flags.DEFINE_list("training_configs", list(TRAIN_CONFIGS), f"Which of {', '.join(TRAIN_CONFIGS)}.")
flags.DEFINE_integer("training_crop", 129, "Training crop (square) of every configuration.")
flags.DEFINE_integer("training_batch", 4, "Global batch of every configuration.")
flags.DEFINE_integer("training_steps", 8, "Timed steps per configuration (after one warm-up).")
flags.DEFINE_integer("training_serve_size", 257, "Image size (square) of the serving test.")
flags.DEFINE_integer("training_serve_repeats", 10, "Timed serving calls per variant.")
flags.DEFINE_integer("training_child_timeout_s", 900, "Limit per child process.")
flags.DEFINE_integer("training_step_only_calls", 3, "Timed calls of the bare step function.")
flags.DEFINE_list("training_steps_per_call", ["1", "8"],
                  "train.steps_per_call values compared in each training child (1 = one "
                  "call per step, the loop before the setting existed).")
flags.DEFINE_integer("training_rounds", 2, "Rounds over --training_steps_per_call per child.")
flags.DEFINE_list("training_memory_sizes", ["129:4", "193:1", "257:1"],
                  "CROP:BATCH sizes of the Xception-71 memory fit, each 2 steps in a fresh "
                  "process (empty: skip the fit). The throughput run's own peak is not used: "
                  "it trains longer and traces two step functions.")
flags.DEFINE_float("training_memory_limit_gib", 0.0, "Memory to fit in; 0 = this machine's.")
FLAGS = flags.FLAGS




def _train_child(spec: dict) -> dict:
  import dataclasses  # pylint: disable=import-outside-toplevel
  from dpc_tf.training.config import TrainConfig  # pylint: disable=import-outside-toplevel
  from dpc_tf.training.trainer import Trainer  # pylint: disable=import-outside-toplevel
  config = TRAIN_CONFIGS[spec["config"]]
  per_call = spec.get("steps_per_call", [1])
  train = TrainConfig(dataset="dpc_synthetic", batch_size=spec["batch"], crop_size=spec["crop"],
                      num_steps=spec.get("warmup_steps", 1),
                      checkpoint_every=10 ** 6, log_every=10 ** 6,
                      summary_every=10 ** 6, image_summary_every=0, seed=0,
                      bn_momentum=0.9, base_learning_rate=0.01,
                      mixed_precision=spec.get("mixed_precision"))
  times = []
  rss_before = child.rss_mb()
  rates = {str(k): [] for k in per_call}
  with tempfile.TemporaryDirectory() as model_dir:
    started = time.perf_counter()
    trainer = Trainer(train, model_dir, model_overrides=dict(config),
                      step_callback=lambda step, values: times.append(time.perf_counter()))
    built = time.perf_counter()
    trainer.train()  # step 1: tracing
    first_step = times[0] - built
    # Each later train() resumes in memory; its first call is one step (and, for K > 1, the
    # first call of the K-step function traces it), then `steps` timed steps.
    for _ in range(spec.get("rounds", 1)):
      for k in per_call:
        times.clear()
        trainer.config = dataclasses.replace(
            trainer.config, num_steps=int(trainer.step.numpy()) + spec["steps"] + 1,
            steps_per_call=k)
        trainer.train()
        rates[str(k)].append(spec["batch"] * (len(times) - 1) / (times[-1] - times[0]))
    step_only = _time_step_only(trainer, train, spec.get("step_only_calls", 0))
  result = {"params": int(trainer.model.count_params()),
            "build_s": round(built - started, 2), "first_step_s": round(first_step, 2),
            "images_per_s": {k: round(statistics.median(v), 2) for k, v in rates.items() if v},
            "images_per_s_rounds": {k: [round(r, 2) for r in v] for k, v in rates.items() if v},
            "peak_rss_mb": round(child.peak_rss_mb()),
            "rss_growth_mb": round(child.peak_rss_mb() - rss_before)}
  if step_only is not None:
    result["step_only_s"] = round(step_only, 3)
    result["loop_overhead"] = {k: round(spec["batch"] / step_only / v - 1.0, 3)
                               for k, v in result["images_per_s"].items()}
  return result


def _time_step_only(trainer, train, calls: int):
  """Median time of the step function alone on one fixed batch (no loop around it)."""
  if calls < 1:
    return None
  from dpc_tf.training import inputs  # pylint: disable=import-outside-toplevel
  batch = next(iter(inputs.distributed_train_dataset(train, trainer.strategy, 0)))
  step = trainer._train_step  # pylint: disable=protected-access
  runs = []
  for _ in range(calls):
    start = time.perf_counter()
    step(batch)["loss"].numpy()
    runs.append(time.perf_counter() - start)
  return statistics.median(runs)


def memory_fit(points: list[tuple[int, int, float]], limit_mb: float) -> dict:
  """Least-squares peak_mb = a + b * batch * crop^2 through (crop, batch, peak_mb) points;
  the largest DeepLab crop (16k + 1) per batch and batch per crop under limit_mb."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  pixels = np.array([batch * crop * crop for crop, batch, _ in points], np.float64)
  peaks = np.array([peak for _, _, peak in points], np.float64)
  slope, intercept = np.polyfit(pixels, peaks, 1)
  budget = (limit_mb - intercept) / slope  # batch x crop^2 that fits
  fit = {"intercept_mb": round(float(intercept)), "mb_per_megapixel": round(float(slope) * 1e6,
                                                                            1),
         "limit_mb": round(limit_mb), "max_batch_x_pixels": int(budget),
         "max_crop_per_batch": {}, "max_batch_per_crop": {}}
  for batch in (1, 2, 4, 8, 16):
    crop = int((budget / batch) ** 0.5) if budget > 0 else 0
    fit["max_crop_per_batch"][str(batch)] = (crop - 1) // 16 * 16 + 1 if crop > 16 else 0
  for crop in (513, 769, 1025):
    fit["max_batch_per_crop"][str(crop)] = max(int(budget // (crop * crop)), 0)
  return fit


def _memory_limit_mb() -> float:
  if FLAGS.training_memory_limit_gib > 0:
    return FLAGS.training_memory_limit_gib * 1024.0
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2.0 ** 20


def _serve_child(spec: dict) -> dict:
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dpc_tf import data, models  # pylint: disable=import-outside-toplevel
  from dpc_tf.training import export  # pylint: disable=import-outside-toplevel
  from dpc_tf.training.inference import Predictor  # pylint: disable=import-outside-toplevel
  size = spec["size"]
  model = models.build_deeplab(7, backbone="mobilenet_v2", crop_size=(size, size))
  images = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
  predictor = tf.function(Predictor(model).__call__)

  def timed(fn, argument):
    start = time.perf_counter()
    fn(argument)
    first = time.perf_counter() - start
    runs = []
    for _ in range(spec["repeats"]):
      start = time.perf_counter()
      out = fn(argument)
      np.asarray(out[0] if isinstance(out, tuple) else out["labels"])
      runs.append(time.perf_counter() - start)
    return {"first_call_s": round(first, 3), "latency_s": round(statistics.median(runs), 4)}

  result = {"in_process": timed(predictor, tf.constant(images, tf.float32))}
  with tempfile.TemporaryDirectory() as folder:
    start = time.perf_counter()
    export.export_saved_model(model, os.path.join(folder, "sm"), data.get_spec("dpc_synthetic"))
    result["export_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    serve = tf.saved_model.load(os.path.join(folder, "sm")).signatures["serving_default"]
    result["load_s"] = round(time.perf_counter() - start, 2)
    result["saved_model"] = timed(lambda x: serve(images=x), tf.constant(images))
  return result



def run() -> dict:
  unknown = [c for c in FLAGS.training_configs if c not in TRAIN_CONFIGS]
  if unknown:
    raise DpcError(f"unknown training configuration(s) {', '.join(unknown)}; "
                     f"known: {', '.join(TRAIN_CONFIGS)}")
  per_call = [int(k) for k in FLAGS.training_steps_per_call]
  if not per_call or min(per_call) < 1:
    raise DpcError(f"--training_steps_per_call={','.join(FLAGS.training_steps_per_call)}: "
                   f"give positive integers")
  result = {"crop": FLAGS.training_crop, "batch": FLAGS.training_batch,
            "timed_steps": FLAGS.training_steps, "steps_per_call": per_call,
            "rounds": FLAGS.training_rounds,
            "load_average_before": [round(l, 2) for l in os.getloadavg()],
            "cpus_usable": len(os.sched_getaffinity(0)), "train": {}}
  for name in FLAGS.training_configs:
    spec = {"kind": "train", "config": name, "crop": FLAGS.training_crop,
            "batch": FLAGS.training_batch, "steps": FLAGS.training_steps,
            "step_only_calls": FLAGS.training_step_only_calls,
            "steps_per_call": per_call, "rounds": FLAGS.training_rounds}
    result["train"][name] = {**TRAIN_CONFIGS[name],
                             **child.run_child(__name__, spec, FLAGS.training_child_timeout_s)}
  if FLAGS.training_memory_sizes:
    points, probes = [], []
    for size in FLAGS.training_memory_sizes:
      crop, batch = (int(v) for v in size.split(":"))
      spec = {"kind": "train", "config": "xception_71_dpc", "crop": crop, "batch": batch,
              "steps": 0, "rounds": 0, "warmup_steps": 2}
      probe = {"crop": crop, "batch": batch,
               **child.run_child(__name__, spec, FLAGS.training_child_timeout_s)}
      probes.append(probe)
      if "error" not in probe:
        points.append((crop, batch, probe["peak_rss_mb"]))
    result["memory"] = {"config": "xception_71_dpc", "probes": probes}
    if len({b * c * c for c, b, _ in points}) >= 2:
      result["memory"]["fit"] = memory_fit(points, _memory_limit_mb())
  spec = {"kind": "serve", "size": FLAGS.training_serve_size,
          "repeats": FLAGS.training_serve_repeats}
  result["serve"] = {"model": "mobilenet_v2_dpc", "size": FLAGS.training_serve_size,
                     **child.run_child(__name__, spec, FLAGS.training_child_timeout_s)}
  result["load_average_after"] = [round(l, 2) for l in os.getloadavg()]
  return result


def to_markdown(result: dict) -> str:
  per_call = [str(k) for k in result.get("steps_per_call", [1])]
  base = per_call[0]
  lines = [f"Training loop (dpc_tf.training.Trainer, float32, default strategy, decoder on) on "
           f"dpc_synthetic, crop {result['crop']}x{result['crop']}, global batch "
           f"{result['batch']}; images/s over {result['timed_steps']} steps after a warm-up "
           f"step, median of {result.get('rounds', 1)} round(s), each round training with "
           f"train.steps_per_call = {', '.join(per_call)} in turn in the same process; "
           f"{result['cpus_usable']} usable CPU(s), load average "
           f"{result['load_average_before'][0]} before / {result['load_average_after'][0]} "
           f"after (shared machine: upper bounds). Memory: each child's own peak RSS (VmHWM). "
           f"\"Step only\": the step function alone on a fixed batch; \"loop adds\": the "
           f"step-only rate over the loop's, minus 1 (noise can make it negative).", "",
           "| model | params | build (s) | first step (s) | "
           + " | ".join(f"images/s (K={k})" for k in per_call)
           + "".join(f" | K={k} vs K={base}" for k in per_call[1:])
           + " | step only (s) | loop adds | peak RSS (MB) | RSS growth (MB) |",
           "|---|---|---|---|" + "---|" * (2 * len(per_call) - 1) + "---|---|---|---|"]
  for name, m in result["train"].items():
    if "error" in m:
      lines.append(f"| {name} | {m['error']} |" + " |" * (2 * len(per_call) + 5))
      continue
    rates = m["images_per_s"]
    only = f"{m['step_only_s']:.3f}" if "step_only_s" in m else ""
    adds = ", ".join(f"K={k}: {100 * v:+.0f}%" for k, v in m.get("loop_overhead", {}).items())
    lines.append(f"| {name} | {m['params'] / 1e6:.2f}M | {m['build_s']:.1f} | "
                 f"{m['first_step_s']:.1f} | "
                 + " | ".join(f"{rates[k]:.2f}" for k in per_call)
                 + "".join(f" | {rates[k] / rates[base]:.2f}x" for k in per_call[1:])
                 + f" | {only} | {adds} | {m['peak_rss_mb']} | {m['rss_growth_mb']} |")
  if "memory" in result:
    lines += ["", "Peak memory of Xception-71 + DPC + decoder training (2 steps, each size in a "
              "fresh process):", "", "| crop | batch | peak RSS (MB) |", "|---|---|---|"]
    for p in result["memory"]["probes"]:
      peak = p.get("peak_rss_mb", p.get("error"))
      lines.append(f"| {p['crop']} | {p['batch']} | {peak} |")
    fit = result["memory"].get("fit")
    if fit:
      crops = ", ".join(f"batch {b}: {c}x{c}" for b, c in fit["max_crop_per_batch"].items())
      batches = ", ".join(f"{c}x{c}: {b}" for c, b in fit["max_batch_per_crop"].items())
      lines += ["", f"**Estimate** (a linear fit through these peaks, extrapolated; not a "
                f"direct probe): peak = {fit['intercept_mb']} MB + {fit['mb_per_megapixel']} MB "
                f"per training megapixel (batch x crop^2). Under {fit['limit_mb']} MB the "
                f"largest crop is {crops}; the largest batch is {batches}."]
  s = result["serve"]
  lines += ["", f"Serving {s['model']} at {s['size']}x{s['size']}, batch 1, single scale:", ""]
  if "error" in s:
    lines.append(f"error: {s['error']}")
    return "\n".join(lines)
  lines += ["| variant | first call (s) | latency (s) |", "|---|---|---|",
            f"| in process (Predictor, tf.function) | {s['in_process']['first_call_s']:.2f} | "
            f"{s['in_process']['latency_s']:.4f} |",
            f"| SavedModel serving_default (uint8 in) | {s['saved_model']['first_call_s']:.2f} | "
            f"{s['saved_model']['latency_s']:.4f} |", "",
            f"Export took {s['export_s']:.1f} s and loading {s['load_s']:.1f} s."]
  return "\n".join(lines)


if __name__ == "__main__":
  # Child mode (see child.run_child): one JSON spec argument, one JSON result line.
  _spec = json.loads(sys.argv[1])
  print(json.dumps(_train_child(_spec) if _spec["kind"] == "train" else _serve_child(_spec)))
