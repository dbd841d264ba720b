"""Trains a DeepLab model: `python -m dpc_tf.train --gin_file=gin/train/X.gin --model_dir=DIR`.

Resumes automatically from the newest checkpoint in --model_dir. Settings are gin bindings
(`train.*`, `deeplab_model.*`); see dpc_tf/training/config.py and gin/train/.
"""

from absl import flags, logging

from dpc_tf import app

app.define_gin_flags()
flags.DEFINE_string("model_dir", None, "Where checkpoints, summaries and the operative gin "
                    "config go; a checkpoint already there is resumed.")
FLAGS = flags.FLAGS


def main() -> None:
  # pylint: disable=import-outside-toplevel
  from dpc_tf.training.config import MODULES, eval_config, export_config, train_config
  from dpc_tf.training.trainer import Trainer
  from dpc_tf.utils.files import writable_dir
  model_dir = writable_dir(app.required("model_dir"), "model_dir")
  app.parse_gin(MODULES)
  config = train_config()
  # Built now so that a bad evaluate.* / export.* binding fails before hours of training,
  # and so that their values land in the operative config evaluate/export default to.
  eval_config()
  export_config()
  result = Trainer(config, model_dir).train()
  logging.info("Finished at step %d: %s", result.step, result.as_dict())


run = app.command("dpc_tf.train", main,
                  on_interrupt="the newest checkpoint is kept; run the same command to resume")

if __name__ == "__main__":
  run()
