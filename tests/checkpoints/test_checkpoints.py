"""TF1 checkpoint conversion: released names, value round trip, parts, refusals."""

import json
import os

import numpy as np
import pytest

from dpc_tf import backbones, checkpoints, models
from dpc_tf.checkpoints import tf1_names

SMALL = dict(backbone="mobilenet_v2", depth_multiplier=0.25)


def random_values(model, mapping, seed=0):
  """{TF1 name: value} for every mapped weight, positive where BN variances need it."""
  keys, rng = checkpoints.weight_keys(model), np.random.default_rng(seed)
  return {name: (rng.uniform(0.5, 1.5, keys[key].shape) if "moving_variance" in name
                 else rng.normal(0, 0.3, keys[key].shape)).astype(np.float32)
          for key, name in mapping.items()}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """A MobileNet-v2 (x0.25) + released DPC + decoder + 5-class checkpoint with TF1 names,
  global_step, Momentum slots and an ImageNet classifier mixed in."""
  model = models.build_deeplab(5, **SMALL)
  mapping = checkpoints.tf1_mapping(model, "mobilenet_v2")
  values = random_values(model, mapping)
  extra = {"global_step": np.array(1234, np.int64),
           "logits/semantic/weights/Momentum": np.zeros((1, 1, 256, 5), np.float32),
           "MobilenetV2/Conv/weights/Momentum": np.zeros((3, 3, 3, 8), np.float32),
           "MobilenetV2/Logits/Conv2d_1c_1x1/weights": np.zeros((1, 1, 1280, 1001), np.float32),
           "MobilenetV2/Conv_1/weights": np.zeros((1, 1, 80, 1280), np.float32)}
  folder = tmp_path_factory.mktemp("released")
  prefix = checkpoints.write_tf1_checkpoint(str(folder / "model.ckpt"), {**values, **extra})
  return prefix, values, mapping


def test_released_names_for_mobilenet_dpc_decoder(released):
  _, values, _ = released
  for name, shape in [("MobilenetV2/Conv/weights", (3, 3, 3, 8)),
                      ("MobilenetV2/expanded_conv/depthwise/depthwise_weights", (3, 3, 8, 1)),
                      ("MobilenetV2/expanded_conv_2/depthwise/depthwise_weights", (3, 3, 40, 1)),
                      ("MobilenetV2/expanded_conv_16/project/BatchNorm/moving_variance", (80,)),
                      ("meta_architecture/branch0_depthwise/depthwise_weights", (3, 3, 80, 1)),
                      ("meta_architecture/branch4_pointwise/weights", (1, 1, 256, 256)),
                      ("meta_architecture/concat_projection/weights", (1, 1, 1280, 256)),
                      ("decoder/feature_projection0/weights", (1, 1, 40, 48)),
                      ("decoder/decoder_conv0_depthwise/depthwise_weights", (3, 3, 304, 1)),
                      ("decoder/decoder_conv1_pointwise/BatchNorm/gamma", (256,)),
                      ("logits/semantic/biases", (5,))]:
    assert values[name].shape == shape, name
  assert "MobilenetV2/expanded_conv/expand/weights" not in values  # expansion 1: no expand


def test_xception_names_follow_the_block_table():
  backbone = backbones.build_backbone("xception_41", input_shape=(33, 33, 3))
  names = [name for _, name in tf1_names.backbone_pairs(backbone, "xception_41")]
  assert len(names) == len(backbone.weights) == len(set(names))
  unit = "xception_41/{}/unit_{}/xception_module/"
  for name in ["xception_41/entry_flow/conv1_1/weights",
               "xception_41/entry_flow/conv1_2/BatchNorm/moving_mean",
               unit.format("entry_flow/block1", 1) + "separable_conv1_depthwise/depthwise_weights",
               unit.format("entry_flow/block3", 1) + "shortcut/BatchNorm/gamma",
               unit.format("middle_flow/block1", 8) + "separable_conv3_pointwise/weights",
               unit.format("exit_flow/block1", 1) + "shortcut/weights",
               unit.format("exit_flow/block2", 1) + "separable_conv3_pointwise/BatchNorm/beta"]:
    assert name in names, name
  assert not any("middle_flow" in n and "shortcut" in n for n in names)
  assert not any("exit_flow/block2" in n and "shortcut" in n for n in names)
  assert not any("unit_9" in n for n in names)


def test_aspp_names():
  model = models.build_head_model(3, 16, head="aspp", crop_size=(65, 65))
  names = set(checkpoints.tf1_mapping(model, "mobilenet_v2").values())
  for name in ["image_pooling/weights", "aspp0/BatchNorm/gamma", "aspp3_depthwise/depthwise_weights",
               "aspp1_pointwise/weights", "concat_projection/weights", "logits/semantic/weights"]:
    assert name in names


def test_round_trip_values_and_outputs(released, tmp_path):
  prefix, values, mapping = released
  report = checkpoints.convert_checkpoint(prefix, str(tmp_path / "out"), 5, **SMALL)
  assert report.converted == len(mapping)
  assert set(report.skipped) == {"global_step", "logits/semantic/weights/Momentum",
                                 "MobilenetV2/Conv/weights/Momentum",
                                 "MobilenetV2/Logits/Conv2d_1c_1x1/weights",
                                 "MobilenetV2/Conv_1/weights"}
  assert report.unused == []
  saved = json.load(open(tmp_path / "out" / "mapping.json"))
  assert saved["weights"] == mapping and "global_step" in saved["skipped"]
  config = checkpoints.read_model_config(str(tmp_path / "out"))
  model = models.build_deeplab(**config["build_args"], crop_size=(65, 65))
  x = np.random.default_rng(1).uniform(0, 255, (1, 65, 65, 3)).astype(np.float32)
  fresh = model(x, training=False).numpy()
  assert checkpoints.load_converted_weights(model, str(tmp_path / "out")) == [
      "backbone", "decoder", "head", "logits"]
  keys = checkpoints.weight_keys(model)
  for key, name in mapping.items():
    np.testing.assert_array_equal(keys[key].numpy(), values[name])
  assert not np.allclose(model(x, training=False).numpy(), fresh, atol=1e-3)


def test_skip_logits_and_parts(released, tmp_path):
  prefix, values, _ = released
  folder = str(tmp_path / "out")
  checkpoints.convert_checkpoint(prefix, folder, 5, **SMALL)
  other = models.build_deeplab(21, crop_size=(65, 65), **SMALL)
  with pytest.raises(checkpoints.ConvertedWeightsError, match="shape mismatch for logits/bias.*"
                     "skip_logits=True"):
    checkpoints.load_converted_weights(other, folder)
  before = other.get_layer("logits").kernel.numpy().copy()
  assert "logits" not in checkpoints.load_converted_weights(other, folder, skip_logits=True)
  np.testing.assert_array_equal(other.get_layer("logits").kernel.numpy(), before)
  no_decoder = models.build_deeplab(5, decoder_output_stride=None, **SMALL)
  with pytest.raises(checkpoints.ConvertedWeightsError, match="has no 'decoder' part"):
    checkpoints.load_converted_weights(no_decoder, folder)
  proxy = models.build_head_model(5, feature_channels=80, crop_size=(513, 513))
  assert checkpoints.load_converted_weights(proxy, folder, parts=["head", "logits"]) == [
      "head", "logits"]
  np.testing.assert_array_equal(proxy.get_layer("logits").bias.numpy(),
                                values["logits/semantic/biases"])


def test_backbone_only_keeps_heads_fresh(released, tmp_path):
  prefix, values, mapping = released
  imagenet = {n: v for n, v in values.items() if n.startswith("MobilenetV2/")}
  imagenet["MobilenetV2/Logits/Conv2d_1c_1x1/biases"] = np.zeros(1001, np.float32)
  ckpt = checkpoints.write_tf1_checkpoint(str(tmp_path / "imagenet.ckpt"), imagenet)
  folder = str(tmp_path / "backbone")
  report = checkpoints.convert_checkpoint(ckpt, folder, 3, backbone_only=True, **SMALL)
  assert report.parts == ["backbone"] and report.unused == []
  model = models.build_deeplab(3, crop_size=(65, 65), **SMALL)
  head_before = [w.numpy().copy() for w in model.get_layer("head").weights]
  assert checkpoints.load_converted_weights(model, folder) == ["backbone"]
  keys = checkpoints.weight_keys(model)
  for key, name in mapping.items():
    if key.startswith("backbone/"):
      np.testing.assert_array_equal(keys[key].numpy(), values[name])
  for before, after in zip(head_before, model.get_layer("head").weights):
    np.testing.assert_array_equal(before, after.numpy())


def test_missing_variable_refused_and_nothing_written(released, tmp_path):
  _, values, _ = released
  dropped = "MobilenetV2/expanded_conv_5/project/BatchNorm/beta"
  ckpt = checkpoints.write_tf1_checkpoint(
      str(tmp_path / "partial.ckpt"), {n: v for n, v in values.items() if n != dropped})
  out = tmp_path / "out"
  with pytest.raises(checkpoints.ConversionError, match=f"lacks 1 variable.*{dropped}"):
    checkpoints.convert_checkpoint(ckpt, str(out), 5, **SMALL)
  assert not out.exists()
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".out")]  # no temporary folder


def test_shape_mismatch_refused(released, tmp_path):
  prefix, _, _ = released
  out = tmp_path / "out"
  with pytest.raises(checkpoints.ConversionError,
                     match=r"shape mismatch in 2 variable\(s\): logits/semantic/biases \[5\] "
                           r"vs model \[7\]"):
    checkpoints.convert_checkpoint(prefix, str(out), 7, **SMALL)
  assert not out.exists()


def test_existing_output_needs_overwrite(released, tmp_path):
  prefix, _, _ = released
  out = tmp_path / "out"
  out.mkdir()
  (out / "old.txt").write_text("old")
  with pytest.raises(checkpoints.ConversionError, match="exists and is not empty"):
    checkpoints.convert_checkpoint(prefix, str(out), 5, **SMALL)
  checkpoints.convert_checkpoint(prefix, str(out), 5, overwrite=True, **SMALL)
  assert sorted(os.listdir(out)) == ["mapping.json", "model_config.json", "weights.h5"]
  assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary or backup folders left


def test_unreadable_checkpoint(tmp_path):
  with pytest.raises(checkpoints.ConversionError, match="cannot read checkpoint"):
    checkpoints.convert_checkpoint(str(tmp_path / "nope.ckpt"), str(tmp_path / "o"), 5, **SMALL)


def test_skip_reasons():
  assert checkpoints.skip_reason("global_step")
  assert checkpoints.skip_reason("xception_65/logits/biases") == "ImageNet classifier"
  assert checkpoints.skip_reason("aspp0/weights/Momentum") == "optimizer state"
  assert checkpoints.skip_reason("logits/semantic/weights") is None
  assert checkpoints.skip_reason("xception_71/entry_flow/conv1_1/weights") is None
