"""Search engine overhead: how much of a trial's wall time the engine itself costs.

A fake trial sleeps a fixed `search_trial_seconds` (no compute, so the figure is the
engine's alone: dispatch, process start, pickling, the store's transactions, Ray Tune's
control loop). Per trial, overhead = (result recorded - dispatched) - time inside the trial
function, from the store's own timestamps; the first trial also pays for starting workers
(and Ray Tune's experiment), so it is reported apart from the steady state.

    python -m dpc_tf.benchmark search [--search_trials=8 --search_trial_seconds=2]

With --search_demo_trials=N > 0 it also runs N trials of gin/search/synthetic_demo.gin (the
real proxy on dpc_synthetic; the backbone and feature cache are made once under
--search_demo_dir and reused) and reports the proxy search's trials/hour; else
`synthetic_demo` is None.
"""

import os
import statistics
import tempfile
import time

from absl import flags

flags.DEFINE_integer("search_trials", 8, "Trials per engine.")
flags.DEFINE_float("search_trial_seconds", 2.0, "Duration of the sleep-based fake trial.")
flags.DEFINE_integer("search_workers", 1, "Parallel trials (local workers / Ray concurrency).")
flags.DEFINE_list("search_engines", ["local", "ray"], "Engines to measure.")
flags.DEFINE_integer("search_demo_trials", 0, "Proxy trials of the synthetic demo to time "
                     "(0: skip; the first run also pretrains a backbone and builds the cache).")
flags.DEFINE_string("search_demo_dir", os.path.join(tempfile.gettempdir(), "dpc_search_bench"),
                    "Where the synthetic demo keeps its feature cache between benchmark runs.")
FLAGS = flags.FLAGS


def _measure(engine_name: str, trials: int, seconds: float, workers: int) -> dict:
  # Imported here: the benchmark dispatcher imports every benchmark module to define flags.
  from dpc_tf.search.algorithm import RandomSearch  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.coordinator import Coordinator  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.engines.local import LocalEngine  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.engines.ray_tune import RayEngine, import_ray  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.fake_trial import FakeTrial  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.store import Store  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.trial import WorkerPayload  # pylint: disable=import-outside-toplevel

  result = {"engine": engine_name, "trials": trials, "trial_seconds": seconds,
            "workers": workers}
  with tempfile.TemporaryDirectory() as folder:
    store = Store(os.path.join(folder, "trials.sqlite"))
    coordinator = Coordinator(store, RandomSearch(budget=trials, seed=0))
    if engine_name == "local":
      engine = LocalEngine(workers=workers)
    else:
      ray, _ = import_ray()
      start = time.perf_counter()
      ray.init(num_cpus=max(2, workers), include_dashboard=False, log_to_driver=False)
      result["ray_init_seconds"] = time.perf_counter() - start
      engine = RayEngine(max_concurrent=workers)
    start = time.perf_counter()
    try:
      engine.run(coordinator, WorkerPayload(FakeTrial(sleep_s=seconds)), folder)
    finally:
      if engine_name == "ray":
        ray.shutdown()
    wall = time.perf_counter() - start
    done = store.trials("done")
    store.close()
  if len(done) != trials:
    raise RuntimeError(f"{engine_name}: only {len(done)} of {trials} trials finished")
  overheads = [t.finished - t.started - t.seconds for t in done]
  first = min(done, key=lambda t: t.started)
  steady = [o for t, o in zip(done, overheads) if t.id != first.id]
  ideal = trials * seconds / workers
  result.update(
      wall_seconds=wall,
      first_trial_overhead_seconds=first.finished - first.started - first.seconds,
      steady_overhead_seconds_median=statistics.median(steady) if steady else None,
      steady_overhead_seconds_max=max(steady) if steady else None,
      steady_overhead_fraction=(statistics.median(steady) / seconds) if steady else None,
      end_to_end_overhead_per_trial_seconds=(wall - ideal) / trials,
      end_to_end_overhead_fraction=(wall - ideal) / trials / seconds,
  )
  return result


def _demo(trials: int, demo_dir: str) -> dict:
  """Trials/hour of the synthetic demo's proxy search (stage c), from the store's timestamps."""
  import gin  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.pipeline import run_pipeline  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.store import Store  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  gin.clear_config()
  gin.add_config_file_search_path(root)
  gin.parse_config_files_and_bindings(
      [os.path.join(root, "gin", "search", "synthetic_demo.gin")],
      [f"search_cache.cache_dir = '{os.path.join(demo_dir, 'feature_cache')}'",
       "search_pipeline.rerank_top_k = 0", "search_pipeline.plots = False",
       "search_pipeline.baselines = []"])  # the search's own trials only
  with tempfile.TemporaryDirectory() as search_dir:
    start = time.perf_counter()
    run_pipeline(search_dir, budget=trials)
    wall = time.perf_counter() - start
    with Store(os.path.join(search_dir, "trials.sqlite")) as store:
      done = store.trials("done")
  span = max(t.finished for t in done) - min(t.started for t in done)
  seconds = sorted(t.seconds for t in done)
  return {"trials": len(done), "trials_per_hour": len(done) * 3600.0 / span,
          "median_trial_seconds": statistics.median(seconds),
          "proxy_steps": done[0].record.get("steps"), "pipeline_wall_seconds": wall,
          "best_proxy_miou": max(t.score for t in done)}


def run() -> dict:
  engines = [_measure(name, FLAGS.search_trials, FLAGS.search_trial_seconds,
                      FLAGS.search_workers) for name in FLAGS.search_engines]
  demo = _demo(FLAGS.search_demo_trials, FLAGS.search_demo_dir) if FLAGS.search_demo_trials else None
  return {"engines": engines, "synthetic_demo": demo,
          "load_average_1m": os.getloadavg()[0],  # other work on the machine skews every figure
          "note": "overhead = dispatch-to-result time minus time inside the trial function; "
                  "end to end also spreads worker/Ray start-up over the trials"}


def _fmt(value, digits=2, suffix=""):
  return "-" if value is None else f"{value:.{digits}f}{suffix}"


def to_markdown(result: dict) -> str:
  lines = ["Engine overhead with a sleep-based fake trial (time not spent inside the trial).",
           "",
           "| engine | trials x s | workers | first trial overhead | steady overhead (median / max) "
           "| steady, fraction of a trial | end to end per trial (incl. start-up) | Ray init |",
           "|---|---|---|---|---|---|---|---|"]
  for e in result["engines"]:
    lines.append(
        f"| {e['engine']} | {e['trials']} x {e['trial_seconds']:g} | {e['workers']} "
        f"| {_fmt(e['first_trial_overhead_seconds'], 2, ' s')} "
        f"| {_fmt(e['steady_overhead_seconds_median'], 3, ' s')} / "
        f"{_fmt(e['steady_overhead_seconds_max'], 3, ' s')} "
        f"| {_fmt(100 * e['steady_overhead_fraction'] if e['steady_overhead_fraction'] is not None else None, 1, '%')} "
        f"| {_fmt(e['end_to_end_overhead_per_trial_seconds'], 2, ' s')} "
        f"({_fmt(100 * e['end_to_end_overhead_fraction'], 1, '%')}) "
        f"| {_fmt(e.get('ray_init_seconds'), 1, ' s')} |")
  demo = result.get("synthetic_demo")
  if result.get("load_average_1m") is not None:
    lines += ["", f"Machine load (1 min average) at the end of the run: "
                  f"{result['load_average_1m']:.1f}."]
  lines += ["", "Synthetic demo (gin/search/synthetic_demo.gin, real proxy, local engine, 1 "
            "worker): " + (
                f"{demo['trials_per_hour']:.1f} trials/hour ({demo['trials']} trials of "
                f"{demo['proxy_steps']} steps, median {demo['median_trial_seconds']:.1f} s "
                f"inside the trial)" if demo else
                "not measured in this run (--search_demo_trials=N).")]
  return "\n".join(lines)
