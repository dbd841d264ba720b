"""tfds builder `dpc_synthetic`: the procedural dataset of synthetic.py, stored by tfds.

`load_split("dpc_synthetic")` without a data_dir generates examples on the fly and never
touches the disk; this builder is for users who want the data as tfds records (e.g.
`tfds.load("dpc_synthetic/tiny", data_dir=...)`). Both paths give identical examples.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from dpc_tf.data import synthetic
from dpc_tf.data.local_info import LocalDatasetInfo
from dpc_tf.data.specs import SYNTHETIC_VERSION


class DpcSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic segmentation where the class depends on multi-scale context (7 classes)."""

  name = "dpc_synthetic"
  VERSION = tfds.core.Version(SYNTHETIC_VERSION)
  RELEASE_NOTES = {"1.0.0": "Discs by size, framed squares by frame colour, diamonds by scene.",
                   "1.1.0": "Spot-free margin around diamonds; diamonds per image capped."}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(
          name=c.name,
          description=(f"{c.height}x{c.width}, {c.train_examples} train / "
                       f"{c.validation_examples} validation examples, seed {c.seed}"))
      for c in synthetic.SYNTHETIC_CONFIGS]

  def _info(self) -> tfds.core.DatasetInfo:
    config = synthetic.get_config(self.builder_config.name)
    return LocalDatasetInfo(
        builder=self,
        description=synthetic.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(config.height, config.width, 3),
                                         encoding_format="png"),
            "segmentation_mask": tfds.features.Image(shape=(config.height, config.width, 1),
                                                     encoding_format="png"),
        }),
        supervised_keys=("image", "segmentation_mask"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    config = synthetic.get_config(self.builder_config.name)
    return {split: self._generate_examples(config, split) for split in synthetic.SPLITS}

  def _generate_examples(self, config, split):
    for index in range(config.num_examples(split)):
      image, mask = synthetic.generate_example(config, split, index)
      yield index, {"image": image, "segmentation_mask": mask}
