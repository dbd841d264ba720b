"""A full disk during a search: one line, exit 2, no hang; the store keeps what finished."""

import os
import subprocess
import sys

import pytest

from dpc_tf.search.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_CONFIG = os.path.join(ROOT, "gin", "search", "fake_demo.gin")

# The driver, with every atomic write after the first `ok` ones failing with ENOSPC (the
# workers are fresh spawned interpreters: their disk is fine).
DRIVER = """
import errno, os, sys
from dpc_tf.utils import files
calls = [0]
real_fsync = os.fsync
def fsync(fd):
  calls[0] += 1
  if calls[0] > int(os.environ["OK_WRITES"]):
    raise OSError(errno.ENOSPC, "No space left on device")
  real_fsync(fd)
files.os = type(sys)("os_with_a_full_disk")
files.os.__dict__.update(os.__dict__)
files.os.fsync = fsync
from dpc_tf.search.__main__ import run
sys.argv[0] = "dpc_tf.search"
run()
"""


def test_full_disk_in_the_driver_is_one_line_not_a_hang(tmp_path, commands):
  search_dir = str(tmp_path / "search")
  result = subprocess.run(
      [sys.executable, "-c", DRIVER, f"--gin_file={FAKE_CONFIG}", f"--search_dir={search_dir}",
       "--budget=6", "--workers=2", "--gin_bindings=search_pipeline.rerank_top_k = 0",
       "--gin_bindings=search_pipeline.plots = False"],
      cwd=ROOT, env=commands.env({"OK_WRITES": "2"}), capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  line = commands.error_line(result)
  assert "No space left on device" in line and search_dir in line
  with Store(os.path.join(search_dir, "trials.sqlite")) as store:
    assert store.num_trials() >= 1  # what was committed is kept; a rerun resumes


def test_search_dir_that_is_a_file_is_one_line(tmp_path, commands):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  result = commands.run("dpc_tf.search", f"--gin_file={FAKE_CONFIG}", f"--search_dir={a_file}",
                        "--budget=1", timeout=120)
  assert result.returncode == 2
  assert commands.error_line(result) == \
      f"dpc_tf.search: error: --search_dir={a_file} is a file, not a folder"


def test_full_store_disk_stops_every_worker_and_is_one_line(tmp_path):
  """SQLITE_FULL under the store mid-search: the engine stops all its workers (a worker left
  running kept the driver waiting for it at exit, forever) and the error is one line."""
  import multiprocessing
  import threading


  from dpc_tf.search.algorithm import RandomSearch
  from dpc_tf.search.coordinator import Coordinator
  from dpc_tf.search.engines.local import LocalEngine
  from dpc_tf.search.fake_trial import FakeTrial
  from dpc_tf.search.trial import WorkerPayload
  from dpc_tf.utils.files import DiskFullError

  store = Store(str(tmp_path / "trials.sqlite"))
  coordinator = Coordinator(store, RandomSearch(num_branches=5, budget=200, seed=0))
  pages = store._db.execute("PRAGMA page_count").fetchone()[0]  # pylint: disable=protected-access
  store._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk fills after a few trials
  outcome = {}

  def drive():
    try:
      LocalEngine(workers=2, poll_s=0.2).run(coordinator, WorkerPayload(FakeTrial(sleep_s=0.05)))
    except BaseException as e:  # pylint: disable=broad-except
      outcome["error"] = e

  thread = threading.Thread(target=drive, daemon=True)
  thread.start()
  thread.join(120)
  assert not thread.is_alive(), "the engine hangs on a full disk"
  assert isinstance(outcome.get("error"), DiskFullError), outcome
  assert "database or disk is full" in str(outcome["error"]) and "\n" not in str(outcome["error"])
  assert not multiprocessing.active_children()
  assert store.counts().get("done", 0) >= 1  # what was committed is kept
  store.close()


@pytest.fixture
def tiny_disk(tmp_path):
  """A 600 KB tmpfs (needs root; skipped elsewhere)."""
  mount = tmp_path / "tiny"
  mount.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
                    capture_output=True).returncode != 0:
    pytest.skip("cannot mount a tmpfs here")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], check=False)


def test_really_full_disk_in_the_caching_stage_is_one_line(tiny_disk, commands):
  """ENOSPC in the stage subprocess: gin re-raises it as an OSError subclass that could not
  be pickled back (a traceback, or a driver left waiting); now one line, exit 2."""
  result = commands.run(
      "dpc_tf.search", f"--gin_file={FAKE_CONFIG}", f"--search_dir={tiny_disk}/s", "--budget=2",
      "--gin_bindings=search_pipeline.rerank_top_k = 0",
      "--gin_bindings=search_pipeline.plots = False",
      "--gin_bindings=search_cache.cache_dir = 'cache'",
      "--gin_bindings=search_cache.builder = @fake_cache_builder",
      "--gin_bindings=fake_cache_builder.shards = 5",
      "--gin_bindings=fake_cache_builder.feature_size = 64", timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  line = commands.error_line(result)
  assert "No space left on device" in line and f"{tiny_disk}/s/cache/" in line, line
