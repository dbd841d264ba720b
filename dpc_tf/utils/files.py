"""Atomic file writes: a crash at any instant leaves either the old file or the new one."""

import json
import os
import tempfile


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes via a temporary file in the same folder, fsync, then an atomic rename."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_text_atomic(path: str, text: str) -> None:
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, obj, indent: int = 2) -> None:
  write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")
