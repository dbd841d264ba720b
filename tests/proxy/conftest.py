"""Shared pieces of the proxy tests: a tiny real backbone and tiny dpc_synthetic streams.

Everything runs on the real packages at tiny sizes: MobileNet-v2 at depth multiplier 0.25
(80 feature channels, random weights with calibrated batch norm: the cache does not care
where weights come from) and dpc_synthetic generated on the fly (nothing downloaded).
"""

import keras
import pytest
import tensorflow as tf

from dpc_tf import data
from dpc_tf.backbones import build_backbone
from dpc_tf.layers import resize_bilinear, scale_dimension
from dpc_tf.proxy.backbone_weights import calibrate_batch_norm

TINY = "dpc_synthetic/tiny"  # 129x129, 32 train / 16 validation images, 7 classes


def tiny_backbone(seed: int = 0) -> keras.Model:
  """Random weights, batch norm calibrated on 2 batches (else its features underflow)."""
  keras.utils.set_random_seed(seed)
  model = build_backbone("mobilenet_v2", 16, depth_multiplier=0.25)
  images = stream("train", training=True).map(lambda image, label: image).batch(8)
  calibrate_batch_norm(model, images, batches=2, momentum=0.0)
  return model


class PixelBlocks(keras.layers.Layer):
  """A parameter-free stand-in backbone whose features carry the image by construction: the
  image at 1/4 resolution, each 4x4 block folded into channels (output stride 16, 48
  channels). Random-init conv features are useless for learning (measured: a proxy on them
  predicts background only), and pretraining one costs minutes; this costs nothing."""

  def call(self, images, training=None):
    del training
    x = images / 127.5 - 1.0
    h, w = images.shape[1], images.shape[2]
    x = resize_bilinear(x, [4 * scale_dimension(h, 1 / 16), 4 * scale_dimension(w, 1 / 16)])
    return {"features": tf.nn.space_to_depth(x, 4)}


def stream(split: str, training: bool = False, seed: int = 0,
             dataset: str = TINY) -> tf.data.Dataset:
  """A finite, deterministic stream of (image float32 [h,w,3], label int32 [h,w,1])."""
  return data.build_input_pipeline(dataset, split, 8, is_training=training, seed=seed,
                                   deterministic=True, repeat=False,
                                   drop_remainder=False).unbatch()


def make_identity(backbone: keras.Model, **overrides) -> dict:
  from dpc_tf.proxy import backbone_fingerprint  # pylint: disable=import-outside-toplevel
  return {"backbone": "mobilenet_v2", "depth_multiplier": 0.25, "output_stride": 16,
          "checkpoint_fingerprint": backbone_fingerprint(backbone), "random_init": True,
          "dataset": TINY, "num_classes": 7, "ignore_label": 255, **overrides}


@pytest.fixture(scope="session")
def backbone() -> keras.Model:
  return tiny_backbone()


@pytest.fixture(scope="session")
def examples():
  """examples(split, training=False, seed=0, dataset=TINY) -> unbatched tf.data stream."""
  return stream


@pytest.fixture(scope="session")
def identity():
  """identity(backbone, **overrides) -> a cache identity for the tiny backbone."""
  return make_identity


@pytest.fixture(scope="session")
def pixel_blocks() -> keras.layers.Layer:
  return PixelBlocks()


TINY_TRAIN = {"split": "train", "crop": [129, 129], "views": 1, "seed": 0, "augment": True}
TINY_EVAL = {"split": "validation", "crop": [129, 129], "augment": False}


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory, backbone, identity):
  """A complete cache of dpc_synthetic/tiny: 32 train / 16 eval examples, 9x9x80 features."""
  from dpc_tf.proxy.caching import cache_role  # pylint: disable=import-outside-toplevel
  path = str(tmp_path_factory.mktemp("tiny_cache"))
  for role, settings in (("train", TINY_TRAIN), ("eval", TINY_EVAL)):
    cache_role(path, identity(backbone), role, settings, backbone,
               stream(settings["split"], settings["augment"]), shard_size=8)
  return path
