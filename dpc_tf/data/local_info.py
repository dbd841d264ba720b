"""DatasetInfo for the datasets dpc_tf builds itself (never on tfds's GCS bucket)."""

from __future__ import annotations

import tensorflow_datasets as tfds


class LocalDatasetInfo(tfds.core.DatasetInfo):
  """tfds.core.DatasetInfo that does not look for pre-computed info on tfds's bucket.

  tfds's DatasetBuilder.__init__ calls info.initialize_from_bucket() whenever the data is not
  prepared yet. In tfds 4.9 that call first makes a tempfile.mkdtemp("tfds") and never removes
  it when the bucket has nothing (an empty /tmp/tmp*tfds per builder made: hundreds per test
  run), and asks GCS unless tfds has GCS access disabled. The bucket holds nothing of ours, so
  nothing is asked and nothing is left behind.
  """

  def initialize_from_bucket(self) -> None:
    return None
