"""`python -m dpc_tf.search`: the architecture search, end to end.

    python -m dpc_tf.search --gin_file=gin/search/synthetic_demo.gin --search_dir=/tmp/s
        [--budget=N] [--engine=local|ray] [--workers=N] [--retry_failed]
        [--gin_bindings='search_algorithm.seed = 1' ...]

Stages: (a) backbone checkpoint, (b) feature cache, (c) proxy search, (d) end-to-end
re-ranking of the top-K, (e) results.csv, best_cells/rank_N.json, plots (pipeline.py). A
killed or interrupted search resumes when the same command is run again. Anything a user
can fix ends the command with one line on stderr and exit status 1, no traceback.
"""

import importlib.util  # noqa: F401  gin's include resolution uses it without importing it
import os
import signal
import sys

from absl import app, flags, logging
import gin

from dpc_tf.search.errors import SearchError
from dpc_tf.search.pipeline import run_pipeline
from dpc_tf.search_space import CellError

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), e.g. gin/search/cityscapes.gin.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'search_algorithm.seed = 1'.")
flags.DEFINE_string("search_dir", None, "Folder of this search (store, results, best cells). "
                    "On a shared filesystem for the Ray engine on several machines.")
flags.DEFINE_integer("budget", None, "Number of proxy trials; overrides search_algorithm.budget.")
flags.DEFINE_string("engine", None, "local (default) or ray; overrides search_pipeline.engine.")
flags.DEFINE_integer("workers", None, "Parallel trials: local worker processes (default 1), or "
                     "the Ray engine's max concurrent trials (default: what the cluster fits).")
flags.DEFINE_bool("retry_failed", False, "Give failed trials (max_attempts used up) a fresh "
                  "set of attempts, e.g. after fixing what made them fail.")
FLAGS = flags.FLAGS


def _one_line(error: BaseException) -> str:
  lines = [l.strip() for l in str(error).strip().splitlines() if l.strip()]
  return lines[0] if lines else type(error).__name__


def parse_gin(files: list[str], bindings: list[str]) -> None:
  """Parses the config; every problem is a one-line SearchError."""
  gin.add_config_file_search_path(_ROOT)
  for path in files:
    if not os.path.exists(path) and not os.path.exists(os.path.join(_ROOT, path)):
      raise SearchError(f"gin file {path} does not exist")
  try:
    gin.parse_config_files_and_bindings(files, bindings)
  except Exception as e:  # pylint: disable=broad-except  (gin raises many types)
    raise SearchError(f"bad gin config: {type(e).__name__}: {_one_line(e)}") from None


def _terminate(signum, frame):
  del signum, frame
  raise KeyboardInterrupt  # SIGTERM (cluster preemption) stops as cleanly as Ctrl-C


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  signal.signal(signal.SIGTERM, _terminate)
  try:
    if not FLAGS.gin_file:
      raise SearchError("give at least one --gin_file (e.g. gin/search/synthetic_demo.gin)")
    parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    summary = run_pipeline(FLAGS.search_dir, budget=FLAGS.budget, engine=FLAGS.engine,
                           workers=FLAGS.workers, retry_failed=FLAGS.retry_failed)
  except (SearchError, CellError) as e:
    sys.exit(f"dpc_tf.search: error: {_one_line(e)}")
  except KeyboardInterrupt:
    sys.exit("dpc_tf.search: interrupted; run the same command again to resume")
  best = summary["best"]
  if best:
    logging.info("best cell (trial %d): %s", best["trial_id"], best["cell"])
  print(f"search finished: {summary['counts']['done']} done, {summary['counts']['failed']} "
        f"failed; best {best['cell'] if best else '-'}; see {FLAGS.search_dir}")
  return 0


if __name__ == "__main__":
  app.run(main)
