"""The model a proxy trial trains: DPC + logits on cached backbone features, no decoder.

No decoder, by design (as in the paper's proxy, which trains the DPC alone on the cached
backbone output): the decoder is the same for every candidate cell, so it adds cost but no
ranking signal, and it would need the stride-4 decoder tap cached too (for MobileNet-v2 at
crop 769: 193x193x144 values per example, 7x the 49x49x320 features). Logits come out at
the feature resolution and the loss upsamples them to the labels, as the release does.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from dpc_tf import costs
from dpc_tf.layers import DensePredictionCell, common
from dpc_tf.models import logits_layer, model_parts


def build_proxy_head(cell, num_classes: int, feature_channels: int, crop_size,
                     output_stride: int = 16, filters: int = 256,
                     projection_filters: Optional[int] = None, dropout: float = 0.1,
                     weight_decay: float = common.WEIGHT_DECAY,
                     bn_momentum: float = common.BN_MOMENTUM,
                     bn_epsilon: float = common.BN_EPSILON) -> keras.Model:
  """features [B,h,w,C] -> logits [B,h,w,num_classes]; top-level layers "head" and "logits".

  `crop_size` is the training crop the features were cached at: it fixes the pyramid
  pooling kernels exactly as in the full model. Rates are scaled by 16 // output_stride.
  The same model as dpc_tf.models.build_head_model (same layer names, so converted head
  weights load into it), plus the branch width and BN momentum a short proxy run needs.
  """
  if 16 % output_stride:
    raise ValueError(f"output_stride must divide 16 (rates are written for 16), got "
                     f"{output_stride}")
  features = keras.Input((None, None, feature_channels), name="features")
  head = DensePredictionCell(
      cell, filters=filters, projection_filters=projection_filters or filters,
      dropout=dropout, crop_size=crop_size,
      output_stride=output_stride, weight_decay=weight_decay, bn_momentum=bn_momentum,
      bn_epsilon=bn_epsilon, name="head")
  logits = logits_layer(num_classes, weight_decay)
  return keras.Model(features, logits(head(features)), name="proxy_head")


def head_costs(model: keras.Model, feature_shape: Sequence[int]) -> dict:
  """Params / multiply-adds at one feature map: the paper's branch convention plus totals."""
  report = costs.model_costs(model, tuple(feature_shape), *model_parts(model))
  return {"branch_params": report["head"]["branch_params"],
          "branch_madds": report["head"]["branch_madds"],
          "head_params": report["head"]["trainable_params"],
          "head_madds": report["head"]["madds"],
          "params": report["total"]["trainable_params"],
          "madds": report["total"]["madds"],
          "cost_feature_shape": list(feature_shape)}
