"""Opening a split of any dataset as {"image": uint8 [H,W,3], "segmentation_mask": uint8 [H,W,1]}.

A split is opened as a *source*: a dataset of raw elements (encoded bytes for tfds data,
example indices for the on-the-fly synthetic data) plus the function that decodes one. The
input pipeline shuffles the cheap raw elements and decodes in its parallel map; `load_split`
just decodes right away.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from dpc_tf.data import cityscapes, folder, synthetic, synthetic_memo
from dpc_tf.data.specs import get_spec

SPLITS = ("train", "validation")
_SLICE = re.compile(r"^(\w+)(?:\[(-?\d*):(-?\d*)\])?$")


@dataclasses.dataclass
class Source:
  """Raw elements of a split and the decoder of one element (traceable by tf.data)."""
  dataset: tf.data.Dataset
  decode: Callable[[Any], dict]
  num_examples: Optional[int]


def _split_name(split: str) -> str:
  base = re.split(r"[\[+]", split, maxsplit=1)[0]
  if base not in SPLITS:
    raise ValueError(f"split {split!r}: expected one of {SPLITS}, optionally sliced "
                     f"(e.g. 'train[:100]')")
  return base


def _maybe_decode(feature, value: tf.Tensor) -> tf.Tensor:
  # tfds mocks (tests) may ignore SkipDecoding and hand over decoded tensors already.
  return feature.decode_example(value) if value.dtype == tf.string else value


def _check_tfds_dependencies() -> None:
  """tfds 4.9 imports importlib_resources while preparing any builder but does not declare
  it (tensorflow/datasets#11212): fail with the fix rather than deep inside tfds."""
  try:
    import importlib_resources  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError as e:
    raise ImportError("tensorflow-datasets needs the undeclared package importlib_resources "
                      "to prepare datasets (tensorflow/datasets#11212): "
                      "pip install importlib_resources") from e


def _tfds_source(name: str, split: str, data_dir, manual_dir, shuffle_files: bool,
                 seed: Optional[int], builder=None) -> Source:
  spec = get_spec(name)
  _check_tfds_dependencies()
  if builder is None:
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  is_cityscapes = name == "cityscapes"
  image_key = cityscapes.IMAGE_KEY if is_cityscapes else "image"
  label_key = cityscapes.LABEL_KEY if is_cityscapes else "segmentation_mask"
  features = builder.info.features
  skip = tfds.decode.SkipDecoding()
  dataset = builder.as_dataset(
      split=split, shuffle_files=shuffle_files, decoders={image_key: skip, label_key: skip},
      read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False))

  def decode(example):
    image = _maybe_decode(features[image_key], example[image_key])
    mask = _maybe_decode(features[label_key], example[label_key])
    if is_cityscapes:
      mask = cityscapes.labelids_to_trainids(mask)
    return {"image": image, "segmentation_mask": mask}

  try:
    num_examples = builder.info.splits[split].num_examples
  except (KeyError, ValueError, TypeError):
    num_examples = None
  return Source(dataset, decode, num_examples)


def _synthetic_source(name: str, split: str, shuffle_files: bool,
                      seed: Optional[int]) -> Source:
  config = synthetic.get_config(get_spec(name).tfds_name.split("/")[1])
  match = _SLICE.match(split)
  if not match:
    raise ValueError(f"split {split!r}: on-the-fly dpc_synthetic accepts 'train', "
                     f"'validation' or an index slice such as 'train[10:20]'")
  base, start, stop = match.groups()
  synthetic_memo.budget_bytes()  # a bad DPC_TF_SYNTHETIC_MEMO_MB fails here, not mid-pipeline
  indices = range(config.num_examples(base))[slice(int(start) if start else None,
                                                   int(stop) if stop else None)]
  dataset = tf.data.Dataset.range(indices.start, indices.stop)
  if shuffle_files:
    dataset = dataset.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)

  def generate(index):
    return synthetic_memo.example(config, base, int(index))

  def decode(index):
    image, mask = tf.numpy_function(generate, [index], [tf.uint8, tf.uint8], stateful=False)
    image.set_shape((config.height, config.width, 3))
    mask.set_shape((config.height, config.width, 1))
    return {"image": image, "segmentation_mask": mask}

  return Source(dataset, decode, len(indices))


def _folder_source(name: str, split: str, data_dir, shuffle_files: bool,
                   seed: Optional[int]) -> Source:
  # Imported here: the builder module registers a tfds builder and needs Pillow.
  from dpc_tf.data import folder_builder, folder_check  # pylint: disable=import-outside-toplevel
  folder_check.require_trainable(name)
  split = folder.resolve_split(folder.list_folder(folder.settings_for(name).root), split)
  return _tfds_source(name, split, data_dir, None, shuffle_files, seed,
                      builder=folder_builder.make_builder(name, data_dir))


def open_source(name: str, split: str, data_dir: Optional[str] = None,
                manual_dir: Optional[str] = None, shuffle_files: bool = False,
                seed: Optional[int] = None) -> Source:
  """The raw elements of a split and their decoder (see the module docstring).

  dpc_synthetic without a data_dir is generated on the fly (nothing is written); with a
  data_dir it goes through its tfds builder like every other dataset. A folder dataset
  ("folder", "folder:PATH") is checked first (folder_check.require_trainable: a sample of
  each split, once per process and content), then prepared by its own tfds builder; its
  splits are its folder names ("validation" finds val/ when there is no validation/).
  """
  if folder.is_folder_name(name):
    return _folder_source(name, split, data_dir, shuffle_files, seed)
  _split_name(split)
  if get_spec(name).tfds_name.startswith("dpc_synthetic/") and data_dir is None:
    return _synthetic_source(name, split, shuffle_files, seed)
  return _tfds_source(name, split, data_dir, manual_dir, shuffle_files, seed)


def load_split(name: str, split: str, data_dir: Optional[str] = None,
               manual_dir: Optional[str] = None,
               shuffle_files: bool = False) -> tf.data.Dataset:
  """A split as {"image": uint8 [H, W, 3], "segmentation_mask": uint8 [H, W, 1]} with class
  ids already mapped (255 = ignore); prepares the tfds builder first if needed.

  Args:
    name: a dataset name known to `get_spec` ("cityscapes", "voc2012", ...).
    split: "train" or "validation", optionally sliced as tfds allows ("train[:100]").
    data_dir: tfds data folder (tfds' default when None; dpc_synthetic is then generated in
      memory instead).
    manual_dir: where the manually downloaded data lies (tfds' default when None).
    shuffle_files: shuffle the order of the record files (or synthetic indices).
  """
  source = open_source(name, split, data_dir, manual_dir, shuffle_files)
  return source.dataset.map(source.decode, num_parallel_calls=tf.data.AUTOTUNE)
