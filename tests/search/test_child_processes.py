"""Children die with their driver: a killed search leaves no stage or trial process behind,
and the same command then resumes (dpc_tf/utils/processes.py)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from dpc_tf.proxy import cache as cache_lib
from dpc_tf.search import stages
from dpc_tf.utils import processes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_CONFIG = os.path.join(ROOT, "gin", "search", "fake_demo.gin")


def _search_args(search_dir, pid_file, sleep_s):
  return [sys.executable, "-m", "dpc_tf.search", f"--gin_file={FAKE_CONFIG}",
          f"--search_dir={search_dir}", "--budget=2", "--workers=1",
          "--gin_bindings=search_pipeline.rerank_top_k = 0",
          "--gin_bindings=search_pipeline.plots = False",
          "--gin_bindings=search_cache.cache_dir = 'cache'",
          "--gin_bindings=search_cache.builder = @fake_cache_builder",
          "--gin_bindings=fake_cache_builder.shards = 3",
          f"--gin_bindings=fake_cache_builder.sleep_s = {sleep_s}",
          f"--gin_bindings=fake_cache_builder.pid_file = '{pid_file}'"]


def _wait_for_pid(pid_file, driver, timeout=90):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.exists(pid_file) and open(pid_file).read().strip():
      return int(open(pid_file).read())
    assert driver.poll() is None, driver.communicate()[1][-2000:]
    time.sleep(0.05)
  raise AssertionError("the caching stage never started")


def _gone(pid, timeout=15):
  deadline = time.time() + timeout
  while processes.is_alive(pid) and time.time() < deadline:
    time.sleep(0.1)
  return not processes.is_alive(pid)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killed_driver_during_caching_leaves_no_child_and_resumes(tmp_path, how):
  search_dir, pid_file = str(tmp_path / "search"), str(tmp_path / "cache.pid")
  env = {**os.environ, "PYTHONPATH": ROOT}
  driver = subprocess.Popen(_search_args(search_dir, pid_file, 30), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  child = _wait_for_pid(pid_file, driver)
  started = time.time()
  driver.send_signal(how)
  _, stderr = driver.communicate(timeout=30)
  assert time.time() - started < 20  # SIGTERM does not wait for the whole cache
  if how == signal.SIGTERM:
    assert driver.returncode == 130, stderr[-2000:]
  assert _gone(child), "the caching process outlived its driver"
  # the lock it held is free: the rerun builds the rest of the cache and runs the search
  os.unlink(pid_file)
  rerun = subprocess.run(_search_args(search_dir, pid_file, 0), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert stages.cache_complete(os.path.join(search_dir, "cache"))
  assert not processes.is_alive(int(open(pid_file).read()))


def _sleep_then_return(seconds):
  time.sleep(seconds)
  return seconds


def _raise_disk_full():
  import errno  # pylint: disable=import-outside-toplevel
  raise OSError(errno.ENOSPC, "No space left on device", "/x/shard.npz")


def _kill_self():
  os.kill(os.getpid(), signal.SIGKILL)


def test_run_in_child_reports_results_errors_and_death():
  assert processes.run_in_child(_sleep_then_return, 0.0) == 0.0
  with pytest.raises(cache_lib.CacheError, match="disk is full"):
    processes.run_in_child(_raise_disk_full, what="caching", error_class=cache_lib.CacheError)
  with pytest.raises(cache_lib.CacheError, match=r"died \(killed by SIGKILL\)"):
    processes.run_in_child(_kill_self, what="x",
                           error_class=cache_lib.CacheError)


def test_a_complete_cache_of_other_settings_is_refused(tmp_path, commands):
  """A shared, complete cache made with another backbone is checked, not silently reused."""
  cache = str(tmp_path / "shared_cache")

  def search(search_dir, backbone):
    return commands.run(
        "dpc_tf.search", f"--gin_file={FAKE_CONFIG}", f"--search_dir={tmp_path / search_dir}",
        "--budget=1", "--workers=1", "--gin_bindings=search_pipeline.rerank_top_k = 0",
        "--gin_bindings=search_pipeline.plots = False",
        f"--gin_bindings=search_cache.cache_dir = '{cache}'",
        "--gin_bindings=search_cache.builder = @fake_cache_builder",
        f"--gin_bindings=fake_cache_builder.backbone = '{backbone}'", timeout=180)

  first = search("a", "mobilenet_v2 x0.5")
  assert first.returncode == 0, first.stderr[-2000:]
  assert stages.cache_complete(cache)
  assert search("b", "mobilenet_v2 x0.5").returncode == 0  # same settings: reused
  other = search("c", "mobilenet_v2 x1.0")
  assert other.returncode == 2, other.stderr[-2000:]
  line = commands.error_line(other)
  assert f"cache {cache} was made with different settings: backbone: cache has " \
         "'mobilenet_v2 x0.5', asked for 'mobilenet_v2 x1.0'" in line, line
