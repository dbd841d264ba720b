"""`python -m dpc_tf.proxy`: one proxy trial of one cell on a feature cache.

    python -m dpc_tf.proxy --gin_file=gin/proxy/synthetic.gin --cache_dir=DIR \
        --cell=CELL.json|released|'F:sep3x3@1x6 0:sep3x3@18x15' [--make_cache] [--output=R.json]

Trains the cell on the cache's train role for `proxy_trial.steps` steps and prints its
score record (miou, branch_params, branch_madds, steps, seconds, ...) as one JSON object on
the last line of stdout. --make_cache first builds (or resumes, or reuses) the cache with
the same gin config, as `python -m dpc_tf.cache_features` would.
"""

import dataclasses
import json

from absl import flags

from dpc_tf import app

app.define_gin_flags()
flags.DEFINE_string("cache_dir", None, "Feature cache folder (python -m dpc_tf.cache_features).")
flags.DEFINE_string("cell", None, "Cell JSON file (released DeepLab format), 'released', or "
                    "compact text such as 'F:sep3x3@1x6 0:conv1x1'.")
flags.DEFINE_bool("make_cache", False, "Build, resume or reuse the cache first.")
flags.DEFINE_string("output", None, "Also write the score record to this JSON file.")
FLAGS = flags.FLAGS


def main() -> None:
  # pylint: disable=import-outside-toplevel
  from dpc_tf import search_space
  from dpc_tf.proxy import config
  from dpc_tf.proxy.cache_builder import make_cache
  from dpc_tf.proxy.trial import run_proxy_trial
  from dpc_tf.utils.files import write_text_atomic
  cache_dir = app.required("cache_dir")
  cell = search_space.as_cell(app.required("cell"))
  app.parse_gin(config.MODULES)
  cache_config, pretrain_config, trial_config = config.configured()
  if FLAGS.make_cache:
    make_cache(cache_dir, cache_config, pretrain_config)
  record = run_proxy_trial(cell, cache_dir, **dataclasses.asdict(trial_config))
  line = json.dumps(record)
  if FLAGS.output:
    write_text_atomic(FLAGS.output, line + "\n")
  print(line)


run = app.command("dpc_tf.proxy", main)

if __name__ == "__main__":
  run()
