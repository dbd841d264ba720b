"""The entry points: user mistakes end with one `PROG: error: ...` line and status 2."""


def test_user_errors_are_one_line(tmp_path, helpers, commands):
  empty = tmp_path / "empty"
  empty.mkdir()
  cases = {
      "missing gin file": (
          "dpc_tf.train", ["--gin_file=/nonexistent/cityscapes.gin", f"--model_dir={empty}"],
          "dpc_tf.train: error: gin file not found: /nonexistent/cityscapes.gin"),
      "binding typo": (
          "dpc_tf.train", helpers.gin_args(helpers.TINY_BINDINGS + ["train.num_stepz = 3"])
          + [f"--model_dir={empty}"],
          "dpc_tf.train: error: bad gin configuration: Configurable 'train' doesn't have a "
          "parameter named 'num_stepz'"),
      "missing dataset": (
          "dpc_tf.train", helpers.gin_args(helpers.TINY_BINDINGS + [
              "train.dataset = 'voc2012'", f"train.data_dir = '{tmp_path}/tfds'",
              f"train.manual_dir = '{tmp_path}/no_voc'"]) + [f"--model_dir={empty}"],
          "dpc_tf.train: error: dataset 'voc2012' split 'train' is not available: "
          f"voc2012_sbd: manual_dir {tmp_path}/no_voc does not exist or is empty"),
      "no model_dir": ("dpc_tf.train", helpers.gin_args(),
                       "dpc_tf.train: error: --model_dir is required"),
      "no checkpoint": (
          "dpc_tf.evaluate", helpers.gin_args() + [f"--model_dir={empty}"],
          f"dpc_tf.evaluate: error: no checkpoint in model_dir {empty}"),
      "no export_dir": ("dpc_tf.export", [f"--model_dir={empty}"],
                        "dpc_tf.export: error: --export_dir is required"),
      "no SavedModel": (
          "dpc_tf.predict", [f"--saved_model={empty}", f"--images={tmp_path}/*.png",
                             f"--output_dir={tmp_path}/out"],
          f"dpc_tf.predict: error: no SavedModel at {empty}"),
  }
  commands.expect_one_line_errors(cases)

