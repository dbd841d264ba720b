"""Warm start: begin a search from another search's best cells (`search_algorithm.warm_start`).

A search on a new dataset should start from what worked elsewhere, not from uniform draws.
`search_algorithm.warm_start = 'OTHER_DIR/results.csv'` (or OTHER_DIR) reads that search's
results.csv in the driver and keeps its finished searched cells (status 'done', origin not
'baseline', a proxy_miou), best first under *this* search's objective ('miou': by proxy
mIOU; 'pareto': by Pareto rank of proxy mIOU against branch MAdds, then mIOU), one per
canonical fingerprint, of this search's number of branches. The first
`search_algorithm.warm_start_cells` (default top_k) of them that this search's cost limits
allow are then:

- proposed first: suggestion i is the best of them not yet in the store (origin
  'warm_start' in results.csv). They are ordinary trials: they count in the budget, and a
  cell already in the store (a baseline, or one proposed before a kill -9) is never
  proposed again, so a resumed search does not propose them twice;
- mutation parents: once they are all proposed and none has a result here yet (several
  workers), mutations start from them (origin 'warm_mutation'; no parent id, since the
  parent's own trial has not finished). Once results exist, this search's own top-k decide,
  and the warm cells compete there with their scores on this search's data.

The chosen list is pinned in the store's meta table when the search starts (`pin`), so a
resumed search proposes the same cells even if the other search has moved on since.

Pure Python: the driver reads the file before any process starts; a missing or malformed
file is one SearchError line naming the file and the line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from typing import Callable, Collection, Optional

from absl import logging

from dpc_tf import gin_config
from dpc_tf.search import objectives
from dpc_tf.search.errors import SearchError
from dpc_tf.search_space import Cell, CellError

ORIGIN = "warm_start"
MUTATION_ORIGIN = "warm_mutation"
_REQUIRED = ("cell", "status", "proxy_miou", "origin")
_META_KEY = "warm_start"


@dataclasses.dataclass(frozen=True)
class WarmCell:
  """A finished cell of the other search, with where it came from."""
  cell: Cell
  score: float  # its proxy mIOU there
  madds: Optional[float]  # its branch MAdds there (the 'pareto' order)
  line: int  # its line in the other results.csv


def _number(text: str, where: str, column: str) -> Optional[float]:
  if text is None or not text.strip():
    return None
  try:
    value = float(text)
  except ValueError:
    raise SearchError(f"{where}: {column} {text!r} is not a number") from None
  if not math.isfinite(value):
    return None
  return value


def results_path(path: str) -> str:
  """The results.csv a setting names: a file, a search folder holding one, or (relative and
  not on disk) a file shipped among the packaged configs, like --gin_file."""
  expanded = os.path.expanduser(path)
  if os.path.isdir(expanded):
    return os.path.join(expanded, "results.csv")
  if not os.path.exists(expanded):
    return gin_config.packaged_path(expanded) or expanded
  return expanded


def read_results(path: str, num_branches: int, objective: str = "miou") -> list[WarmCell]:
  """The usable cells of another search's results.csv, best first, one per fingerprint."""
  path = results_path(path)
  what = f"search_algorithm.warm_start: {path}"
  try:
    with open(path, newline="", encoding="utf-8") as f:
      rows = list(_rows(csv.DictReader(f), what))
  except FileNotFoundError:
    raise SearchError(f"{what} does not exist (give another search's results.csv or its "
                      "search_dir)") from None
  except UnicodeDecodeError as e:
    raise SearchError(f"{what} is not UTF-8 text ({e.reason} at byte {e.start})") from None
  except OSError as e:
    raise SearchError(f"{what} cannot be read: {e.strerror or e}") from None
  other_sizes = sum(1 for r in rows if len(r.cell) != num_branches)
  usable = [r for r in rows if len(r.cell) == num_branches]
  if other_sizes:
    logging.info("%s: %d cell(s) without %d branches left out", what, other_sizes,
                 num_branches)
  ranked = objectives.order(usable, objective, lambda r: r.score, lambda r: r.madds,
                            lambda r: r.line)
  if not ranked:
    needs = " and a branch_madds (objective 'pareto')" if objective == "pareto" else ""
    raise SearchError(f"{what} has no finished searched {num_branches}-branch cell "
                      f"(status 'done', origin not 'baseline', a proxy_miou{needs})")
  unique, seen = [], set()
  for row in ranked:
    fingerprint = row.cell.fingerprint()
    if fingerprint not in seen:
      seen.add(fingerprint)
      unique.append(row)
  return unique


def _rows(reader: csv.DictReader, what: str):
  try:
    columns = reader.fieldnames or []
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
      raise SearchError(f"{what} is not a search's results.csv: no column "
                        f"{', '.join(repr(c) for c in missing)} (line 1 has {len(columns)} "
                        "columns)")
    for row in reader:
      where = f"{what} line {reader.line_num}"
      if None in row or any(v is None for v in row.values()):
        fields = sum(row[c] is not None for c in columns) + len(row.get(None) or [])
        raise SearchError(f"{where} has {fields} fields, the header {len(columns)}")
      if row["status"] != "done" or row["origin"] == "baseline":
        continue
      score = _number(row["proxy_miou"], where, "proxy_miou")
      madds = _number(row.get("branch_madds"), where, "branch_madds")
      if score is None:
        continue
      try:
        cell = Cell.from_text(row["cell"])
      except CellError as e:
        raise SearchError(f"{where}: cell {row['cell']!r} is not a cell: {e}") from None
      yield WarmCell(cell, score, madds, reader.line_num)
  except csv.Error as e:
    raise SearchError(f"{what} line {reader.line_num}: {e}") from None


class WarmStart:
  """The other search's best cells, and which of them this search proposes (see module doc)."""

  def __init__(self, path: str, candidates: list[WarmCell], count: int):
    self.path = path
    self.candidates = candidates
    self.count = count
    self._chosen: Optional[list[Cell]] = None

  @classmethod
  def read(cls, path: str, num_branches: int, objective: str, count: int) -> "WarmStart":
    return cls(results_path(path), read_results(path, num_branches, objective), count)

  def chosen(self, allowed: Callable[[Cell], bool]) -> list[Cell]:
    """The first `count` candidates within the cost limits (fixed once computed or pinned)."""
    if self._chosen is None:
      chosen = []
      for candidate in self.candidates:
        if len(chosen) >= self.count:
          break
        if allowed(candidate.cell):
          chosen.append(candidate.cell)
      self._chosen = chosen
    return self._chosen

  def next_cell(self, seen: Collection[str], allowed: Callable[[Cell], bool]) -> Optional[Cell]:
    """The best chosen cell not yet in the store, or None once all were proposed."""
    for cell in self.chosen(allowed):
      if cell.fingerprint() not in seen:
        return cell
    return None

  def pin(self, store, allowed: Callable[[Cell], bool]) -> list[Cell]:
    """Fixes the chosen cells in the store's meta on the first start; later starts read them."""
    pinned = store.get_meta(_META_KEY)
    if pinned is not None:
      data = json.loads(pinned)
      self._chosen = [Cell.from_json(c) for c in data["cells"]]
    else:
      chosen = self.chosen(allowed)
      store.set_meta(_META_KEY, json.dumps({"source": self.path,
                                            "cells": [c.to_json() for c in chosen]}))
    logging.info("warm start: %d cell(s) from %s", len(self._chosen), self.path)
    return self._chosen


def pin(store, algorithm) -> None:
  """The pipeline's hook: pins the algorithm's warm start (if any) in the search's store."""
  warm = getattr(algorithm, "warm_start", None)
  if warm is not None:
    warm.pin(store, algorithm.allowed)
