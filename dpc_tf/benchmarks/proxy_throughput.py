"""Proxy trials/hour of the synthetic demo: where a trial's time goes, and what packing buys.

    python -m dpc_tf.benchmark proxy_throughput --proxy_throughput_cache=DIR \
        [--proxy_throughput_before=CHECKOUT] [--proxy_throughput_trials=16]

DIR is a finished feature cache of gin/proxy/synthetic.gin (the demo's DIR/feature_cache,
or `python -m dpc_tf.cache_features --gin_file=gin/proxy/synthetic.gin --cache_dir=DIR`).

1. Breakdown: one fresh process imports TensorFlow and the proxy, then runs two trials of
   the demo's settings; every phase (imports, model build, cost count, cache load, first
   step = tracing, the other steps, evaluation) as a fraction of the process's wall time
   (fractions, not seconds: the machine may be shared). The second trial shows what a
   long-lived worker no longer pays.
2. Throughput: `python -m dpc_tf.search` on gin/search/synthetic_demo.gin (stage c only: no
   baselines, no re-rank; uniform sampling, so every run trains the same cells in the same
   order) for each cells_per_program K, and with --proxy_throughput_before=CHECKOUT the same
   search on another checkout's code (the code before a change), all in this one run, so
   load from other processes hits them alike; trials/hour from the store's timestamps.
3. Scores: every cell's proxy mIOU in each run against the "before" (or K=1) run, next to
   the seed noise (the K=1 search again with proxy_trial.seed + 1) and the eval set's own
   standard error (jackknife over eval batches, `miou_standard_error` in the record).
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags

from dpc_tf.errors import DpcError
from dpc_tf.utils import processes, threads

flags.DEFINE_string("proxy_throughput_cache", None, "A finished feature cache of "
                    "gin/proxy/synthetic.gin (the demo's search_dir/feature_cache).")
flags.DEFINE_string("proxy_throughput_before", None, "A checkout of the code to compare "
                    "against (e.g. a git worktree of the commit before a change); unset: skip.")
flags.DEFINE_integer("proxy_throughput_trials", 16, "Trials per search run.")
flags.DEFINE_list("proxy_throughput_packs", ["1", "2", "4", "8"], "cells_per_program values.")
flags.DEFINE_bool("proxy_throughput_seed_noise", True, "Also run K=1 with seed + 1.")
flags.DEFINE_bool("proxy_throughput_default_threads", True, "Also run the largest K with "
                  "TensorFlow's default CPU threads (what utils/threads.py replaces).")
flags.DEFINE_integer("proxy_throughput_eval_examples", 128, "Also run the largest K scoring "
                     "on this many eval examples (proxy_trial.max_eval_examples; 0: skip).")
FLAGS = flags.FLAGS

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = "gin/search/synthetic_demo.gin"
_CHILD = r"""
import json, sys, time
t0 = time.time()
import tensorflow
from dpc_tf.proxy.trial import run_proxy_trial
imports = time.time() - t0
spec = json.loads(sys.argv[1])
records = [run_proxy_trial(cell, spec["cache"], **spec["settings"]) for cell in spec["cells"]]
print(json.dumps({"imports": imports, "wall": time.time() - t0,
                  "records": [{k: r[k] for k in ("phase_seconds", "seconds", "miou",
                               "miou_standard_error", "steps")} for r in records]}))
"""


def _env(code_root: str) -> dict:
  return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
          "PYTHONPATH": code_root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _demo_settings() -> dict:
  import gin  # pylint: disable=import-outside-toplevel
  from dpc_tf import gin_config  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.stages import proxy_trial_settings  # pylint: disable=import-outside-toplevel
  gin_config.parse([DEMO], [], modules=("dpc_tf.search.pipeline",))
  try:
    return proxy_trial_settings()
  finally:
    gin.clear_config()


def breakdown(cache: str, cells=("released", "F:conv1x1 0:sep3x3@6x3 1:sep3x3@12x12")) -> dict:
  """Phases of a fresh process running two trials, as fractions of its wall time."""
  settings = {k: v for k, v in _demo_settings().items() if k != "cells_per_program"}
  settings["max_eval_examples"] = 0  # the whole eval role, as before issue 13
  start = time.perf_counter()
  out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(
      {"cache": cache, "settings": settings, "cells": list(cells)})], capture_output=True,
      text=True, env=_env(_ROOT), timeout=1800, preexec_fn=processes.exec_dies_with_parent())
  wall = time.perf_counter() - start
  if out.returncode != 0:
    raise RuntimeError(f"breakdown child failed: {out.stderr[-2000:]}")
  result = json.loads(out.stdout.strip().splitlines()[-1])
  first = result["records"][0]["phase_seconds"]
  start_and_imports = wall - result["wall"] + result["imports"]
  phases = {"process start + imports": start_and_imports, "model build": first["build"],
            "cost count": first["costs"], "cache load": first["load"],
            "first step (tracing)": first["first_step"],
            "other steps": first["train"] - first["first_step"], "evaluation": first["eval"]}
  total = start_and_imports + result["records"][0]["seconds"]
  second = result["records"][1]["phase_seconds"]
  return {"first_trial_fractions": {k: v / total for k, v in phases.items()},
          "second_trial_load_vs_first": second["load"] / max(first["load"], 1e-9),
          "second_trial_fraction_of_first": (result["records"][1]["seconds"]
                                             / result["records"][0]["seconds"]),
          "steps": result["records"][0]["steps"],
          "miou_standard_error": [r["miou_standard_error"] for r in result["records"]]}


def search_run(cache: str, code_root: str, trials: int, bindings=(), env=None) -> dict:
  """One demo search (stage c only) on code_root's code; per-cell scores, trials/hour.
  env: extra environment variables of the search process (and so of its workers)."""
  with tempfile.TemporaryDirectory(prefix="proxy_throughput_") as search_dir:
    args = [sys.executable, "-m", "dpc_tf.search", f"--gin_file={DEMO}",
            f"--search_dir={search_dir}", f"--budget={trials}"]
    for binding in (f"search_cache.cache_dir = '{cache}'", "search_cache.build = False",
                    "search_backbone.maker = None", "search_pipeline.baselines = []",
                    "search_pipeline.rerank_top_k = 0", "search_pipeline.plots = False",
                    "search_algorithm.p_uniform = 1.0", *bindings):
      args.append(f"--gin_bindings={binding}")
    start = time.perf_counter()
    out = subprocess.run(args, cwd=code_root, capture_output=True, text=True, timeout=7200,
                         env={**_env(code_root), **(env or {})},
                         preexec_fn=processes.exec_dies_with_parent())
    wall = time.perf_counter() - start
    if out.returncode != 0:
      raise RuntimeError(f"search on {code_root} failed: {out.stderr[-2000:]}")
    db = sqlite3.connect(os.path.join(search_dir, "trials.sqlite"))
    rows = db.execute("SELECT cell_text, score, started, finished, record FROM trials "
                      "WHERE status = 'done'").fetchall()
    db.close()
  span = max(r[3] for r in rows) - min(r[2] for r in rows)
  errors = [json.loads(r[4]).get("miou_standard_error") for r in rows]
  return {"trials": len(rows), "trials_per_hour": len(rows) * 3600.0 / span,
          "wall_seconds": wall, "scores": {r[0]: r[1] for r in rows},
          "miou_standard_error_median": (statistics.median(e for e in errors if e is not None)
                                         if any(e is not None for e in errors) else None)}


def _score_gap(run: dict, reference: dict) -> dict:
  common = sorted(set(run["scores"]) & set(reference["scores"]))
  gaps = [abs(run["scores"][c] - reference["scores"][c]) for c in common]
  return {"cells": len(common), "mean_abs_gap": statistics.mean(gaps) if gaps else None,
          "max_abs_gap": max(gaps) if gaps else None}


def run() -> dict:
  cache = FLAGS.proxy_throughput_cache
  if not cache or not os.path.isfile(os.path.join(cache, "manifest.json")):
    raise DpcError(f"--proxy_throughput_cache={cache} is not a finished feature cache; make "
                   f"one with python -m dpc_tf.cache_features --gin_file=gin/proxy/synthetic.gin")
  cache = os.path.abspath(cache)
  trials = FLAGS.proxy_throughput_trials
  result = {"trials": trials, "load_average_1m_start": os.getloadavg()[0],
            "breakdown": breakdown(cache), "runs": {}}
  runs = result["runs"]
  if FLAGS.proxy_throughput_before:
    runs["before"] = search_run(cache, os.path.abspath(FLAGS.proxy_throughput_before), trials)
  full_eval = "proxy_trial.max_eval_examples = 0"  # the demo scores on fewer: its own row
  for k in FLAGS.proxy_throughput_packs:
    runs[f"K={k}"] = search_run(cache, _ROOT, trials,
                                [f"proxy_trial.cells_per_program = {k}", full_eval])
  if FLAGS.proxy_throughput_default_threads:
    k = FLAGS.proxy_throughput_packs[-1]
    # "0": TensorFlow's own default, and a value set, so utils/threads.py leaves it alone.
    runs[f"K={k}, TF default threads"] = search_run(
        cache, _ROOT, trials, [f"proxy_trial.cells_per_program = {k}", full_eval],
        env={name: "0" for name in threads.ENV_VARIABLES})
  if FLAGS.proxy_throughput_seed_noise:
    runs["K=1, seed+1"] = search_run(cache, _ROOT, trials, [
        "proxy_trial.cells_per_program = 1", full_eval, "proxy_trial.seed = 1"])
  if FLAGS.proxy_throughput_eval_examples:
    k, n = FLAGS.proxy_throughput_packs[-1], FLAGS.proxy_throughput_eval_examples
    runs[f"K={k}, {n} eval examples"] = search_run(
        cache, _ROOT, trials, [f"proxy_trial.cells_per_program = {k}",
                               f"proxy_trial.max_eval_examples = {n}"])
  reference = runs.get("before") or next(iter(runs.values()))
  for name, r in runs.items():
    r["speedup"] = r["trials_per_hour"] / reference["trials_per_hour"]
    r["score_gap"] = _score_gap(r, reference)
  result["load_average_1m_end"] = os.getloadavg()[0]
  return result


def to_markdown(result: dict) -> str:
  b = result["breakdown"]
  lines = [f"Synthetic demo proxy (gin/search/synthetic_demo.gin: {b['steps']} steps, batch 8, "
           "64 filters, 17x17x160 cached features). Machine load (1 min average) "
           f"{result['load_average_1m_start']:.1f} at the start, "
           f"{result['load_average_1m_end']:.1f} at the end: a shared, loaded machine, so "
           "only fractions and ratios measured within this run are meaningful.", "",
           "Where a fresh process's first trial spends its time (fractions of its wall time):",
           "", "| phase | fraction |", "|---|---|"]
  for phase, fraction in b["first_trial_fractions"].items():
    lines.append(f"| {phase} | {fraction:.1%} |")
  lines += ["", f"A second trial in the same process: cache load "
            f"{b['second_trial_load_vs_first']:.0%} of the first's (the features are kept); "
            f"the trial takes {b['second_trial_fraction_of_first']:.0%} of the first's time.",
            "", f"Demo search, stage (c) only, {result['trials']} trials per run, same cells "
            "in every run (uniform sampling), local engine, 1 worker:", "",
            "| run | trials/hour | vs reference | cells compared | mean / max abs score gap "
            "to reference | median eval s.e. |", "|---|---|---|---|---|---|"]
  for name, r in result["runs"].items():
    gap = r["score_gap"]
    se = r.get("miou_standard_error_median")
    lines.append(f"| {name} | {r['trials_per_hour']:.0f} | {r['speedup']:.2f}x | {gap['cells']} "
                 f"| {gap['mean_abs_gap']:.4f} / {gap['max_abs_gap']:.4f} | "
                 f"{'-' if se is None else f'{se:.4f}'} |")
  reference = "before" if "before" in result["runs"] else next(iter(result["runs"]))
  runs = result["runs"]
  if "K=1" in runs and "K=1, seed+1" in runs:
    drift = runs["K=1, seed+1"]["trials_per_hour"] / runs["K=1"]["trials_per_hour"]
    lines += ["", "Load drift: the K=1 settings ran twice (K=1, then K=1 with seed + 1 after "
              f"the K=2..8 runs) at {drift:.2f}x each other's speed; ratios between runs are "
              "good to about that much."]
  lines += ["", f"Reference: the `{reference}` run. `before` is the code before issue 13 "
            "(a checkout run on the same cache); `K=1, seed+1` trains the same cells with "
            "the next seed, so its score gap is the seed noise the other gaps compare with; "
            "`TF default threads` runs the pack with TensorFlow's own CPU threading instead of "
            "utils/threads.py's one thread per op. "
            "The eval s.e. is the jackknife standard error of a trial's mIOU over the eval "
            "set's batches: what another eval sample of the same size would move it by."]
  return "\n".join(lines)
