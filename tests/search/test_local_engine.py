"""The local engine end to end: subprocess workers, crashes, timeouts, SIGKILL and resume."""

import collections
import csv
import json
import os
import signal
import subprocess
import sys
import time

import gin
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dpc_tf.errors import EXIT_INTERRUPTED
from dpc_tf.search.algorithm import History, RandomSearch, make_algorithm
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.engines.local import LocalEngine
from dpc_tf.search.errors import SearchError
from dpc_tf.search.fake_trial import FakeTrial, branch_costs, fake_miou
from dpc_tf.search.pipeline import run_pipeline
from dpc_tf.search.store import Store
from dpc_tf.search.trial import WorkerPayload
from dpc_tf.search_space import CITYSCAPES_CELL, Cell
from dpc_tf.utils.stats import spearman

FAKE_CONFIG = os.path.join(ROOT, "gin", "search", "fake_demo.gin")


def _run(tmp_path, budget, trial_fn, workers=1, max_attempts=2, **engine_kwargs):
  store = Store(str(tmp_path / "trials.sqlite"))
  coordinator = Coordinator(store, RandomSearch(num_branches=4, budget=budget, top_k=3, seed=2),
                            max_attempts=max_attempts, max_consecutive_failures=0)
  LocalEngine(workers=workers, poll_s=0.2, **engine_kwargs).run(coordinator, WorkerPayload(trial_fn))
  return store


def test_pipeline_end_to_end_with_two_workers(tmp_path):
  gin.parse_config_files_and_bindings([FAKE_CONFIG], [
      "search_algorithm.budget = 12", "search_pipeline.rerank_top_k = 3",
      "search_pipeline.num_best_cells = 4", "local_engine.workers = 2",
      "search_algorithm.objective = 'miou'", "search_pipeline.rerank_min_distance = 0"])
  summary = run_pipeline(str(tmp_path))
  with open(tmp_path / "results.csv") as f:
    every = list(csv.DictReader(f))
  # the baselines (ASPP, the released cell) are rows -1, -2 besides the budget of 12
  assert [(r["trial_id"], r["origin"], r["cell"].split()[0]) for r in every[:2]] == [
      ("-2", "baseline", "F:sep3x3@1x6"), ("-1", "baseline", "aspp")]
  assert summary["counts"]["done"] == 12 and set(summary["baselines"]) == {"aspp", "released"}
  rows = every[2:]
  assert [int(r["trial_id"]) for r in rows] == list(range(12))
  assert all(r["status"] == "done" and r["attempts"] == "1" for r in rows)
  for row in rows:
    cell = Cell.from_text(row["cell"])
    assert float(row["proxy_miou"]) == pytest.approx(fake_miou(cell), rel=1e-5)
    assert int(row["branch_params"]) > 0 and int(row["branch_madds"]) > 0
  reranked = [r for r in rows if r["rerank_miou"]]
  top3 = sorted(rows, key=lambda r: -float(r["proxy_miou"]))[:3]
  assert {r["trial_id"] for r in reranked} == {r["trial_id"] for r in top3}
  # best_cells: re-ranked cells first, by re-rank score, in the released JSON format
  best = Cell.load(str(tmp_path / "best_cells" / "rank_1.json"))
  winner = max(reranked, key=lambda r: float(r["rerank_miou"]))
  assert best.text == winner["cell"] and summary["best"]["cell"] == winner["cell"]
  assert sorted(os.listdir(tmp_path / "best_cells")) == [f"rank_{i}.json" for i in range(1, 5)]
  assert json.loads((tmp_path / "best_cells" / "rank_1.json").read_text())[0]["input"] == -1
  assert summary["plots"] == {name: str(tmp_path / "plots" / f"{name}.png") for name in
                              ("proxy_scores", "proxy_vs_rerank", "pareto", "best_cell")}
  assert summary["spearman_n"] == 3 and summary["verdict"]["against"] == "aspp"
  scores = [(float(r["proxy_miou"]), float(r["rerank_miou"])) for r in reranked]
  assert summary["spearman_rho"] == pytest.approx(
      spearman([p for p, _ in scores], [r for _, r in scores]))
  # a second run finds everything done and changes nothing
  before = (tmp_path / "results.csv").read_text()
  gin.clear_config()
  gin.parse_config_files_and_bindings([FAKE_CONFIG], [
      "search_algorithm.budget = 12", "search_pipeline.rerank_top_k = 3",
      "search_pipeline.num_best_cells = 4", "local_engine.workers = 2",
      "search_algorithm.objective = 'miou'", "search_pipeline.rerank_min_distance = 0"])
  run_pipeline(str(tmp_path))
  assert (tmp_path / "results.csv").read_text() == before


def test_crashing_worker_is_replaced_and_its_trial_retried(tmp_path):
  # Trial 0's cell is fixed by the seed (suggested before any result): it surely crashes.
  first = RandomSearch(num_branches=4, seed=2).suggest(0, History(set(), [])).cell
  trial_fn = FakeTrial(crash_once_fraction=0.3, crash_once_cells=(first.fingerprint(),),
                       marker_dir=str(tmp_path))
  store = _run(tmp_path, 10, trial_fn, workers=2)
  trials = store.trials()
  assert len(trials) == 10 and all(t.status == "done" for t in trials)
  crashed = [t for t in trials if trial_fn.crashes_once(t.cell)]
  assert trials[0].cell_text == first.text and trials[0] in crashed
  assert all(t.attempts == 2 for t in crashed)
  assert all(t.attempts == 1 for t in trials if t not in crashed)
  assert len([f for f in os.listdir(tmp_path) if f.endswith(".crashed")]) == len(crashed)


def test_exceptions_fail_the_trial_after_max_attempts(tmp_path):
  trial_fn = FakeTrial(fail_fraction=0.3)
  store = _run(tmp_path, 8, trial_fn, max_attempts=2)
  failed = store.trials("failed")
  assert failed and all(trial_fn.always_fails(t.cell) and t.attempts == 2 for t in failed)
  assert all("RuntimeError: injected failure" in t.error for t in failed)
  assert store.num_trials() == 8 and len(store.trials("done")) == 8 - len(failed)


def test_timeout_kills_the_trial(tmp_path):
  store = _run(tmp_path, 1, FakeTrial(sleep_s=30), max_attempts=1, trial_timeout_s=1.0)
  trial = store.get(0)
  assert trial.status == "failed" and "timed out" in trial.error


def test_unpicklable_trial_function_is_a_clear_error(tmp_path):
  with pytest.raises(SearchError, match="cannot be pickled"):
    _run(tmp_path, 1, lambda cell: {"miou": 0.0})


def _alive(pid: int) -> bool:
  """Running (a zombie waiting for init to reap it counts as dead)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
  except FileNotFoundError:
    return False


def test_sigkill_mid_search_then_resume(tmp_path, count_rows):
  """Kill -9 the driver mid-search; the same command finishes the search exactly."""
  search_dir, log = str(tmp_path / "search"), str(tmp_path / "evaluations.log")
  args = [sys.executable, "-m", "dpc_tf.search", f"--gin_file={FAKE_CONFIG}",
          f"--search_dir={search_dir}", "--budget=14", "--workers=1",
          "--gin_bindings=fake_trial.sleep_s = 0.3", f"--gin_bindings=fake_trial.log_path = '{log}'",
          "--gin_bindings=search_pipeline.rerank_top_k = 0",
          "--gin_bindings=search_pipeline.plots = False"]
  driver = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  store_path = os.path.join(search_dir, "trials.sqlite")
  deadline = time.time() + 60
  while count_rows(store_path, "done") < 5 and time.time() < deadline:
    time.sleep(0.05)
  driver.send_signal(signal.SIGKILL)
  driver.wait()
  with Store(store_path) as store:  # what the killed driver had committed
    done_at_kill = {t.fingerprint for t in store.trials("done")}
  assert 5 <= len(done_at_kill) < 14
  with open(log) as f:
    worker_pids = {int(line.split()[2]) for line in f}
  deadline = time.time() + 10
  while any(_alive(pid) for pid in worker_pids) and time.time() < deadline:
    time.sleep(0.1)
  assert not any(_alive(pid) for pid in worker_pids)  # workers die with the driver

  resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  with Store(store_path) as store:
    trials = store.trials()
  searched = [t for t in trials if not t.is_baseline]  # the baselines are outside the budget
  assert len(searched) == 14 and all(t.status == "done" for t in trials)
  assert [(t.id, t.cell_text) for t in trials if t.is_baseline] == [
      (-2, CITYSCAPES_CELL.text), (-1, "aspp")]
  with open(log) as f:
    ends = collections.Counter(line.split()[1] for line in f if line.startswith("end"))
  assert all(ends[fp] == 1 for fp in done_at_kill)  # a finished trial never runs again
  assert all(ends[t.fingerprint] <= 2 for t in trials)  # an in-flight one at most once more
  assert all(t.attempts == 1 for t in trials)  # the kill cost the in-flight one no attempt
  # and the resumed search made the suggestions the uninterrupted one makes
  gin.parse_config_file(FAKE_CONFIG)  # the same algorithm (warm start included)
  algorithm = make_algorithm(budget=14)
  algorithm.cost_fn = branch_costs
  reference = Coordinator(Store(str(tmp_path / "ref.sqlite")), algorithm)
  while not reference.finished():
    trial = reference.next_trial()
    reference.complete(trial.id, FakeTrial()(trial.cell), 0.0)
  assert [t.cell_text for t in searched] == [t.cell_text for t in reference.store.trials()]


def test_sigkill_while_a_baseline_runs_then_resume(tmp_path, count_rows):
  """A baseline is a trial like any other: killed mid-run, it is re-run once on resume, and
  it never takes a place of the budget."""
  search_dir, log = str(tmp_path / "search"), str(tmp_path / "evaluations.log")
  args = [sys.executable, "-m", "dpc_tf.search", f"--gin_file={FAKE_CONFIG}",
          f"--search_dir={search_dir}", "--budget=3", "--workers=1",
          "--gin_bindings=fake_trial.sleep_s = 0.5", f"--gin_bindings=fake_trial.log_path = '{log}'",
          "--gin_bindings=search_pipeline.rerank_top_k = 0",
          "--gin_bindings=search_pipeline.plots = False"]
  driver = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  store_path = os.path.join(search_dir, "trials.sqlite")
  deadline = time.time() + 60
  while count_rows(store_path, "running") < 1 and time.time() < deadline:
    time.sleep(0.02)
  time.sleep(0.1)
  driver.send_signal(signal.SIGKILL)
  driver.wait()
  with Store(store_path) as store:
    running = [t.id for t in store.trials("running")]
  assert running == [-2]  # baselines run first, the released cell's row first
  resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  with Store(store_path) as store:
    trials = store.trials()
    assert store.counts(baselines=False)["done"] == 3
  assert [(t.id, t.status, t.attempts) for t in trials] == [
      (-2, "done", 1), (-1, "done", 1), (0, "done", 1), (1, "done", 1), (2, "done", 1)]


def test_sigterm_stops_cleanly_and_gives_the_attempt_back(tmp_path, count_rows):
  search_dir = str(tmp_path / "search")
  driver = subprocess.Popen(
      [sys.executable, "-m", "dpc_tf.search", f"--gin_file={FAKE_CONFIG}",
       f"--search_dir={search_dir}", "--budget=3", "--gin_bindings=fake_trial.sleep_s = 60"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  store_path = os.path.join(search_dir, "trials.sqlite")
  deadline = time.time() + 60
  while count_rows(store_path, "running") < 1 and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(0.5)  # let the worker start the trial
  driver.send_signal(signal.SIGTERM)
  _, stderr = driver.communicate(timeout=30)
  assert driver.returncode == EXIT_INTERRUPTED  # 130, as for every command (dpc_tf.app)
  assert stderr.strip().splitlines()[-1] == \
      "dpc_tf.search: interrupted; finished trials are kept, run the same command to resume"
  with Store(store_path) as store:
    assert [(t.status, t.attempts) for t in store.trials()] == [("pending", 0)] * 2
