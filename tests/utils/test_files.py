import json
import os

import pytest

from dpc_tf.utils import files


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "a" / "b.json"
  files.write_json_atomic(str(path), {"x": 1})
  files.write_json_atomic(str(path), {"x": 2})
  assert json.loads(path.read_text()) == {"x": 2}
  assert os.listdir(path.parent) == ["b.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / "c.txt"
  files.write_text_atomic(str(path), "old")

  def broken_replace(*args):
    raise OSError("disk full")
  monkeypatch.setattr(os, "replace", broken_replace)
  with pytest.raises(OSError, match="disk full"):
    files.write_text_atomic(str(path), "new")
  assert path.read_text() == "old"
  assert os.listdir(tmp_path) == ["c.txt"]
