"""Exports a SavedModel: `python -m dpc_tf.export --model_dir=DIR --export_dir=OUT`.

The SavedModel's serving_default takes `images` uint8 [N, H, W, 3] and returns `labels`
int32 [N, H, W] and `probabilities` float32 [N, H, W, C], with the evaluation's scales,
flip and padding inside (override with `export.*` gin bindings). Without --gin_file the
operative config saved by training is used.
"""

from absl import flags, logging

from dpc_tf import app

app.define_gin_flags()
flags.DEFINE_string("model_dir", None, "The training run's folder (its newest checkpoint is "
                    "exported).")
flags.DEFINE_string("export_dir", None, "Where the SavedModel is written (replaced if it "
                    "holds one).")
flags.DEFINE_string("checkpoint", None, "A checkpoint prefix to export instead of the newest.")
FLAGS = flags.FLAGS


def main() -> None:
  # pylint: disable=import-outside-toplevel
  from dpc_tf.training import export
  from dpc_tf.training.config import MODULES, eval_config, export_config, train_config
  model_dir = app.required("model_dir")
  export_dir = app.required("export_dir")
  app.parse_gin(MODULES, default_dir=model_dir)
  info = export.export_checkpoint(train_config(), eval_config(), export_config(), model_dir,
                                  export_dir, FLAGS.checkpoint)
  logging.info("Exported %s", info)
  print(f"SavedModel written to {info['export_dir']} (step {info['step']})", flush=True)


run = app.command("dpc_tf.export", main)

if __name__ == "__main__":
  run()
