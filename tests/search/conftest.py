"""Shared fixtures for the search tests: clean gin state, an in-process engine, CLI runner,
row counts of a store another process writes."""

import os
import sqlite3

import pytest


@pytest.fixture(autouse=True)
def _every_test_starts_with_a_clean_gin_config(clean_gin):
  del clean_gin
  yield


class InlineEngine:
  """Runs trials in this process, one at a time: the Coordinator's semantics without processes."""
  name = "inline"

  def __init__(self, stop_after: int = 0):
    self.stop_after = stop_after  # raise KeyboardInterrupt after this many results (0: never)

  def close(self):
    pass

  def run(self, coordinator, payload, work_dir=""):
    from dpc_tf.search import trial as trial_lib  # pylint: disable=import-outside-toplevel
    seen = 0
    while not coordinator.finished():
      trial = coordinator.next_trial(worker="inline")
      assert trial is not None, "nothing to run although the search is not finished"
      try:
        record, seconds = trial_lib.execute(payload, trial.cell_json)
      except Exception as e:  # pylint: disable=broad-except
        coordinator.fail(trial.id, trial_lib.describe_exception(e))
      else:
        coordinator.complete(trial.id, record, seconds)
      seen += 1
      if self.stop_after and seen >= self.stop_after:
        raise KeyboardInterrupt


@pytest.fixture
def inline_engine():
  return InlineEngine


@pytest.fixture
def cli(commands):
  """`python -m dpc_tf.search ARGS` from the repo root; returns the CompletedProcess."""
  return lambda args, timeout=120, env=None: commands.run("dpc_tf.search", *args,
                                                          timeout=timeout, env=env)


@pytest.fixture
def count_rows():
  """count_rows(store_path, status=None, table="trials"): rows (with that status), read-only
  while another process writes the store; 0 while the store or the table does not exist."""
  def count(path, status=None, table="trials"):
    if not os.path.exists(path):
      return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
      if status is None:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
      return db.execute(f"SELECT COUNT(*) FROM {table} WHERE status = ?",
                        (status,)).fetchone()[0]
    except sqlite3.OperationalError:
      return 0
    finally:
      db.close()
  return count
