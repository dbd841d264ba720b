"""One row of the trial store (store.py): the Trial record and how its fields are encoded.

A row's `record` and `rerank_record` are JSON (numpy scalars written as numbers); scores are
finite floats or NULL.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from typing import Optional

from dpc_tf.search import subjects
from dpc_tf.search_space import Cell
from dpc_tf.utils.files import loads_json

STATUSES = ("pending", "running", "done", "failed")
TERMINAL = ("done", "failed")
BASELINE = "baseline"  # the origin of baseline rows (negative ids)


@dataclasses.dataclass(frozen=True)
class Trial:
  """One row of the store. `seconds` is the time spent inside the trial function."""
  id: int
  fingerprint: str
  cell_text: str
  cell_json: str
  origin: str
  parent: Optional[int]
  status: str
  attempts: int
  score: Optional[float]
  record: Optional[dict]
  error: Optional[str]
  worker: Optional[str]
  created: float
  started: Optional[float]
  finished: Optional[float]
  seconds: Optional[float]
  rerank_score: Optional[float]
  rerank_record: Optional[dict]
  rung: int = 0  # successive halving: the rung of the current (or last) job

  @property
  def subject(self) -> "subjects.Subject":
    return subjects.decode(self.cell_json)

  @property
  def cell(self) -> Optional[Cell]:
    """The cell (None for the ASPP baseline, which is a head, not a cell)."""
    return self.subject.cell

  @property
  def is_baseline(self) -> bool:
    return self.origin == BASELINE

  @classmethod
  def from_row(cls, row: sqlite3.Row) -> "Trial":
    data = dict(row)
    for key in ("record", "rerank_record"):
      if data[key] is not None:
        data[key] = loads_json(data[key], f"trial {data.get('id')} {key} in the store",
                               duplicates_ok=True)
    return cls(**data)


def json_or_none(value) -> Optional[str]:
  return None if value is None else json.dumps(value, sort_keys=True, default=jsonable)


def jsonable(value):
  """Numpy scalars and the like, as JSON numbers or strings."""
  for cast in (int, float):
    try:
      if cast(value) == value:
        return cast(value)
    except (TypeError, ValueError):
      pass
  return str(value)


def finite_or_none(value) -> Optional[float]:
  try:
    value = float(value)
  except (TypeError, ValueError):
    return None
  return value if math.isfinite(value) else None
