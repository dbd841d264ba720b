"""The trial store: one SQLite database per search, written as things happen.

Every trial is a row: id (0-based, also the suggestion index), cell (compact text and the
released JSON), canonical fingerprint (unique), how it was suggested, status, attempts, score
record, error, timing, and the re-rank result. Every change is one transaction in WAL mode
with synchronous=FULL, so a crash at any instant (driver killed, machine down) leaves the
database readable with every committed change, and a reader (`sqlite3 DIR/trials.sqlite`)
never blocks the search.

Status machine (attempts counts dispatches; a dispatch that ends in anything but 'done'
used one attempt):

    pending --start--> running --finish--> done
                          |---fail----------> pending  (attempts < max_attempts)
                          |---fail----------> failed   (attempts = max_attempts)
                          '---release/recover> pending  (the driver stopped: attempt given back)
    pending, failed --forgive--> pending  (failed attempts forgotten: not the cell's fault)

`recover` runs when a driver starts: rows left 'running' by a driver that died are requeued
with their attempt given back, as `release` does for a driver that stops cleanly: a killed
driver is never the cell's fault, however often it happens. A finished trial never runs
again. `forgive` takes back the failed attempts of trials that failed for a reason that is
not theirs (the coordinator's run of failures: a config mistake or a broken environment).

Baselines (search_pipeline.baselines) are rows with negative ids (-1, -2, ...) and origin
'baseline': they run like any trial (retries, resume) but are outside the sequence of
suggestions, so ids 0, 1, ... stay the suggestion indices and the budget counts only them.

Successive halving (halving.py) adds rungs: `trials.rung` is the rung of a row's current
(or last) job and table `rung_results` holds each finished (or given-up) rung of each cell,
written in the same transaction as the row's status. A promotion is one transaction
(done at rung k -> pending at rung k+1, attempts reset), so a kill at any instant leaves
either the promotion or nothing. A promoted cell that fails its rung on its last attempt is
not 'failed': it goes back to 'done' with its last finished rung's score (the failure is in
rung_results, so it is never promoted again). Schema 1 stores (before rungs) are migrated
in place when opened: the new column defaults every row to rung 0.

Only the search driver writes (engines hand results back to it), so there is one writer.
SQLite's WAL needs the database on a local or properly locking filesystem for that writer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from typing import Iterator, Optional

from dpc_tf.search.errors import SearchError
from dpc_tf.search.store_rows import (  # re-exported: the store's row type and vocabulary
    BASELINE, STATUSES, TERMINAL, Trial, finite_or_none, json_or_none)
from dpc_tf.search_space import Cell
from dpc_tf.utils.files import DiskFullError, loads_json

SCHEMA_VERSION = "2"  # 2: trials.rung and rung_results (successive halving)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
  id INTEGER PRIMARY KEY,
  fingerprint TEXT NOT NULL UNIQUE,
  cell_text TEXT NOT NULL,
  cell_json TEXT NOT NULL,
  origin TEXT NOT NULL,
  parent INTEGER,
  status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  score REAL,
  record TEXT,
  error TEXT,
  worker TEXT,
  created REAL NOT NULL,
  started REAL,
  finished REAL,
  seconds REAL,
  rerank_score REAL,
  rerank_record TEXT,
  rung INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS trials_status ON trials (status);
CREATE TABLE IF NOT EXISTS rung_results (
  trial_id INTEGER NOT NULL,
  rung INTEGER NOT NULL,
  steps INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
  score REAL,
  record TEXT,
  error TEXT,
  seconds REAL,
  finished REAL NOT NULL,
  PRIMARY KEY (trial_id, rung)
);
"""
_MIGRATIONS = {"1": "ALTER TABLE trials ADD COLUMN rung INTEGER NOT NULL DEFAULT 0"}


class Store:
  """A search's trials and metadata in DIR/trials.sqlite. Not thread-safe: one per thread."""

  def __init__(self, path: str):
    self.path = path
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
      raise SearchError(f"cannot open the trial store: folder {folder} does not exist")
    try:
      # check_same_thread=False: Ray Tune may call the searcher from another thread than
      # the one that opened the store; calls never overlap (the driver is sequential).
      self._db = sqlite3.connect(path, timeout=60.0, isolation_level=None,
                                 check_same_thread=False)
      self._db.row_factory = sqlite3.Row
      self._db.execute("PRAGMA journal_mode=WAL")
      self._db.execute("PRAGMA synchronous=FULL")
      self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
    except sqlite3.DatabaseError as e:
      raise SearchError(f"cannot open the trial store {path}: {e}") from None
    version = self.get_meta("schema_version")
    if version in _MIGRATIONS:
      with self.transaction() as db:  # all or nothing: a kill leaves schema 1 intact
        db.execute(_MIGRATIONS[version])
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                   (SCHEMA_VERSION,))
    elif version is None:
      self.set_meta("schema_version", SCHEMA_VERSION)
    elif version != SCHEMA_VERSION:
      raise SearchError(f"{path} has store schema {version}, this code reads {SCHEMA_VERSION}")

  def close(self) -> None:
    self._db.close()

  def __enter__(self) -> "Store":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  @contextlib.contextmanager
  def transaction(self) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT: all or nothing, also if the process dies in between.

    A full or read-only disk is a one-line DiskFullError (committed trials are kept)."""
    try:
      self._db.execute("BEGIN IMMEDIATE")
      try:
        yield self._db
      except BaseException:
        self._rollback()
        raise
      try:
        self._db.execute("COMMIT")
      except sqlite3.Error:
        self._rollback()
        raise
    except sqlite3.OperationalError as e:
      text = str(e).lower()
      if "full" in text or "readonly" in text or "read-only" in text or "i/o error" in text:
        raise DiskFullError(f"cannot write the trial store {self.path}: {e} (free space and "
                            "run again: committed trials are kept)") from None
      raise

  def _rollback(self) -> None:
    try:
      self._db.execute("ROLLBACK")
    except sqlite3.Error:
      pass  # no transaction left to roll back

  # --- metadata ---------------------------------------------------------------------------
  def get_meta(self, key: str) -> Optional[str]:
    row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row["value"] if row else None

  def set_meta(self, key: str, value: str) -> None:
    with self.transaction() as db:
      db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

  # --- reads ------------------------------------------------------------------------------
  def get(self, trial_id: int) -> Trial:
    row = self._db.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone()
    if row is None:
      raise KeyError(f"no trial {trial_id} in {self.path}")
    return Trial.from_row(row)

  def trials(self, *statuses: str) -> list[Trial]:
    """Trials in id order, all or those with the given statuses."""
    if statuses:
      marks = ",".join("?" * len(statuses))
      rows = self._db.execute(f"SELECT * FROM trials WHERE status IN ({marks}) ORDER BY id",
                              statuses)
    else:
      rows = self._db.execute("SELECT * FROM trials ORDER BY id")
    return [Trial.from_row(r) for r in rows]

  def counts(self, baselines: bool = True) -> dict[str, int]:
    """Trials per status; baselines=False: the searched cells only (what the budget counts)."""
    counts = dict.fromkeys(STATUSES, 0)
    where = "" if baselines else "WHERE id >= 0 "
    for row in self._db.execute(f"SELECT status, COUNT(*) AS n FROM trials {where}"
                                "GROUP BY status"):
      counts[row["status"]] = row["n"]
    return counts

  def num_trials(self) -> int:
    return self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]

  def num_suggested(self) -> int:
    """Rows with ids 0, 1, ... (every suggestion; baselines not included)."""
    return self._db.execute("SELECT COUNT(*) FROM trials WHERE id >= 0").fetchone()[0]

  def num_baselines(self) -> int:
    return self._db.execute("SELECT COUNT(*) FROM trials WHERE id < 0").fetchone()[0]

  def next_pending(self) -> Optional[Trial]:
    row = self._db.execute(
        "SELECT * FROM trials WHERE status = 'pending' ORDER BY id LIMIT 1").fetchone()
    return Trial.from_row(row) if row else None

  # --- writes -----------------------------------------------------------------------------
  def add(self, trial_id: int, cell: Cell, origin: str, parent: Optional[int] = None) -> Trial:
    """Records a new suggestion as 'pending'. Ids are consecutive; a repeated cell is refused."""
    with self.transaction() as db:
      expected = db.execute("SELECT COUNT(*) FROM trials WHERE id >= 0").fetchone()[0]
      if trial_id != expected:
        raise SearchError(f"trial id {trial_id} is out of sequence (the store has {expected})")
      try:
        db.execute("INSERT INTO trials (id, fingerprint, cell_text, cell_json, origin, parent, "
                   "status, created) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                   (trial_id, cell.fingerprint(), cell.text, cell.to_json_string(), origin,
                    parent, time.time()))
      except sqlite3.IntegrityError:
        raise SearchError(f"cell {cell.text} (fingerprint {cell.fingerprint()}) is already in "
                          f"the store: the search never repeats a cell") from None
    return self.get(trial_id)

  def add_baseline(self, position: int, subject) -> Trial:
    """Baseline `position` (0-based) as row -(position + 1), 'pending'; kept if already there."""
    trial_id = -(position + 1)
    with self.transaction() as db:
      row = db.execute("SELECT fingerprint FROM trials WHERE id = ?", (trial_id,)).fetchone()
      if row is not None:
        if row["fingerprint"] != subject.fingerprint():
          raise SearchError(f"{self.path} holds another baseline as row {trial_id} than "
                            f"{subject.text}; use a new --search_dir")
      else:
        try:
          db.execute("INSERT INTO trials (id, fingerprint, cell_text, cell_json, origin, "
                     "status, created) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                     (trial_id, subject.fingerprint(), subject.text, subject.to_json_string(),
                      BASELINE, time.time()))
        except sqlite3.IntegrityError:
          raise SearchError(f"baseline {subject.text} is already in {self.path} as a searched "
                            "cell; use a new --search_dir") from None
    return self.get(trial_id)

  def start(self, trial_id: int, worker: str = "") -> Trial:
    """pending -> running, one more attempt."""
    with self.transaction() as db:
      cursor = db.execute("UPDATE trials SET status = 'running', attempts = attempts + 1, "
                          "started = ?, worker = ?, error = NULL "
                          "WHERE id = ? AND status = 'pending'", (time.time(), worker, trial_id))
      if cursor.rowcount != 1:
        raise SearchError(f"trial {trial_id} cannot start: it is not pending")
    return self.get(trial_id)

  def finish(self, trial_id: int, record: dict, score: Optional[float],
             seconds: Optional[float], steps: Optional[int] = None) -> bool:
    """running -> done. False (and no change) if the trial was not running any more.

    steps (successive halving): the rung's proxy steps; its result goes to rung_results."""
    now, score, text = time.time(), finite_or_none(score), json_or_none(record)
    with self.transaction() as db:
      cursor = db.execute(
          "UPDATE trials SET status = 'done', score = ?, record = ?, seconds = ?, "
          "finished = ?, error = NULL WHERE id = ? AND status = 'running'",
          (score, text, seconds, now, trial_id))
      if cursor.rowcount == 1 and steps is not None:
        db.execute("INSERT OR REPLACE INTO rung_results (trial_id, rung, steps, status, score, "
                   "record, seconds, finished) SELECT id, rung, ?, 'done', ?, ?, ?, ? FROM "
                   "trials WHERE id = ?", (steps, score, text, seconds, now, trial_id))
      return cursor.rowcount == 1

  def fail(self, trial_id: int, error: str, max_attempts: int,
           seconds: Optional[float] = None) -> Optional[str]:
    """running -> pending (attempts left) or failed. Returns the new status, None if not running."""
    with self.transaction() as db:
      row = db.execute("SELECT attempts, status FROM trials WHERE id = ?", (trial_id,)).fetchone()
      if row is None or row["status"] != "running":
        return None
      if row["attempts"] >= max_attempts:
        return self._give_up(db, trial_id, error, seconds)
      db.execute("UPDATE trials SET status = 'pending', error = ?, seconds = ?, finished = NULL "
                 "WHERE id = ?", (error, seconds, trial_id))
      return "pending"

  @staticmethod
  def _give_up(db: sqlite3.Connection, trial_id: int, error: str,
               seconds: Optional[float] = None) -> str:
    """A job's last attempt failed: 'failed', or for a promoted cell back to 'done' at its
    last finished rung (the failed rung is recorded, so it is never promoted again)."""
    row = db.execute("SELECT rung FROM trials WHERE id = ?", (trial_id,)).fetchone()
    now = time.time()
    last = None
    if row["rung"] > 0:
      last = db.execute("SELECT * FROM rung_results WHERE trial_id = ? AND rung = ? AND "
                        "status = 'done'", (trial_id, row["rung"] - 1)).fetchone()
    if last is None:
      db.execute("UPDATE trials SET status = 'failed', error = ?, seconds = ?, finished = ? "
                 "WHERE id = ?", (error, seconds, now, trial_id))
      return "failed"
    db.execute("INSERT OR REPLACE INTO rung_results (trial_id, rung, steps, status, error, "
               "seconds, finished) VALUES (?, ?, 0, 'failed', ?, ?, ?)",
               (trial_id, row["rung"], error, seconds, now))
    db.execute("UPDATE trials SET status = 'done', rung = ?, score = ?, record = ?, "
               "seconds = ?, error = ?, finished = ? WHERE id = ?",
               (last["rung"], last["score"], last["record"], last["seconds"], error, now,
                trial_id))
    return "done"

  def release(self, trial_id: int) -> bool:
    """running -> pending, giving the attempt back (the driver stopped it, it did not fail)."""
    with self.transaction() as db:
      cursor = db.execute("UPDATE trials SET status = 'pending', attempts = attempts - 1 "
                          "WHERE id = ? AND status = 'running'", (trial_id,))
      return cursor.rowcount == 1

  def recover(self) -> list[int]:
    """Requeues the trials a dead driver left 'running', giving their attempt back."""
    with self.transaction() as db:
      ids = [r["id"] for r in db.execute("SELECT id FROM trials WHERE status = 'running' "
                                         "ORDER BY id").fetchall()]
      db.execute("UPDATE trials SET status = 'pending', attempts = attempts - 1, error = ? "
                 "WHERE status = 'running'", ("interrupted (the search driver stopped); re-run",))
    return ids

  def forgive(self, trial_ids, note: str) -> None:
    """Forgets the failed attempts of these trials (failed -> pending, attempts 0; a running
    one keeps only its current attempt), prefixing their error with `note`."""
    with self.transaction() as db:
      for trial_id in trial_ids:
        db.execute("UPDATE trials SET attempts = CASE status WHEN 'running' THEN 1 ELSE 0 END, "
                   "status = CASE status WHEN 'failed' THEN 'pending' ELSE status END, "
                   "finished = NULL, error = ? || COALESCE(error, '') "
                   "WHERE id = ? AND status != 'done'", (note, trial_id))

  def promote(self, trial_id: int, rung: int) -> Trial:
    """done at rung-1 -> pending at `rung` with fresh attempts (successive halving)."""
    with self.transaction() as db:
      cursor = db.execute("UPDATE trials SET status = 'pending', rung = ?, attempts = 0, "
                          "error = NULL, started = NULL, worker = NULL WHERE id = ? AND "
                          "status = 'done' AND rung = ?", (rung, trial_id, rung - 1))
      if cursor.rowcount != 1:
        raise SearchError(f"trial {trial_id} cannot be promoted to rung {rung}: it is not done "
                          f"at rung {rung - 1}")
    return self.get(trial_id)

  def rung_results(self, trial_id: Optional[int] = None) -> list[dict]:
    """rung_results rows (record decoded), by trial then rung; one trial's if given."""
    where, args = ("WHERE trial_id = ? ", (trial_id,)) if trial_id is not None else ("", ())
    rows = self._db.execute(f"SELECT * FROM rung_results {where}ORDER BY trial_id, rung", args)
    out = []
    for row in rows:
      data = dict(row)
      if data["record"] is not None:
        data["record"] = loads_json(data["record"], f"trial {data['trial_id']} rung "
                                    f"{data['rung']} record", duplicates_ok=True)
      out.append(data)
    return out

  def requeue_failed(self) -> list[int]:
    """failed -> pending with fresh attempts (after fixing what made them fail)."""
    with self.transaction() as db:
      ids = [r["id"] for r in db.execute("SELECT id FROM trials WHERE status = 'failed' "
                                         "ORDER BY id").fetchall()]
      db.execute("UPDATE trials SET status = 'pending', attempts = 0, finished = NULL "
                 "WHERE status = 'failed'")
    return ids

  def annotate_error(self, trial_id: int, error: str) -> None:
    """Replaces the error text of a trial's last failed attempt with a better one."""
    with self.transaction() as db:
      db.execute("UPDATE trials SET error = ? WHERE id = ? AND status IN ('pending', 'failed')",
                 (error, trial_id))

  def set_rerank(self, trial_id: int, score: Optional[float], record: dict) -> None:
    with self.transaction() as db:
      cursor = db.execute("UPDATE trials SET rerank_score = ?, rerank_record = ? "
                          "WHERE id = ? AND status = 'done'",
                          (finite_or_none(score), json_or_none(record), trial_id))
      if cursor.rowcount != 1:
        raise SearchError(f"trial {trial_id} cannot be re-ranked: it is not done")
