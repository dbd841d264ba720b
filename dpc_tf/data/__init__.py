"""Datasets, input pipelines and the label rule / mIOU every loss and score uses.

Importing this package registers the tfds builders `voc2012_sbd`, `pascal_person_part`,
`dpc_synthetic` and `folder_dataset` (Cityscapes uses tfds's own
`cityscapes/semantic_segmentation`) and the gin configurable `folder_dataset` (your own data:
`folder_dataset.root = '/data/mine'`, dataset name "folder"; see dpc_tf/data/folder.py).

  get_spec(name)               static facts: classes, ignore label, palette, crops, tfds name
  load_split(name, split)      {"image", "segmentation_mask"} with class ids mapped
  build_input_pipeline(...)    DeepLab preprocessing, batched: (float32 images, int32 labels)
  metrics                      the label rule, confusion counts, iou_from_confusion
"""

from dpc_tf.data import dpc_synthetic as _dpc_synthetic  # registers the tfds builders
from dpc_tf.data import folder_builder as _folder_builder
from dpc_tf.data.folder import folder_dataset
from dpc_tf.data import pascal_person_part as _pascal_person_part
from dpc_tf.data import voc2012_sbd as _voc2012_sbd
from dpc_tf.data.cityscapes import labelids_to_trainids
from dpc_tf.data.loading import Source, load_split, open_source
from dpc_tf.data.manual import ManualDirError
from dpc_tf.data.pipeline import build_input_pipeline, input_pipeline, pipeline_from_source
from dpc_tf.data.specs import IGNORE_LABEL, DatasetSpec, dataset_names, get_spec
from dpc_tf.data.synthetic import SyntheticConfig, generate_example

__all__ = [
    "DatasetSpec", "IGNORE_LABEL", "ManualDirError", "Source", "SyntheticConfig",
    "build_input_pipeline", "dataset_names", "folder_dataset", "generate_example", "get_spec",
    "input_pipeline", "labelids_to_trainids", "load_split", "open_source",
    "pipeline_from_source",
]
