"""`python -m dpc_tf.convert_checkpoint`: a conversion, and refusals that write nothing."""

import json
import os

import numpy as np
import pytest

from dpc_tf import checkpoints, models
from dpc_tf.errors import EXIT_USER_ERROR

ARGS = ["--backbone=mobilenet_v2", "--depth_multiplier=0.25", "--head=aspp",
        "--decoder_output_stride=none", "--num_classes=4"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """An ASPP MobileNet-v2 (x0.25) 4-class checkpoint with TF1 names, global_step included."""
  model = models.build_deeplab(4, "mobilenet_v2", head="aspp", decoder_output_stride=None,
                               depth_multiplier=0.25)
  mapping = checkpoints.tf1_mapping(model, "mobilenet_v2")
  keys, rng = checkpoints.weight_keys(model), np.random.default_rng(0)
  values = {name: rng.uniform(0.5, 1.0, keys[key].shape).astype(np.float32)
            for key, name in mapping.items()}
  folder = tmp_path_factory.mktemp("ckpt")
  full = checkpoints.write_tf1_checkpoint(str(folder / "full.ckpt"),
                                          {**values, "global_step": np.int64(7)})
  broken = dict(values)
  del broken["aspp2_depthwise/BatchNorm/gamma"]
  broken["concat_projection/weights"] = np.zeros((1, 1, 1024, 256), np.float32)
  partial = checkpoints.write_tf1_checkpoint(str(folder / "partial.ckpt"), broken)
  resized = dict(values, **{"concat_projection/weights": np.zeros((1, 1, 1024, 256),
                                                                  np.float32)})
  mismatched = checkpoints.write_tf1_checkpoint(str(folder / "mismatched.ckpt"), resized)
  return full, partial, mismatched, values


def test_conversion_writes_loadable_folder(checkpoint, tmp_path, commands):
  full, _, _, values = checkpoint
  out = tmp_path / "converted"
  result = commands.run("dpc_tf.convert_checkpoint", f"--checkpoint={full}",
                        f"--output_dir={out}", *ARGS)
  assert result.returncode == 0, result.stderr
  assert "converted" in result.stdout and "skipped 1" in result.stdout
  assert "skipped global_step (training step counter)" in result.stderr
  assert sorted(os.listdir(out)) == ["mapping.json", "model_config.json", "weights.h5"]
  mapping = json.load(open(out / "mapping.json"))
  assert mapping["weights"]["head/aspp0/conv/kernel"] == "aspp0/weights"
  config = checkpoints.read_model_config(str(out))
  assert config["build_args"]["head"] == "aspp" and config["build_args"]["cell"] is None
  model = models.build_deeplab(**config["build_args"], crop_size=(65, 65))
  checkpoints.load_converted_weights(model, str(out))
  np.testing.assert_array_equal(model.get_layer("head").concat_projection.conv.kernel.numpy(),
                                values["concat_projection/weights"])


@pytest.mark.parametrize("which, message", [
    (1, "lacks 1 variable(s) the mobilenet_v2/aspp model needs: aspp2_depthwise/BatchNorm/gamma"),
    (2, "shape mismatch in 1 variable(s): concat_projection/weights [1, 1, 1024, 256] vs model "
        "[1, 1, 1280, 256]"),
])
def test_refusals_exit_non_zero_with_one_line_and_write_nothing(checkpoint, tmp_path, commands,
                                                                which,
                                                                message):
  out = tmp_path / "converted"
  result = commands.run("dpc_tf.convert_checkpoint", f"--checkpoint={checkpoint[which]}",
                        f"--output_dir={out}", *ARGS)
  assert result.returncode == EXIT_USER_ERROR
  assert message in commands.error_line(result)
  assert os.listdir(tmp_path) == []
