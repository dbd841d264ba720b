"""Per-trial results on disk: WORK_DIR/<kind>/<key>.json, one file per finished trial.

A file is written atomically when its trial finishes, so a killed run loses at most the trial
in flight, and a rerun reuses every finished one instead of repeating it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from typing import Callable, Optional

from dpc_tf.utils.files import read_json, write_json_atomic

_SAFE = re.compile(r"^[A-Za-z0-9_.=-]+$")


def _plain(obj):
  """JSON-safe copy: numpy scalars to Python numbers, NaN kept as None, odd objects as str."""
  if isinstance(obj, dict):
    return {str(k): _plain(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_plain(v) for v in obj]
  if isinstance(obj, bool) or obj is None or isinstance(obj, str):
    return obj
  if isinstance(obj, int):
    return obj
  try:
    value = float(obj)
  except (TypeError, ValueError):
    return str(obj)
  if isinstance(obj, float) or hasattr(obj, "dtype"):
    if hasattr(obj, "dtype") and "int" in str(obj.dtype):
      return int(obj)
    return value if math.isfinite(value) else None
  return str(obj)


class ResultStore:
  """Finished trial records under `root`, addressed by (kind, key)."""

  def __init__(self, root: str):
    self.root = root
    self.ran = 0  # trials run (not reused) by this process

  def path(self, kind: str, key: str) -> str:
    for part in (kind, key):
      if not _SAFE.match(part):
        raise ValueError(f"result store: unsafe name {part!r}")
    return os.path.join(self.root, kind, key + ".json")

  def get(self, kind: str, key: str) -> Optional[dict]:
    path = self.path(kind, key)
    if not os.path.exists(path):
      return None
    return read_json(path, "stored result")

  def put(self, kind: str, key: str, record: dict) -> dict:
    record = _plain(record)
    write_json_atomic(self.path(kind, key), record)
    return record

  def get_or_run(self, kind: str, key: str, run: Callable[[], dict]) -> dict:
    found = self.get(kind, key)
    if found is not None:
      return found
    logging.info("running %s/%s", kind, key)
    record = self.put(kind, key, run())
    self.ran += 1
    return record

  def read_claim(self, name: str) -> Optional[dict]:
    path = os.path.join(self.root, name + ".json")
    if not os.path.exists(path):
      return None
    return read_json(path, "stored claim")

  def write_claim(self, name: str, summary: dict) -> str:
    path = os.path.join(self.root, name + ".json")
    write_json_atomic(path, _plain(summary))
    return path
