"""Forward latency, peak memory and achieved GFLOP/s of full DeepLab models on this machine.

Configurations: Xception-71 + released DPC + decoder at 1025x2049 (the released Cityscapes
eval setting) and MobileNet-v2 + released DPC (no decoder) at 769x769 (the proxy's
backbone at the training crop), batch 1, inference mode; each run eagerly, as a
tf.function ("function": the model as trained, batch norm as separate ops), as a tf.function
of the batch-norm-folded copy that Predictor, evaluation and the SavedModel run ("folded",
dpc_tf.models.fold_batch_norm; fold_s is the time to make the copy) and as a tf.function
with jit_compile=True (XLA).

Each (configuration, mode) runs in its own subprocess so that memory figures do not mix:
peak memory is the child's own peak resident set size (VmHWM; _child.peak_rss_mb says why
not getrusage) and its growth over
the resident size just before the first forward call (the model and input already built).
tf.config.experimental.get_memory_info reports zeros on CPU, hence RSS. Latency is the
median of the timed calls after one warm-up call (which includes tracing / XLA compilation
and is reported as first_call_s); repetitions stop early once a time budget is spent.
GFLOP/s = 2 x multiply-adds (dpc_tf.costs: convolutions only) / latency, shown beside a
large float32 matmul's GFLOP/s: each child measures it right after its model (its fraction
is model / that matmul: the same process at nearly the same moment, which is what survives a
shared machine's load), and the run measures it before and after all children.
"paired" (at --forward_paired_size, 513x513 by default, the size of the issue's TF1
comparison) builds the model and its folded copy in one process and times them call by call,
alternately (the order swapped every pair), so both see the same load: the median of the
per-pair latency ratios is the folded speed-up least disturbed by a shared machine.
--forward_rounds > 1 runs every (configuration, mode) child that many times, alternating
modes, and reports the median of each figure; "folded vs function" is the median over rounds
of the folded child's fraction of matmul over the function child's of the same round.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from absl import flags

from dpc_tf.benchmarks import _child as child
from dpc_tf.errors import DpcError

CONFIGS = {
    "xception_71_dpc_decoder": dict(backbone="xception_71", decoder_output_stride=4,
                                    size=(1025, 2049)),
    "mobilenet_v2_dpc": dict(backbone="mobilenet_v2", decoder_output_stride=None,
                             size=(769, 769)),
}
MODES = ("eager", "function", "folded", "xla", "paired")
ALL_SKIP = ("xception_71_dpc_decoder:xla",)  # what `benchmark.py all` skips by default

flags.DEFINE_list("forward_configs", list(CONFIGS), f"Which of {', '.join(CONFIGS)}.")
flags.DEFINE_list("forward_modes", list(MODES), f"Which of {', '.join(MODES)}.")
flags.DEFINE_integer("forward_repeats", 2, "Timed calls per mode (after one warm-up call).")
flags.DEFINE_integer("forward_rounds", 1, "Children per (configuration, mode), alternating.")
flags.DEFINE_integer("forward_child_matmul_repeats", 3, "Matmul repeats in each child.")
flags.DEFINE_integer("forward_paired_size", 513, "Square input of the paired mode.")
flags.DEFINE_integer("forward_paired_calls", 8, "Call pairs (unfolded, folded) of the paired mode.")
flags.DEFINE_float("forward_time_budget_s", 20.0, "Stop timing a mode once this many seconds "
                   "of timed calls are spent (at least one call is always timed).")
flags.DEFINE_integer("forward_matmul_size", 4096, "n of the n x n x n float32 matmul.")
flags.DEFINE_integer("forward_child_timeout_s", 900, "Limit per (configuration, mode) child.")
flags.DEFINE_list("forward_skip", [], "CONFIG:MODE pairs not to measure; each keeps its last "
                  "measurement from --results_dir's forward.json, marked with its date. "
                  "`benchmark.py all` skips " + ",".join(ALL_SKIP) + " unless this flag is "
                  "given (over 10 minutes on 2 CPU cores); `benchmark.py forward` skips none.")
FLAGS = flags.FLAGS



def _child(spec: dict) -> dict:
  """Runs one (configuration, mode) in this process; returns its measurements."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dpc_tf import costs, models  # pylint: disable=import-outside-toplevel
  import keras  # pylint: disable=import-outside-toplevel
  if spec["mode"] == "paired":
    return _paired_child(spec)
  config = CONFIGS[spec["config"]]
  size = tuple(spec.get("size") or config["size"])
  batch = spec.get("batch", 1)
  if spec.get("precision"):  # e.g. mixed_float16 (the accelerator benchmark)
    keras.config.set_dtype_policy(spec["precision"])
  model = models.build_deeplab(19, config["backbone"], crop_size=size,
                               decoder_output_stride=config["decoder_output_stride"])
  madds = batch * costs.model_costs(model, size + (3,),
                                    *models.model_parts(model))["total"]["madds"]
  images = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch,) + size + (3,)),
                       tf.float32)
  mode = spec["mode"]
  fold_s = None
  if mode == "folded" or spec.get("fold"):
    start = time.perf_counter()
    model = models.fold_batch_norm(model)
    fold_s = round(time.perf_counter() - start, 3)
  if mode == "eager":
    forward = lambda x: model(x, training=False)
  else:
    forward = tf.function(lambda x: model(x, training=False), jit_compile=(mode == "xla"))
  rss_before = child.rss_mb()
  start = time.perf_counter()
  forward(images).numpy()
  first = time.perf_counter() - start
  runs = []
  while len(runs) < spec["repeats"] and (not runs or sum(runs) < spec["budget_s"]):
    start = time.perf_counter()
    forward(images).numpy()
    runs.append(time.perf_counter() - start)
  peak = child.peak_rss_mb()
  latency = statistics.median(runs)
  gflops = 2 * madds / latency / 1e9
  reference = matmul_gflops(spec["matmul_size"], spec["matmul_repeats"])["gflops"]
  result = {"first_call_s": round(first, 3), "runs_s": [round(r, 3) for r in runs],
            "latency_s": round(latency, 5), "madds": madds, "gflops": round(gflops, 2),
            "matmul_gflops": reference, "fraction_of_matmul": round(gflops / reference, 4),
            "peak_rss_mb": round(peak), "rss_growth_mb": round(peak - rss_before)}
  if fold_s is not None:
    result["fold_s"] = fold_s
  return result


def _paired_child(spec: dict) -> dict:
  """Unfolded and folded tf.functions of one model, timed alternately in this process."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dpc_tf import costs, models  # pylint: disable=import-outside-toplevel
  config = CONFIGS[spec["config"]]
  size = tuple(spec["size"])
  model = models.build_deeplab(19, config["backbone"], crop_size=size,
                               decoder_output_stride=config["decoder_output_stride"])
  madds = costs.model_costs(model, size + (3,), *models.model_parts(model))["total"]["madds"]
  folded = models.fold_batch_norm(model)
  images = tf.constant(np.random.default_rng(0).uniform(0, 255, (1,) + size + (3,)), tf.float32)
  calls = {"function": tf.function(lambda x: model(x, training=False)),
           "folded": tf.function(lambda y: folded(y, training=False))}
  for fn in calls.values():
    fn(images).numpy()
  times = {name: [] for name in calls}
  for index in range(spec["pairs"]):
    for name in (("function", "folded") if index % 2 == 0 else ("folded", "function")):
      start = time.perf_counter()
      calls[name](images).numpy()
      times[name].append(time.perf_counter() - start)
  ratios = [a / b for a, b in zip(times["function"], times["folded"])]
  reference = matmul_gflops(spec["matmul_size"], spec["matmul_repeats"])["gflops"]
  result = {"input": list(size), "madds": madds, "pairs": spec["pairs"],
            "speedup": round(statistics.median(ratios), 3),
            "speedups": [round(r, 3) for r in ratios], "matmul_gflops": reference}
  for name, runs in times.items():
    gflops = 2 * madds / statistics.median(runs) / 1e9
    result[name] = {"latency_s": round(statistics.median(runs), 4), "gflops": round(gflops, 2),
                    "fraction_of_matmul": round(gflops / reference, 4)}
  return result


def _median_of_rounds(rounds: list[dict]) -> dict:
  """One child's figures, or the median of each numeric figure over several rounds."""
  good = [r for r in rounds if "error" not in r]
  if not good:
    return rounds[0]
  if len(good) == 1:
    return good[0]
  merged = dict(good[0])
  for key, value in good[0].items():
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      merged[key] = statistics.median(r[key] for r in good)
  merged["rounds"] = len(good)
  merged["fraction_of_matmul_rounds"] = [r["fraction_of_matmul"] for r in good]
  return merged



def matmul_gflops(n: int, repeats: int = 5) -> dict:
  """Best-of-`repeats` float32 n x n matmul throughput: the practical compute ceiling."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  a = tf.random.stateless_uniform((n, n), seed=(1, 2))
  b = tf.random.stateless_uniform((n, n), seed=(3, 4))
  matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
  matmul(a, b).numpy()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).numpy()
    times.append(time.perf_counter() - start)
  best = min(times)
  return {"n": n, "seconds": round(best, 3), "gflops": round(2 * n ** 3 / best / 1e9, 2)}


def _previous(name: str, mode: str) -> dict:
  """The last stored measurement of (name, mode), marked as carried over, or an error."""
  path = os.path.join(FLAGS.results_dir, "forward.json")
  try:
    with open(path) as f:
      stored = json.load(f)
    entry = dict(stored["result"]["configs"][name]["modes"][mode])
  except (OSError, KeyError, ValueError):
    return {"error": "skipped (--forward_skip), no earlier measurement"}
  if "error" not in entry and "carried_from" not in entry:  # measured by that run itself
    entry["carried_from"] = stored.get("date", "an earlier run")
    # that run's machine speed: on a shared machine it can differ severalfold from this one's
    entry["carried_matmul_gflops"] = stored["result"].get("matmul", {}).get("gflops")
  return entry


def run() -> dict:
  unknown = [c for c in FLAGS.forward_configs if c not in CONFIGS] + [
      m for m in FLAGS.forward_modes if m not in MODES]
  if unknown:
    raise DpcError(f"unknown forward configuration(s)/mode(s) {', '.join(unknown)}; "
                     f"configs: {', '.join(CONFIGS)}; modes: {', '.join(MODES)}")
  result = {"batch": 1, "load_average_before": [round(l, 2) for l in os.getloadavg()],
            "cpus_usable": len(os.sched_getaffinity(0)),
            "memory_method": "each child's own peak RSS (VmHWM of a fresh process); growth = "
                             "peak minus RSS before the first forward call",
            "matmul_before": matmul_gflops(FLAGS.forward_matmul_size), "configs": {}}
  for name in FLAGS.forward_configs:
    config = CONFIGS[name]
    entry = {"backbone": config["backbone"], "input": list(config["size"]),
             "decoder_output_stride": config["decoder_output_stride"], "modes": {}}
    if "paired" in FLAGS.forward_modes and f"{name}:paired" not in FLAGS.forward_skip:
      size = FLAGS.forward_paired_size
      spec = {"config": name, "mode": "paired", "size": [size, size],
              "pairs": FLAGS.forward_paired_calls, "matmul_size": FLAGS.forward_matmul_size,
              "matmul_repeats": FLAGS.forward_child_matmul_repeats}
      entry["paired"] = child.run_child(__name__, spec, FLAGS.forward_child_timeout_s)
    measured = {m: [] for m in FLAGS.forward_modes
                if m != "paired" and f"{name}:{m}" not in FLAGS.forward_skip}
    for _ in range(max(1, FLAGS.forward_rounds)):
      for mode in measured:
        spec = {"config": name, "mode": mode, "repeats": FLAGS.forward_repeats,
                "budget_s": FLAGS.forward_time_budget_s,
                "matmul_size": FLAGS.forward_matmul_size,
                "matmul_repeats": FLAGS.forward_child_matmul_repeats}
        measured[mode].append(child.run_child(__name__, spec, FLAGS.forward_child_timeout_s))
    for mode in FLAGS.forward_modes:
      if mode != "paired":
        entry["modes"][mode] = (_median_of_rounds(measured[mode]) if mode in measured
                                else _previous(name, mode))
    pairs = list(zip(measured.get("function", []), measured.get("folded", [])))
    ratios = [b["fraction_of_matmul"] / a["fraction_of_matmul"] for a, b in pairs
              if "error" not in a and "error" not in b]
    if ratios:
      entry["folded_vs_function"] = round(statistics.median(ratios), 3)
      entry["folded_vs_function_rounds"] = [round(r, 3) for r in ratios]
    result["configs"][name] = entry
  result["load_average_after"] = [round(l, 2) for l in os.getloadavg()]
  result["matmul_after"] = matmul_gflops(FLAGS.forward_matmul_size)
  result["matmul"] = max(result["matmul_before"], result["matmul_after"],
                         key=lambda m: m["gflops"])
  return result


def to_markdown(result: dict) -> str:
  peak = result["matmul"]["gflops"]
  lines = [f"Batch 1, inference. {result['cpus_usable']} usable CPU(s); load average "
           f"{result['load_average_before'][0]} before, {result['load_average_after'][0]} "
           f"after (the machine is shared: treat latencies as upper bounds). Reference: "
           f"{result['matmul']['n']}^3 float32 matmul at {peak} GFLOP/s (best of "
           f"{result['matmul_before']['gflops']} before and {result['matmul_after']['gflops']} "
           f"after the models). Memory: "
           f"{result['memory_method']}. GFLOP/s = 2 x conv multiply-adds / latency.", "",
           "| model | input | MAdds | mode | fold (s) | first call (s) | latency (s) | "
           "GFLOP/s | % of run's matmul | % of child's matmul | peak RSS (MB) | "
           "RSS growth (MB) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  ratios, pairs_text = [], []
  for name, entry in result["configs"].items():
    size = "x".join(map(str, entry["input"]))
    for mode, m in entry["modes"].items():
      if "error" in m:
        lines.append(f"| {name} | {size} | | {mode} | | {m['error']} | | | | | | |")
        continue
      if "carried_from" in m:
        then = (f", matmul then {m['carried_matmul_gflops']} GFLOP/s"
                if m.get("carried_matmul_gflops") else "")
        mode = f"{mode} (not rerun: measured {m['carried_from']}{then})"
      elif m.get("rounds"):
        mode = f"{mode} (median of {m['rounds']})"
      own = (f"{100 * m['fraction_of_matmul']:.0f}%" if "fraction_of_matmul" in m else "")
      run_peak = m.get("carried_matmul_gflops") or peak  # a carried row: that run's matmul
      fold = f"{m['fold_s']:.1f}" if "fold_s" in m else ""
      lines.append(f"| {name} | {size} | {m['madds'] / 1e9:.2f}B | {mode} | {fold} | "
                   f"{m['first_call_s']:.2f} | {m['latency_s']:.2f} | {m['gflops']:.1f} | "
                   f"{100 * m['gflops'] / run_peak:.0f}% | {own} | {m['peak_rss_mb']} | "
                   f"{m['rss_growth_mb']} |")
    paired = entry.get("paired")
    if paired and "error" not in paired:
      size = "x".join(map(str, paired["input"]))
      pairs_text.append(
          f"{name} at {size}: unfolded {paired['function']['latency_s']:.3f} s "
          f"({100 * paired['function']['fraction_of_matmul']:.0f}% of the child's matmul), "
          f"folded {paired['folded']['latency_s']:.3f} s "
          f"({100 * paired['folded']['fraction_of_matmul']:.0f}%): **{paired['speedup']:.2f}x** "
          f"(median of {paired['pairs']} pairs: "
          f"{', '.join(f'{r:.2f}' for r in paired['speedups'])})")
    elif paired:
      pairs_text.append(f"{name}: {paired['error']}")
    if "folded_vs_function" in entry:
      ratios.append(f"{name} {entry['folded_vs_function']:.2f}x (rounds: "
                    f"{', '.join(f'{r:.2f}' for r in entry['folded_vs_function_rounds'])})")
  if pairs_text:
    lines += ["", "Paired (unfolded and folded in one process, timed call by call "
              "alternately; the figure least disturbed by other load): " +
              "; ".join(pairs_text) + "."]
  if ratios:
    lines += ["", "Folded against unfolded (function) as a fraction of each child's own "
              "matmul, median over rounds: " + "; ".join(ratios) + "."]
  return "\n".join(lines)


if __name__ == "__main__":
  # Child mode (see child.run_child): one JSON spec argument, one JSON result line.
  print(json.dumps(_child(json.loads(sys.argv[1]))))
