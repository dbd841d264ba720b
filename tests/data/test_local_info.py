"""dpc_tf's builders never look for their info on tfds's bucket, so making one (data not yet
prepared) leaves no empty tfds temporary folder behind (tfds 4.9 leaks one per builder)."""

import tempfile

import pytest

from dpc_tf.data import dpc_synthetic, folder_builder, pascal_person_part, voc2012_sbd
from dpc_tf.data.local_info import LocalDatasetInfo


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
  """Where tempfile puts folders while the test runs (its own, so leaks are visible)."""
  root = tmp_path / "temp"
  root.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(root))
  return root


@pytest.mark.parametrize("make", [
    lambda d: dpc_synthetic.DpcSynthetic(data_dir=d),
    lambda d: pascal_person_part.PascalPersonPart(data_dir=d),
    lambda d: voc2012_sbd.Voc2012Sbd(data_dir=d)], ids=["dpc_synthetic", "person_part", "voc"])
def test_making_a_builder_leaves_no_temporary_folder(make, tmp_path, temp_root):
  builder = make(str(tmp_path / "data"))
  assert isinstance(builder.info, LocalDatasetInfo)
  assert list(temp_root.iterdir()) == []


def test_the_folder_builder_too(tmp_path, temp_root, folder_writer):
  root = folder_writer.write(tmp_path / "mine", kind="rgb")
  builder = folder_builder.make_builder(f"folder:{root}", str(tmp_path / "data"))
  assert isinstance(builder.info, LocalDatasetInfo)
  assert list(temp_root.iterdir()) == []
