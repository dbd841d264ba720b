"""Released TF1 DeepLab checkpoints -> dpc_tf models.

`convert_checkpoint(...)` (CLI: python -m dpc_tf.convert_checkpoint) writes a converted
folder; `load_converted_weights(model, folder)` loads it into a dpc_tf model (see
converted.py for the folder format); `load_initial_weights` is the one loader of starting
weights (converted folder or backbone .weights.h5) and `save_backbone` writes a
backbone-only folder; `tf1_mapping` names the TF1 variable of every weight.
"""

from dpc_tf.checkpoints.converted import (CONFIG_FILE, MAPPING_FILE, WEIGHTS_FILE,
                                          ConvertedWeightsError, as_part, load_converted_weights,
                                          load_initial_weights, read_model_config, read_weights,
                                          save_backbone)
from dpc_tf.checkpoints.convert import (ConversionError, ConversionReport, convert_checkpoint,
                                        skip_reason)
from dpc_tf.checkpoints.tf1_names import PARTS, tf1_mapping, weight_keys
from dpc_tf.checkpoints.tf1_writer import write_tf1_checkpoint
