"""Every trainable weight of every model variant gets a gradient (not None, not all zero).

A weight without a gradient is a layer that is built but not on the path to the output (a
decoder tap read from the wrong layer, a branch left out of the concat, a head built twice):
training silently leaves it at its initial value. Variants: every registered backbone x
{dpc, aspp} x {decoder, none}, at the smallest size that still exercises every branch.
"""

import numpy as np
import pytest

from dpc_tf import backbones, models
from dpc_tf.testing import missing_gradients

# 65x65 at output stride 16: 5x5 features, so every pooling kernel (from crop 65) is >= 1
# and every atrous rate still reaches a neighbour on at least one side of some position.
SIZE = 65
VARIANTS = [(name, head, decoder) for name in backbones.BACKBONES for head in ("dpc", "aspp")
            for decoder in (4, None)]


@pytest.mark.parametrize("backbone, head, decoder", VARIANTS,
                         ids=[f"{b}-{h}-{'decoder' if d else 'nodecoder'}" for b, h, d in VARIANTS])
def test_every_trainable_weight_gets_a_gradient(backbone, head, decoder):
  spec = backbones.get_backbone(backbone)
  kwargs = dict(depth_multiplier=0.25) if spec.depth_multiplier else {}
  model = models.build_deeplab(3, backbone, head=head, crop_size=(SIZE, SIZE),
                               decoder_output_stride=decoder, **kwargs)
  # Batch 2: with one image, training-mode BN normalises the 1x1 image-pooling map to a
  # constant and that branch's conv gets an exactly-zero gradient by construction.
  images = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
  assert missing_gradients(model, images) == []
  assert ("decoder" in [l.name for l in model.layers]) == (decoder is not None)
