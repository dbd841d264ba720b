"""Scores checkpoints: `python -m dpc_tf.evaluate --model_dir=DIR [--gin_file=...]`.

Prints mIOU and per-class IoU as a table and writes model_dir/eval_<split>[_multiscale].json.
Without --gin_file the operative config saved by training is used. Multi-scale:
`--gin_bindings='evaluate.scales = [0.75, 1.0, 1.25]' --gin_bindings='evaluate.flip = True'`;
continuous evaluation of new checkpoints: `--gin_bindings='evaluate.continuous = True'`.
"""

from absl import flags, logging

from dpc_tf import app

app.define_gin_flags()
flags.DEFINE_string("model_dir", None, "The training run's folder (checkpoints; results are "
                    "written here).")
flags.DEFINE_string("checkpoint", None, "A checkpoint prefix to score instead of the newest.")
FLAGS = flags.FLAGS


def main() -> None:
  # pylint: disable=import-outside-toplevel
  from dpc_tf.training import evaluation
  from dpc_tf.training.config import MODULES, eval_config, train_config
  model_dir = app.required("model_dir")
  app.parse_gin(MODULES, default_dir=model_dir)
  train, config = train_config(), eval_config()
  if config.continuous:
    report = lambda result: print(evaluation.format_table(result), flush=True)
    evaluation.evaluate_continuously(train, config, model_dir, callback=report)
    return
  result = evaluation.evaluate_checkpoint(train, config, model_dir, FLAGS.checkpoint)
  print(evaluation.format_table(result), flush=True)
  logging.info("Wrote %s", evaluation.results_path(model_dir, config))


run = app.command("dpc_tf.evaluate", main)

if __name__ == "__main__":
  run()
