"""DeepLab models: backbone + DPC/ASPP head + optional decoder + logits.

`build_deeplab(...)` (gin: `deeplab_model`) builds the full model; `build_head` the head
layer alone and `build_head_model` a head + logits model on (cached) backbone features;
`model_parts(model)` gives the parts dpc_tf.costs.model_costs splits costs into;
`fold_batch_norm(model)` an inference copy with batch norm folded into the convolutions.
"""

from dpc_tf.models.decoder import Decoder, ResizeLike
from dpc_tf.models.deeplab import (DECODER_OUTPUT_STRIDES, HEADS, build_deeplab, build_head,
                                   build_head_model, deeplab_model, logits_layer, model_parts,
                                   parse_decoder_output_stride, resolve_cell)
from dpc_tf.models.folding import fold_batch_norm, foldable_layers
