"""The paper's claims in miniature on dpc_synthetic: `python -m dpc_tf.reproduce SUBCOMMAND`.

  search_strategy  claim 3: random search with local sampling vs uniform sampling (proxy)
  fidelity         claim 1: Spearman rho of proxy vs full-task scores over >= 20 cells
  vs_aspp          claim 2: the searched cell vs the ASPP head and random cells (full task)
  proxy_cost       claim 4: wall seconds per trial and per step, proxy vs full task
  search_verdict   claim 2 through the search itself (gin/search/claim2.gin: Pareto objective,
                   baselines, re-rank seeds, verdict; reproduction/search_verdict.py)
  halving          beyond the paper: successive halving vs flat search at equal proxy
                   steps over --search_seeds (reproduction/halving.py): the fake trial
                   (seconds), or with --halving_trial=table the real proxy replayed from a
                   table of --halving_table_cells cells trained once (WORK_DIR/halving_table,
                   built resumably: ~45 s a cell on 2 loaded cores; exit 3 = rerun to go on)
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
flags.DEFINE_enum("halving_trial", "fake", list(halving.TRIALS), "halving: the fake trial, "
                  "or the real proxy's table replay (halving_table.py).")
flags.DEFINE_integer("halving_table_cells", 64, "halving --halving_trial=table: cells in the "
                     "table (a larger table extends a smaller one).")
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


def run_halving(store: ResultStore) -> int:
  """Section 5: the fake study, or the real-proxy table replay; the stored claim keeps both
  (each run replaces its own part)."""
  stored = store.read_claim(halving.NAME) or {}
  seeds = tuple(app.integers("search_seeds"))
  if FLAGS.halving_trial == "fake":  # no runner, no TensorFlow
    summary = halving.study(halving.Settings(seeds=seeds))
    if stored.get("table_study"):
      summary["table_study"] = stored["table_study"]
  else:
    deadline = time.time() + 60 * FLAGS.max_minutes if FLAGS.max_minutes else None
    table = halving.table_study(FLAGS.work_dir, FLAGS.halving_table_cells, seeds,
                                FLAGS.gin_file or None, FLAGS.gin_bindings,
                                max_new=FLAGS.max_new_trials, deadline=deadline)
    if table is None:
      print("halving: the table is not complete yet (rerun to go on)", file=sys.stderr)
      return 3
    summary = dict(stored, table_study=table)
  path = store.write_claim(halving.NAME, summary)
  shown = ([("fake", summary)] if FLAGS.halving_trial == "fake" else
           [(f"table, rungs {tuple(s['settings']['rungs'])}", s)
            for s in summary["table_study"]["studies"]])
  for label, one in shown:
    print(f"halving ({label}): mean best-5 flat {one['mean_flat_best_k']:.4f}, halving "
          f"{one['mean_halving_best_k']:.4f}; median steps ratio {one['median_steps_ratio']}, "
          f"median fraction of the flat budget {one['median_budget_fraction']}")
  print(f"summary in {path}")
  return 0


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
  if command == halving.NAME:
    return run_halving(store)
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
