"""`python -m dpc_tf.proxy`: one proxy trial of one cell on a feature cache.

    python -m dpc_tf.proxy --gin_file=gin/proxy/synthetic.gin --cache_dir=DIR \
        --cell=CELL.json|released|'F:sep3x3@1x6 0:sep3x3@18x15' [--make_cache] [--output=R.json]

Trains the cell on the cache's train role for `proxy_trial.steps` steps and prints its
score record (miou, branch_params, branch_madds, steps, seconds, ...) as one JSON object on
the last line of stdout. --make_cache first builds (or resumes, or reuses) the cache with
the same gin config, as `python -m dpc_tf.cache_features` would.
"""

import sys

from absl import app, flags

flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), e.g. gin/proxy/synthetic.gin.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'proxy_trial.steps = 100'.")
flags.DEFINE_string("cache_dir", None, "Feature cache folder (python -m dpc_tf.cache_features).")
flags.DEFINE_string("cell", None, "Cell JSON file (released DeepLab format), 'released', or "
                    "compact text such as 'F:sep3x3@1x6 0:conv1x1'.")
flags.DEFINE_bool("make_cache", False, "Build, resume or reuse the cache first.")
flags.DEFINE_string("output", None, "Also write the score record to this JSON file.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from dpc_tf.proxy.cli import trial_main  # pylint: disable=import-outside-toplevel
  sys.exit(trial_main(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.cache_dir, FLAGS.cell,
                      FLAGS.make_cache, FLAGS.output))


if __name__ == "__main__":
  app.run(main)
