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


@pytest.fixture
def umask_022():
  old = os.umask(0o022)
  yield
  os.umask(old)


def test_written_files_and_folders_get_normal_permissions(tmp_path, umask_022):
  path = tmp_path / "results.json"
  files.write_json_atomic(str(path), {"x": 1})
  assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
  folder = files.make_temp_dir(str(tmp_path), ".export.tmp-")
  assert os.stat(folder).st_mode & 0o777 == 0o755  # not mkdtemp's 0700
  os.umask(0o077)
  files.write_json_atomic(str(path), {"x": 2})
  assert path.stat().st_mode & 0o777 == 0o600  # the umask is respected


def test_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
  import errno
  path = tmp_path / "summary.json"
  files.write_json_atomic(str(path), {"x": 1})
  real_fsync = os.fsync

  def full(fd):  # where a full disk shows up for buffered writes
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(os, "fsync", full)
  with pytest.raises(files.DiskFullError, match=f"cannot write {path}: No space left"):
    files.write_json_atomic(str(path), {"x": 2})
  monkeypatch.setattr(os, "fsync", real_fsync)
  assert json.loads(path.read_text()) == {"x": 1}
  assert os.listdir(tmp_path) == ["summary.json"]


@pytest.mark.parametrize("text, message", [
    (b"\xff\xfe[1]", "not UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"a": 1, "a": 2}', "duplicated key 'a'"),
    (b'{"a": ', "invalid JSON"),
])
def test_bad_json_is_one_line(tmp_path, text, message):
  path = tmp_path / "x.json"
  path.write_bytes(text)
  with pytest.raises(files.JsonError, match=message) as info:
    files.read_json(str(path), "cell file")
  assert str(info.value).startswith(f"cell file {path}: ") and "\n" not in str(info.value)


def test_writable_dir(tmp_path):
  (tmp_path / "f").write_text("")
  with pytest.raises(files.NotWritableError, match="--model_dir=.* is a file"):
    files.writable_dir(str(tmp_path / "f"), "model_dir")
  with pytest.raises(files.NotWritableError, match="cannot be created"):
    files.writable_dir(str(tmp_path / "f" / "sub"), "model_dir")
