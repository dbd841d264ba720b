"""The paper's claims in miniature on dpc_synthetic: `python -m dpc_tf.reproduce SUBCOMMAND`.

  search_strategy  claim 3: random search with local sampling vs uniform sampling (proxy)
  fidelity         claim 1: Spearman rho of proxy vs full-task scores over >= 20 cells
  vs_aspp          claim 2: the searched cell vs the ASPP head and random cells (full task)
  proxy_cost       claim 4: wall seconds per trial and per step, proxy vs full task
  search_verdict   claim 2 through the search itself (gin/search/claim2.gin: Pareto objective,
                   baselines, re-rank seeds, verdict; reproduction/search_verdict.py)
  halving          beyond the paper: successive halving vs flat search at equal proxy
                   steps over --search_seeds (the fake trial; seconds; reproduction/halving.py)
  report           docs/REPRODUCTION.md and docs/reproduction/*.png from the stored JSON

Every finished trial is stored as WORK_DIR/<kind>/<key>.json (atomically): rerun a
command to resume it; nothing finished is repeated, and claims share trials. Run
search_strategy before fidelity (fidelity takes its 'searched' cells from it).
"""

import os
import sys
import time

from absl import flags, logging

from dpc_tf import app
from dpc_tf.errors import DpcError
from dpc_tf.reproduction import claims, halving, report, search_verdict
from dpc_tf.reproduction.store import ResultStore

SUBCOMMANDS = ("search_strategy", "fidelity", "vs_aspp", "proxy_cost", search_verdict.NAME,
               halving.NAME, "report")

flags.DEFINE_string("work_dir", "/tmp/dpc_tf_reproduction",
                    "Where every trial's JSON, the feature cache and model folders go.")
app.define_gin_flags()  # default files: the synthetic proxy and training recipes
flags.DEFINE_integer("proxy_steps", None, "Proxy steps for claims 1, 2, 4 (default: the gin "
                     "recipe's proxy_trial.steps).")
flags.DEFINE_integer("full_steps", 150, "Whole-model training steps of the full task.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Claims 1, 2: seeds per cell (proxy and full "
                  "task); a cell's score is the mean, and the spread measures the noise.")
flags.DEFINE_integer("num_random", 14, "Claim 1: uniform random cells (plus the released cell).")
flags.DEFINE_integer("num_searched", 5, "Claim 1: best cells of claim 3's local searches.")
flags.DEFINE_integer("search_steps", 100, "Claim 3: proxy steps (a cheaper proxy).")
flags.DEFINE_list("search_seeds", ["0", "1", "2", "3", "4", "5"],
                  "Claim 3: seeds per strategy.")
flags.DEFINE_integer("search_budget", 24, "Claim 3: trials per search.")
flags.DEFINE_float("p_uniform", 0.5, "Claim 3: the local strategy's p_uniform (the baseline "
                   "is 1.0).")
flags.DEFINE_integer("top_k", 5, "Claim 3: mutate one of the top-k cells.")
flags.DEFINE_float("max_minutes", None, "Start no new trial after this many minutes (a rerun "
                   "resumes).")
flags.DEFINE_integer("max_new_trials", None, "Stop after running this many trials (exit 3; "
                     "a rerun resumes): bounds one process's memory on long runs.")
flags.DEFINE_string("search_verdict_gin", search_verdict.GIN_FILE, "search_verdict: the "
                    "search's gin file.")
flags.DEFINE_integer("search_verdict_budget", None, "search_verdict: proxy trials (default: "
                     "the gin file's search_algorithm.budget).")
flags.DEFINE_string("docs_dir", "docs", "report: where REPRODUCTION.md and reproduction/ go "
                    "(the repository's docs/ when run from its root).")
FLAGS = flags.FLAGS


def settings(proxy_steps: int) -> claims.Settings:
  deadline = time.time() + 60 * FLAGS.max_minutes if FLAGS.max_minutes else None
  return claims.Settings(
      proxy_steps=proxy_steps, full_steps=FLAGS.full_steps,
      seeds=app.integers("seeds"), num_random=FLAGS.num_random,
      num_searched=FLAGS.num_searched, search_steps=FLAGS.search_steps,
      search_seeds=app.integers("search_seeds"),
      search_budget=FLAGS.search_budget, p_uniform_local=FLAGS.p_uniform, top_k=FLAGS.top_k,
      deadline=deadline, max_new_trials=FLAGS.max_new_trials)


def main(args: list[str]) -> int:
  if len(args) != 1 or args[0] not in SUBCOMMANDS:
    raise DpcError(f"name one subcommand: {' | '.join(SUBCOMMANDS)}")
  command = args[0]
  store = ResultStore(FLAGS.work_dir)
  if command == "report":
    path = report.write_report(store, FLAGS.docs_dir)
    print(f"wrote {path}")
    return 0
  if command == search_verdict.NAME:  # a whole search, in a child process
    search_dir = search_verdict.run_search(FLAGS.work_dir, FLAGS.search_verdict_gin,
                                           FLAGS.search_verdict_budget)
    summary = search_verdict.summarize(search_dir)
    path = store.write_claim(search_verdict.NAME, summary)
    print(f"{command}: {(summary.get('verdict') or {}).get('sentence')}; claim 2 "
          f"{'shown' if summary['claim_shown'] else 'not shown'}; summary in {path}")
    return 0
  if command == halving.NAME:  # the fake trial: no runner, no TensorFlow
    summary = halving.study(halving.Settings(seeds=tuple(app.integers("search_seeds"))))
    path = store.write_claim(halving.NAME, summary)
    print(f"{command}: mean best-5 flat {summary['mean_flat_best_k']:.4f}, halving "
          f"{summary['mean_halving_best_k']:.4f}; median steps ratio "
          f"{summary['median_steps_ratio']}; summary in {path}")
    return 0
  from dpc_tf.reproduction import runners  # pylint: disable=import-outside-toplevel
  runner = runners.TfRunner(FLAGS.work_dir, FLAGS.gin_file or runners.DEFAULT_GIN,
                            FLAGS.gin_bindings)
  proxy_steps = FLAGS.proxy_steps or runner.proxy_steps
  started = time.time()
  try:
    summary = getattr(claims, command)(store, runner, settings(proxy_steps))
  except claims.OutOfTime as e:
    print(f"{command}: stopped: {e} ({store.ran} trials run)", file=sys.stderr)
    return 3
  logging.info("%s: %d trials run, %.0f s", command, store.ran, time.time() - started)
  print(f"{command}: {store.ran} trials run in {time.time() - started:.0f} s; summary in "
        f"{os.path.join(FLAGS.work_dir, command + '.json')}")
  headline = {k: v for k, v in summary.items() if not isinstance(v, (list, dict))}
  print(headline)
  return 0


run = app.command("dpc_tf.reproduce", main, positional=True,
                  on_interrupt="finished trials are kept, run the same command to resume")

if __name__ == "__main__":
  run()
