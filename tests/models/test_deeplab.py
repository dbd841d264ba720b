"""DeepLab assembly: parts, shapes at DeepLab crops and odd sizes, heads, gin, precision."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from dpc_tf import costs, models, search_space
from dpc_tf.errors import DpcError
from dpc_tf.layers import ASPP, DensePredictionCell
from dpc_tf.testing import check_mixed_precision, dtype_policy, run_layer_test

SMALL = dict(backbone="mobilenet_v2", depth_multiplier=0.25, crop_size=(65, 65))


@pytest.fixture(scope="module")
def small():
  return models.build_deeplab(5, **SMALL)


@pytest.fixture(scope="module")
def x71():
  return models.build_deeplab(19, "xception_71", crop_size=(769, 769))


def images(h, w, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, (1, h, w, 3)).astype(np.float32)


def trace_shape(model, shape):
  """Output shape by tracing only (no execution): cheap even at 1025x2049."""
  spec = tf.TensorSpec((1,) + tuple(shape), tf.float32)
  return tuple(tf.function(lambda x: model(x, training=False))
               .get_concrete_function(spec).structured_outputs.shape)


def test_top_level_parts(small):
  names = [l.name for l in small.layers]
  for part in ("backbone", "head", "decoder", "logits"):
    assert part in names
  assert isinstance(small.get_layer("backbone"), keras.Model)
  assert isinstance(small.get_layer("head"), DensePredictionCell)
  assert small.get_layer("head").cell == search_space.CITYSCAPES_CELL
  assert small.get_layer("backbone").feature_channels == 80


@pytest.mark.parametrize("h, w", [(65, 65), (33, 47), (50, 64)])
def test_any_input_size_gives_full_resolution_logits(small, h, w):
  out = small(images(h, w), training=False)
  assert out.shape == (1, h, w, 5) and out.dtype == tf.float32


@pytest.mark.parametrize("shape", [(513, 513, 3), (769, 769, 3), (1025, 2049, 3)])
def test_xception_71_at_deeplab_crops(x71, shape):
  assert trace_shape(x71, shape) == (1,) + shape[:2] + (19,)


def test_rates_scale_with_output_stride():
  model = models.build_deeplab(3, output_stride=8, decoder_output_stride=None, **SMALL)
  head = model.get_layer("head")
  assert head.rate_multiplier == 2
  assert head.branch_layers[1].rate == (36, 30)  # released (18, 15) doubled
  assert "decoder" not in [l.name for l in model.layers]
  assert model(images(33, 33)).shape == (1, 33, 33, 3)


def test_aspp_head_and_costs_split_into_parts():
  model = models.build_deeplab(4, head="aspp", **SMALL)
  assert isinstance(model.get_layer("head"), ASPP)
  parts, branches = models.model_parts(model)
  assert list(parts) == ["backbone", "head", "decoder", "logits"]
  report = costs.model_costs(model, (65, 65, 3), parts, branches)
  assert report["logits"]["trainable_params"] == 256 * 4 + 4
  assert report["decoder"]["trainable_params"] > 0
  assert report["total"]["madds"] == sum(report[p]["madds"] for p in parts)


def test_released_model_madds_within_one_percent_of_502_07b():
  """Xception-71 + released cell + decoder, 19 classes, 1025x2049, output stride 16."""
  model = models.build_deeplab(19, "xception_71", crop_size=(1025, 2049))
  report = costs.model_costs(model, (1025, 2049, 3), *models.model_parts(model))
  assert abs(report["total"]["madds"] / 502.07e9 - 1) < 0.01
  assert report["head"]["branch_params"] == 814_080
  assert report["total"]["trainable_params"] == 41_608_523


def test_head_model_on_cached_features():
  model = models.build_head_model(7, feature_channels=320, crop_size=(769, 769))
  assert [l.name for l in model.layers[1:]] == ["head", "logits"]
  out = model(np.zeros((2, 49, 49, 320), np.float32))
  assert out.shape == (2, 49, 49, 7)
  report = costs.model_costs(model, (49, 49, 320), *models.model_parts(model))
  assert report["head"]["branch_params"] == 356_160  # Table 1, MobileNet-v2 DPC


def test_cell_from_json_path_and_text(tmp_path):
  path = tmp_path / "cell.json"
  cell = search_space.Cell.from_text("F:conv1x1 0:pool@2x2")
  cell.save(str(path))
  assert models.resolve_cell(str(path)) == cell
  assert models.resolve_cell("F:conv1x1 0:pool@2x2") == cell
  assert models.resolve_cell(None) == search_space.CITYSCAPES_CELL
  model = models.build_deeplab(2, cell=str(path), decoder_output_stride=None, **SMALL)
  assert model(images(65, 65)).shape == (1, 65, 65, 2)


def test_mixed_precision_keeps_logits_float32():
  check_mixed_precision(lambda: models.build_deeplab(3, **SMALL), images(33, 33),
                        expected_output_dtype="float32")
  with dtype_policy("mixed_float16"):
    model = models.build_deeplab(3, **SMALL)
  assert model.get_layer("logits").compute_dtype == "float32"
  assert model.get_layer("head").compute_dtype == "float16"


def test_gin_configurable_factory():
  gin.clear_config()
  try:
    gin.parse_config("""
        deeplab_model.backbone = "mobilenet_v2"
        deeplab_model.depth_multiplier = 0.25
        deeplab_model.decoder_output_stride = None
        deeplab_model.crop_size = (33, 33)
    """)
    model = models.deeplab_model(num_classes=3)
    assert model.get_layer("backbone").get_layer("layer_1").filters == 8
    assert "decoder" not in [l.name for l in model.layers]
    with pytest.raises(ValueError, match="doesn't have a parameter named 'backbon'"):
      gin.parse_config("deeplab_model.backbon = 'x'")
  finally:
    gin.clear_config()


def test_model_passes_the_layer_harness(tmp_path):
  """Serialization, checkpoint, .keras / .weights.h5 files and mixed precision, whole model
  (the ASPP head passes it as a layer in tests/layers: not repeated here, 9 s)."""
  x = np.concatenate([images(41, 57, seed=3), images(41, 57, seed=4)])
  run_layer_test(lambda: models.build_deeplab(5, **SMALL), x,
                 expected_output_shape=(2, 41, 57, 5), expected_output_dtype="float32",
                 tmp_dir=str(tmp_path))


def test_decoder_and_resize_layers_pass_the_layer_harness(tmp_path):
  feats = tf.random.stateless_uniform((2, 3, 4, 12), seed=(1, 2)).numpy()
  tap = tf.random.stateless_uniform((2, 9, 13, 6), seed=(3, 4)).numpy()
  # tap 1x1 6 -> 8 (+BN), two separables on 12 + 8 = 20 and 16 channels to 16 (+BNs).
  trainable = (6 * 8 + 16) + (9 * 20 + 40 + 20 * 16 + 32) + (9 * 16 + 32 + 16 * 16 + 32)
  run_layer_test(lambda: models.Decoder(filters=16, projection_filters=8, name="decoder"),
                 [feats, tap], expected_output_shape=(2, 9, 13, 16),
                 expected_trainable_params=trainable, expected_num_losses=3,
                 tmp_dir=str(tmp_path / "decoder"))
  run_layer_test(lambda: models.ResizeLike(name="upsample"), [feats, tap],
                 expected_output_shape=(2, 9, 13, 12), expected_trainable_params=0,
                 tmp_dir=str(tmp_path / "resize"))
  resize = models.ResizeLike(name="upsample")
  corners = resize([tf.reshape(tf.range(4.0), (1, 2, 2, 1)), tf.zeros((1, 3, 3, 1))])
  np.testing.assert_allclose(corners.numpy()[0, :, :, 0],
                             [[0, 0.5, 1], [1, 1.5, 2], [2, 2.5, 3]])  # align_corners=True


@pytest.mark.parametrize("kwargs, message", [
    (dict(head="psp"), "unknown head 'psp'; choose from dpc, aspp"),
    (dict(backbone="resnet_50"), "unknown backbone 'resnet_50'"),
    (dict(decoder_output_stride=8), "decoder_output_stride must be 4 or None"),
    (dict(output_stride=32), "a head needs output_stride 8 or 16"),
    (dict(num_classes=0), "num_classes must be a positive int"),
    (dict(head="aspp", cell="F:conv1x1"), "cell applies to head='dpc' only"),
])
def test_bad_arguments_are_named(kwargs, message):
  args = {"num_classes": 3, "backbone": "mobilenet_v2", "depth_multiplier": 0.25, **kwargs}
  with pytest.raises(DpcError, match=message.replace("(", r"\(")):
    models.build_deeplab(**args)
