"""A full disk during a search: one line, exit 2, no hang; the store keeps what finished."""

import os
import subprocess
import sys

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
