"""A search can always be continued: a config mistake, two driver kills in one trial, a larger
budget and fewer best cells after a finished search (coordinator.py, identity.py, rerank.py)."""

import os
import signal
import time

import gin

from dpc_tf.search import rerank
from dpc_tf.search.pipeline import run_pipeline
from dpc_tf.search.store import Store
from dpc_tf.utils import processes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_CONFIG = os.path.join(ROOT, "gin", "search", "fake_demo.gin")


def _args(search_dir, *bindings, budget=3):
  return [f"--gin_file={FAKE_CONFIG}", f"--search_dir={search_dir}", f"--budget={budget}",
          "--workers=1", "--gin_bindings=search_pipeline.rerank_top_k = 0",
          "--gin_bindings=search_pipeline.plots = False",
          *(f"--gin_bindings={b}" for b in bindings)]


def _rows(search_dir):
  with Store(os.path.join(search_dir, "trials.sqlite")) as store:
    return [(t.id, t.status, t.attempts) for t in store.trials()]


def test_a_config_mistake_stops_early_and_the_fixed_config_continues(tmp_path, commands):
  search_dir = str(tmp_path / "search")
  broken = commands.run("dpc_tf.search", *_args(search_dir, "fake_trial.fail_fraction = 1.0"),
                        timeout=120)
  assert broken.returncode == 2, broken.stderr[-2000:]
  last = broken.stderr.strip().splitlines()[-1]
  assert last.startswith("dpc_tf.search: error: 10 trial attempts failed in a row")
  assert "RuntimeError: injected failure" in last and "none was counted" in last
  # 2 baselines and trials 0-2, 2 attempts each: all forgiven, nothing counted
  assert _rows(search_dir) == [(i, "pending", 0) for i in (-2, -1, 0, 1, 2)]
  fixed = commands.run("dpc_tf.search", *_args(search_dir), timeout=120)  # binding removed
  assert fixed.returncode == 0, fixed.stderr[-2000:]
  assert _rows(search_dir) == [(i, "done", 1) for i in (-2, -1, 0, 1, 2)]
  with open(os.path.join(search_dir, "config.gin")) as f:
    assert "fail_fraction" not in f.read()  # the config that made the done trials
  # from now on the identity is fixed: another change is refused
  changed = commands.run("dpc_tf.search", *_args(search_dir, "fake_trial.fail_fraction = 0.5"))
  assert commands.error_line(changed).startswith(f"dpc_tf.search: error: --search_dir "
                                                 f"{search_dir} was made by a different config")


def _wait_for_starts(log, count, driver, timeout=60):
  """Until the trial log shows `count` trial starts (the trial function is running)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert driver.poll() is None, driver.communicate()[1][-2000:]
    if os.path.exists(log):
      with open(log) as f:
        if sum(line.startswith("start") for line in f) >= count:
          return
    time.sleep(0.05)
  raise AssertionError("the trial never started")


def test_two_driver_kills_during_one_trial_cost_it_nothing(tmp_path, commands):
  """max_attempts is 2: the old rule (a driver death uses an attempt) failed the cell."""
  search_dir, log = str(tmp_path / "search"), str(tmp_path / "trials.log")
  args = _args(search_dir, "fake_trial.sleep_s = 3.0", f"fake_trial.log_path = '{log}'",
               "search_pipeline.baselines = []", budget=1)
  for kill in (1, 2):
    driver = commands.start("dpc_tf.search", *args)
    _wait_for_starts(log, kill, driver)
    driver.send_signal(signal.SIGKILL)
    driver.communicate()
  with open(log) as f:
    pids = {int(line.split()[2]) for line in f}
  deadline = time.time() + 10
  while any(processes.is_alive(p) for p in pids) and time.time() < deadline:
    time.sleep(0.1)
  assert not any(processes.is_alive(p) for p in pids)
  assert _rows(search_dir) == [(0, "running", 1)]  # as the second killed driver left it
  rerun = commands.run("dpc_tf.search", *args, timeout=120)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert _rows(search_dir) == [(0, "done", 1)]
  with open(log) as f:
    events = [line.split()[0] for line in f]
  assert events == ["start", "start", "start", "end"]  # killed twice mid-trial, then done


def _run(search_dir, budget, *bindings):
  gin.clear_config()
  gin.parse_config_files_and_bindings(
      [FAKE_CONFIG], ["search_pipeline.plots = False", "local_engine.workers = 1", *bindings])
  return run_pipeline(search_dir, budget=budget)


def _rerank_rows(search_dir):
  with Store(os.path.join(search_dir, "rerank.sqlite")) as store:
    return [(t.id, t.fingerprint, t.status, t.finished) for t in store.trials()]


def test_a_larger_budget_extends_the_rerank_and_fewer_best_cells_leave_no_stale_file(tmp_path):
  search_dir = str(tmp_path / "search")
  _run(search_dir, 6)  # fake_demo: re-rank top 5 (diverse) and 2 baselines, 3 seeds each
  before = _rerank_rows(search_dir)
  assert len(before) >= 3 * 3 and len(before) % 3 == 0  # >= 1 cell (diverse) + 2 baselines
  assert sorted(os.listdir(os.path.join(search_dir, "best_cells"))) == [
      f"rank_{i}.json" for i in range(1, 6)]

  summary = _run(search_dir, 12)  # finished search, larger budget: extended, not refused
  after = _rerank_rows(search_dir)
  assert after[:len(before)] == before  # kept and not re-run (same finish times)
  assert len(after) > len(before) and all(row[2] == "done" for row in after)
  with Store(os.path.join(search_dir, "trials.sqlite")) as store:
    assert store.counts(baselines=False)["done"] == 12
    wanted = rerank.rerank_subjects(store, 5, "pareto", 2, 3)  # the new top 5's subjects
    reranked = {t.id for t in store.trials("done") if t.rerank_score is not None}
  assert {s.fingerprint() for s, _ in wanted} <= {row[1] for row in after}
  assert summary["best"]["trial_id"] in reranked

  _run(search_dir, 12, "search_pipeline.num_best_cells = 2")
  assert sorted(os.listdir(os.path.join(search_dir, "best_cells"))) == [
      "rank_1.json", "rank_2.json"]
  assert _rerank_rows(search_dir) == after
