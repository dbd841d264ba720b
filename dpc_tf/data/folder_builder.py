"""tfds builder `folder_dataset`: a folder dataset (dpc_tf.data.folder) as tfds records.

One builder config per folder *content*: its name is the folder's name plus a hash of
classes.txt, every file's name, size and modification time, and the label settings (the
spec's version), so an edited folder is prepared again under a new config instead of
silently reusing stale records; the builder's VERSION is the code's (folder.FOLDER_VERSION).
Every split folder becomes a tfds split of the same name. Images are stored as their own
JPEG/PNG bytes (re-encoded as PNG only when TensorFlow could not decode them as RGB); labels
as single-channel PNGs of class ids with 255 = ignore, whatever their format on disk.
Preparing reads every file once more and stops at the first unusable one, naming it.
"""

from __future__ import annotations

from typing import Optional

import tensorflow_datasets as tfds

from dpc_tf.data import folder, folder_files
from dpc_tf.data.local_info import LocalDatasetInfo
from dpc_tf.errors import DpcError


class FolderBuilderConfig(tfds.core.BuilderConfig):
  """Carries the folder's settings; made per folder by `make_builder`, never registered."""

  def __init__(self, *, settings: folder.FolderSettings, **kwargs):
    super().__init__(**kwargs)
    self.settings = settings


class FolderDataset(tfds.core.GeneratorBasedBuilder):
  """Images and masks from ROOT/images/<split>/ and ROOT/labels/<split>/."""

  name = "folder_dataset"
  VERSION = tfds.core.Version(folder.FOLDER_VERSION)
  RELEASE_NOTES = {"1.0.0": "Index, palette and RGB colour-coded labels; nested folders."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Bind folder_dataset.root to a folder laid out as " + \
      folder.LAYOUT

  def _info(self) -> tfds.core.DatasetInfo:
    return LocalDatasetInfo(
        builder=self,
        description="A user's folder of images and segmentation masks (dpc_tf folder).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "segmentation_mask": tfds.features.Image(shape=(None, None, 1),
                                                     encoding_format="png"),
        }),
        supervised_keys=("image", "segmentation_mask"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # the root comes with the config
    settings = self.builder_config.settings
    listing = folder.list_folder(settings.root)
    table = folder.read_classes(settings.root)
    return {split: self._generate_examples(pairs, table, settings)
            for split, pairs in listing.splits.items() if pairs}

  def _generate_examples(self, pairs, table, settings):
    for pair in pairs:
      label = folder_files.read_label(pair.label, table, settings)
      if label.problem is not None:
        raise DpcError(f"{label.problem[0]}: {label.problem[1]}")
      try:
        size = folder_files.image_size(pair.image)
        image = folder_files.image_bytes_or_array(pair.image)
      except (OSError, ValueError, SyntaxError) as e:
        raise DpcError(f"unreadable: image {pair.image} cannot be read: "
                       f"{' '.join(str(e).split())}") from None
      if size != label.ids.shape:
        raise DpcError(f"size_mismatch: label {pair.label} is {label.ids.shape[0]}x"
                       f"{label.ids.shape[1]} but its image {pair.image} is "
                       f"{size[0]}x{size[1]}")
      yield pair.key, {"image": image, "segmentation_mask": label.ids[..., None]}


def make_builder(name: str, data_dir: Optional[str] = None) -> FolderDataset:
  """The builder of dataset `name` ("folder" or "folder:PATH") for its current content."""
  spec = folder.folder_spec(name)
  config = FolderBuilderConfig(
      name=spec.tfds_name.split("/", 1)[1], version=folder.FOLDER_VERSION,
      description=f"{folder.settings_for(name).root} ({spec.version})",
      settings=folder.settings_for(name))
  return FolderDataset(config=config, data_dir=data_dir)
