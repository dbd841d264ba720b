"""Folder locks: never follow a planted link, never truncate, one live owner at a time."""

import os
import subprocess
import sys
import time

import pytest

from dpc_tf.search.errors import SearchError
from dpc_tf.search.pipeline import driver_lock
from dpc_tf.utils import locks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_planted_symlink_is_refused_and_its_target_untouched(tmp_path):
  victim = tmp_path / "precious.txt"
  victim.write_text("keep me")
  search_dir = tmp_path / "search"
  search_dir.mkdir()
  os.symlink(victim, search_dir / ".driver.lock")
  with pytest.raises(SearchError, match="symbolic link"):
    with driver_lock(str(search_dir / ".driver.lock")):
      pass
  assert victim.read_text() == "keep me"


def test_hard_link_is_refused(tmp_path):
  victim = tmp_path / "precious.txt"
  victim.write_text("keep me")
  (tmp_path / "d").mkdir()
  os.link(victim, tmp_path / "d" / ".lock")
  with pytest.raises(locks.LockError, match="not a plain file"):
    with locks.folder_lock(str(tmp_path / "d")):
      pass
  assert victim.read_text() == "keep me"


def test_a_second_process_is_refused_while_the_first_lives(tmp_path):
  folder = str(tmp_path)
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from dpc_tf.utils import locks\n"
       f"with locks.folder_lock({folder!r}):\n  print('held', flush=True); time.sleep(60)"],
      cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(locks.LockError, match=f"in use by another process \\(pid {holder.pid} "):
      with locks.folder_lock(folder):
        pass
  finally:
    holder.kill()
    holder.wait()
  with locks.folder_lock(folder):  # the kernel released the dead owner's lock
    assert f"pid {os.getpid()} " in open(os.path.join(folder, ".lock")).read()


def test_locks_folder_is_reentrant_in_one_process(tmp_path):
  calls = []

  @locks.locks_folder(lambda folder, depth: folder)
  def work(folder, depth):
    calls.append(depth)
    if depth:
      work(folder, depth - 1)

  work(str(tmp_path), 2)
  assert calls == [2, 1, 0]

