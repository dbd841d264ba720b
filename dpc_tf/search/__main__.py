"""`python -m dpc_tf.search`: the architecture search, end to end.

    python -m dpc_tf.search --gin_file=gin/search/synthetic_demo.gin --search_dir=/tmp/s
        [--budget=N] [--engine=local|ray] [--workers=N] [--retry_failed]
        [--gin_bindings='search_algorithm.seed = 1' ...]

Stages: (a) backbone checkpoint, (b) feature cache, (c) proxy search, (d) end-to-end
re-ranking of the top-K, (e) results.csv, best_cells/rank_N.json, plots (pipeline.py). A
killed or interrupted search resumes when the same command is run again.
"""

from absl import flags, logging

from dpc_tf import app

app.define_gin_flags()
flags.DEFINE_string("search_dir", None, "Folder of this search (store, results, best cells). "
                    "On a shared filesystem for the Ray engine on several machines.")
flags.DEFINE_integer("budget", None, "Number of proxy trials; overrides search_algorithm.budget.")
flags.DEFINE_string("engine", None, "local (default) or ray; overrides search_pipeline.engine.")
flags.DEFINE_integer("workers", None, "Parallel trials: local worker processes (default 1), or "
                     "the Ray engine's max concurrent trials (default: what the cluster fits).")
flags.DEFINE_bool("retry_failed", False, "Give failed trials (max_attempts used up) a fresh "
                  "set of attempts, e.g. after fixing what made them fail.")
FLAGS = flags.FLAGS

MODULES = ("dpc_tf.search.pipeline",)
"""Registers the search's configurables; configs import the modules of the trials they bind."""


def main() -> None:
  from dpc_tf.search.pipeline import run_pipeline  # pylint: disable=import-outside-toplevel
  search_dir = app.required("search_dir")
  app.required("gin_file")
  app.parse_gin(MODULES)
  summary = run_pipeline(search_dir, budget=FLAGS.budget, engine=FLAGS.engine,
                         workers=FLAGS.workers, retry_failed=FLAGS.retry_failed)
  best = summary["best"]
  if best:
    logging.info("best cell (trial %d): %s", best["trial_id"], best["cell"])
  print(f"search finished: {summary['counts']['done']} done, {summary['counts']['failed']} "
        f"failed; best {best['cell'] if best else '-'}; see {search_dir}")
  for name, baseline in summary["baselines"].items():
    print(f"baseline {name}: proxy {_score(baseline['proxy_miou'])}, re-rank "
          f"{_score(baseline['rerank_miou'], baseline['rerank_stderr'])}, branch MAdds "
          f"{_score(baseline['branch_madds'])}")
  print(f"verdict: {summary['verdict']['sentence']}")


def _score(value, stderr=None) -> str:
  if value is None:
    return "-"
  text = f"{value:.4g}" if isinstance(value, float) and abs(value) < 1e4 else f"{value:.3g}"
  return text if stderr is None else f"{text} +- {stderr:.2g}"


run = app.command("dpc_tf.search", main,
                  on_interrupt="finished trials are kept, run the same command to resume")

if __name__ == "__main__":
  run()
