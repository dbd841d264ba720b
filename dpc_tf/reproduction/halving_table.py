"""The halving study on the real proxy, as a tabular replay (NAS-Bench style).

Running real proxy searches for >= 6 seeds x 2 searches does not fit a 2-core machine, so
the real proxy is run once per cell and the searches are replayed on the results:

- The table: `num_cells` distinct cells drawn uniformly (seeded), each trained ONCE by the
  real proxy on the dpc_synthetic feature cache and scored at every rung. A row is what a
  halving search would see: the cell runs rungs[0] steps from scratch, then is continued
  (run_proxy_trial's start_from/save_to) to each later rung, the poly schedule running over
  the top rung's steps (schedule_steps), so every rung's score is the one a halving search
  gets and the top rung's is the one a flat search gets (continuation equals an unbroken
  run, tests/proxy checks the weights). WORK/halving_table/table.csv holds the rows (cell
  text, fingerprint, score per rung, seconds), rewritten atomically after each cell: kill
  and rerun continues. table_settings.json records what made it (table settings, proxy
  trial settings, feature cache identity); a table made otherwise is refused.
- The replay (halving.py, trial='table'): the study's own searches (RandomSearch with
  p_uniform = 1.0, Coordinator, Store, halving) with `TableTrial` as the trial: a sampled
  cell maps to row sha256(fingerprint) mod num_cells -- for uniformly sampled cells a
  uniform draw of a row -- and its score at `steps` is read from that row.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import random
import tempfile
import time
from typing import Callable, Optional, Sequence

from dpc_tf.errors import DpcError
from dpc_tf.search.fake_trial import FakeTrial
from dpc_tf.search_space import Cell
from dpc_tf.search_space.sampling import sample_cell
from dpc_tf.utils.differences import describe_differences
from dpc_tf.utils.files import read_json, remove_tree, write_json_atomic, write_text_atomic
from dpc_tf.utils.locks import folder_lock

TABLE_DIR = "halving_table"
TABLE_FILE = "table.csv"
SETTINGS_FILE = "table_settings.json"
SCRATCH_PREFIX = "heads-"


@dataclasses.dataclass(frozen=True)
class TableSettings:
  num_cells: int = 64
  cells_seed: int = 0
  num_branches: int = 5
  # Three rungs for eta = 3 (each rung 3x the last): a new cell costs 33 steps, so halving
  # can look at ~4x the cells of a flat search of the same steps; (100, 300) would give ~2x.
  # The table costs the same top-rung steps either way, plus one evaluation per rung.
  rungs: tuple[int, ...] = (33, 100, 300)


class TableError(DpcError):
  """The table on disk does not belong to these settings, or is malformed."""


def table_cells(settings: TableSettings) -> list[Cell]:
  """The table's cells: uniform draws with one seeded rng, duplicates (same fingerprint)
  skipped; a fixed list for fixed settings, so a rerun continues the same table."""
  rng, cells, seen = random.Random(settings.cells_seed), [], set()
  while len(cells) < settings.num_cells:
    cell = sample_cell(rng, settings.num_branches)
    if cell.fingerprint() not in seen:
      seen.add(cell.fingerprint())
      cells.append(cell)
  return cells


def score_column(steps: int) -> str:
  return f"score_at_{steps}"


def columns(rungs: Sequence[int]) -> list[str]:
  return ["index", "cell_text", "fingerprint", *map(score_column, rungs), "seconds"]


def read_table(folder: str, identity: dict) -> list[dict]:
  """The finished rows in `folder` (none: []); TableError if they were made otherwise (in
  the parts `identity` names: the table, proxy_trial and cache)."""
  settings_path = os.path.join(folder, SETTINGS_FILE)
  table_path = os.path.join(folder, TABLE_FILE)
  if not os.path.exists(settings_path):
    if os.path.exists(table_path):
      raise TableError(f"{table_path} has no {SETTINGS_FILE} beside it: delete the folder "
                       "or restore it")
    return []
  made = read_json(settings_path, "halving table settings")
  differ = describe_differences({k: v for k, v in made.items() if k in identity}, identity,
                                lambda key, a, b: f"{key} {a!r} (wanted {b!r})")
  if differ:
    raise TableError(f"{folder} holds a halving table made with other settings: "
                     f"{'; '.join(differ[:3])}{' ...' if len(differ) > 3 else ''}; use "
                     "another --work_dir or delete the folder")
  if not os.path.exists(table_path):
    return []
  rungs = identity["table"]["rungs"]
  with open(table_path, newline="") as f:
    reader = csv.DictReader(f)
    if reader.fieldnames != columns(rungs):
      raise TableError(f"{table_path}: columns {reader.fieldnames}, expected {columns(rungs)}")
    try:
      return [{"index": int(r["index"]), "cell_text": r["cell_text"],
               "fingerprint": r["fingerprint"],
               "scores": [float(r[score_column(s)]) for s in rungs],
               "seconds": float(r["seconds"])} for r in reader]
    except ValueError as e:
      raise TableError(f"{table_path}: a malformed row ({e})") from None


def write_table(folder: str, rows: Sequence[dict], rungs: Sequence[int]) -> None:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(columns(rungs))
  for row in rows:
    writer.writerow([row["index"], row["cell_text"], row["fingerprint"],
                     *(f"{s:.6f}" for s in row["scores"]), f"{row['seconds']:.2f}"])
  write_text_atomic(os.path.join(folder, TABLE_FILE), out.getvalue())


def run_row(cell: Cell, rungs: Sequence[int], trial_fn: Callable, scratch: str) -> list[float]:
  """The cell's score at every rung, continued rung to rung as a halving search does."""
  scores, previous = [], None
  for k, steps in enumerate(rungs):
    save_to = os.path.join(scratch, f"rung{k}")
    os.makedirs(save_to, exist_ok=True)
    record = trial_fn(cell, steps=int(steps), schedule_steps=int(rungs[-1]),
                      start_from=previous, save_to=save_to)
    scores.append(float(record["miou"]))
    previous = save_to
  return scores


def build_table(folder: str, settings: TableSettings, trial_fn: Callable, identity: dict,
                max_new: Optional[int] = None, deadline: Optional[float] = None,
                log: Callable[[str], None] = lambda line: None) -> list[dict]:
  """Runs the rows not yet in the table (resumable); returns all finished rows.

  trial_fn(cell, steps=, schedule_steps=, start_from=, save_to=) -> record with 'miou' (the
  real proxy: run_proxy_trial with the study's settings). Stops early after `max_new` new
  rows or at `deadline` (time.time()); a rerun continues."""
  head = [r for r in read_table(folder, identity) if r["index"] < settings.num_cells]
  if len(head) == settings.num_cells:  # complete: read only (another may be extending it)
    return head
  os.makedirs(folder, exist_ok=True)
  with folder_lock(folder, what="is being built by another process"):
    return _build_locked(folder, settings, trial_fn, identity, max_new, deadline, log)


def _build_locked(folder, settings, trial_fn, identity, max_new, deadline, log) -> list[dict]:
  rows = read_table(folder, identity)
  if not os.path.exists(os.path.join(folder, SETTINGS_FILE)):
    write_json_atomic(os.path.join(folder, SETTINGS_FILE), identity)
  for name in os.listdir(folder):  # a killed build's head checkpoints: its row reruns
    if name.startswith(SCRATCH_PREFIX):
      remove_tree(os.path.join(folder, name))
  done = {r["index"] for r in rows}
  new = 0
  for index, cell in enumerate(table_cells(settings)):
    if index in done:
      continue
    if (max_new is not None and new >= max_new) or (deadline and time.time() > deadline):
      break
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=folder) as scratch:
      scores = run_row(cell, settings.rungs, trial_fn, scratch)
    # Rounded as the CSV holds them: a fresh row equals the same row read back.
    row = {"index": index, "cell_text": cell.text, "fingerprint": cell.fingerprint(),
           "scores": [round(s, 6) for s in scores], "seconds": round(time.time() - started, 2)}
    rows.append(row)
    rows.sort(key=lambda r: r["index"])
    write_table(folder, rows, settings.rungs)
    new += 1
    log(f"halving table: row {index} ({len(rows)}/{settings.num_cells}) "
        f"{' '.join(f'{s:.4f}' for s in scores)} in {row['seconds']:.0f} s")
  return [r for r in rows if r["index"] < settings.num_cells]  # a longer table: its head


def table_identity(settings: TableSettings, trial_settings: dict, cache: dict) -> dict:
  """What a table is checked against: it is reused only when all of this is equal."""
  # num_cells is left out: the cells are a fixed sequence, so a table can be extended.
  table = {k: v for k, v in dataclasses.asdict(settings).items() if k != "num_cells"}
  return {"table": table, "proxy_trial": dict(trial_settings), "cache": dict(cache)}


@dataclasses.dataclass(frozen=True)
class TableTrial:
  """A trial function that reads the table: cell -> row sha256(fingerprint) mod len(rows),
  its score at `steps` (a rung of the table). Continuations are checked as the fake trial
  checks them (state files in save_to / start_from), so the replay exercises the search's
  continuation bookkeeping as a real run would."""
  scores: tuple[tuple[float, ...], ...]   # per row, per rung
  rungs: tuple[int, ...]

  def row(self, cell: Cell) -> int:
    digest = hashlib.sha256(cell.fingerprint().encode()).digest()
    return int.from_bytes(digest[:8], "big") % len(self.scores)

  def score(self, cell: Cell, steps: Optional[int] = None) -> float:
    steps = self.rungs[-1] if steps is None else steps
    if steps not in self.rungs:
      raise DpcError(f"halving table: {steps} steps is not a rung of the table {self.rungs}")
    return self.scores[self.row(cell)][self.rungs.index(steps)]

  def __call__(self, cell: Cell, steps: Optional[int] = None, **kwargs) -> dict:
    record = FakeTrial()(cell, steps=steps, **kwargs)  # continuation checks and costs
    record["miou"] = self.score(cell, steps)
    record["table_row"] = self.row(cell)
    return record


def table_trial(rows: Sequence[dict], rungs: Sequence[int]) -> TableTrial:
  return TableTrial(tuple(tuple(r["scores"]) for r in rows), tuple(int(s) for s in rungs))


# gin/search/synthetic_demo.gin scores on 128 of the 256 eval images (its proxy_trial
# settings are gin/proxy/synthetic.gin's plus this, and cells_per_program, which does not
# change a score).
DEMO_MAX_EVAL_EXAMPLES = 128


def build_real_table(work_dir: str, settings: TableSettings,
                     gin_files: Optional[Sequence[str]] = None,
                     bindings: Sequence[str] = (), max_new: Optional[int] = None,
                     deadline: Optional[float] = None,
                     log: Callable[[str], None] = print) -> list[dict]:
  """The table by the real proxy: the gin recipe's proxy_trial settings (the demo's eval
  size), the feature cache WORK_DIR/feature_cache (made, or reused when complete and of the
  same settings, by runners.TfRunner; gin_files None: runners.DEFAULT_GIN). TensorFlow is
  imported here only."""
  import functools  # pylint: disable=import-outside-toplevel
  from dpc_tf.proxy import run_proxy_trial  # pylint: disable=import-outside-toplevel
  from dpc_tf.proxy.cache import FeatureCache  # pylint: disable=import-outside-toplevel
  from dpc_tf.proxy.trial import cache_fields  # pylint: disable=import-outside-toplevel
  from dpc_tf.reproduction import runners  # pylint: disable=import-outside-toplevel
  runner = runners.TfRunner(work_dir, gin_files or runners.DEFAULT_GIN, bindings)
  trial_settings = {k: v for k, v in runner.trial_settings.items()
                    if k not in ("steps", "schedule_steps", "cells_per_program",
                                 "log_every_steps")}
  trial_settings["max_eval_examples"] = DEMO_MAX_EVAL_EXAMPLES
  folder = os.path.join(work_dir, TABLE_DIR)
  identity = table_identity(settings, trial_settings, {})
  del identity["cache"]  # checked before the cache is made (minutes), then in full
  read_table(folder, identity)
  cache_dir = runner.cache_dir
  identity = table_identity(settings, trial_settings, cache_fields(FeatureCache(cache_dir)))
  trial_fn = functools.partial(run_proxy_trial, cache_dir=cache_dir, **trial_settings)
  return build_table(folder, settings, trial_fn, identity,
                     max_new=max_new, deadline=deadline, log=log)
