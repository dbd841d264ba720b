"""Successive halving (ASHA) over proxy steps: the promotion rule, the Coordinator's rung
bookkeeping on hand-made scores, resume at every commit point, and kill -9 end to end."""

import csv
import os
import signal
import time

import gin
import pytest

from dpc_tf.search import algorithm, halving
from dpc_tf.search.algorithm import RandomSearch
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.errors import SearchError
from dpc_tf.search.fake_trial import FakeTrial, fake_miou
from dpc_tf.search.pipeline import run_pipeline
from dpc_tf.search.results import results_csv_text
from dpc_tf.search.store import Store
from dpc_tf.search.subjects import decode

RUNGS = halving.Rungs((100, 300, 900), 3)


def _coordinator(path, budget=2, max_attempts=2):
  store = Store(str(path))
  search = RandomSearch(num_branches=3, budget=budget, seed=1, rungs=RUNGS)
  return Coordinator(store, search, max_attempts=max_attempts, max_consecutive_failures=0)


def test_promotion_rule_on_hand_made_scores():
  finished = {0: [(0, 0.5), (1, 0.7), (2, 0.6)]}
  assert RUNGS.promotion(finished, {}, fits=10_000) == (1, 1)  # the best third of 3: one
  assert RUNGS.promotion(finished, {0: {1}}, fits=10_000) is None  # quota used
  finished[0] += [(3, 0.65), (4, 0.1), (5, 0.2)]  # 6 results: quota 2, next best is 3
  assert RUNGS.promotion(finished, {0: {1}}, fits=10_000) == (3, 1)
  finished[1] = [(1, 0.8), (3, 0.9), (6, 0.1)]  # a full rung 1: its best goes first
  assert RUNGS.promotion(finished, {0: {1, 3}}, fits=10_000) == (3, 2)
  assert RUNGS.promotion(finished, {0: {1, 3}}, fits=599) is None  # 600 steps do not fit
  assert RUNGS.promotion({0: [(7, 0.5), (8, 0.5), (9, 0.1)]}, {}, 10_000) == (7, 1)  # tie: id
  assert [RUNGS.cost(r) for r in range(3)] == [100, 200, 600]


@pytest.mark.parametrize("bindings,expected", [
    (["search_algorithm.fidelity = 'halving'"], "search_algorithm.fidelity must be one of"),
    (["search_algorithm.fidelity = 'successive_halving'", "search_algorithm.rungs = (300, 100)"],
     "search_algorithm.rungs must be two or more increasing"),
    (["search_algorithm.fidelity = 'successive_halving'", "search_algorithm.reduction_factor = 1"],
     "search_algorithm.reduction_factor must be an integer >= 2"),
    (["search_algorithm.rungs = (100, 2.5)"], "search_algorithm.rungs = (100, 2.5) is not"),
])
def test_bad_settings_are_one_line(bindings, expected):
  gin.parse_config(bindings)
  with pytest.raises(SearchError, match=expected.replace("(", r"\(").replace(")", r"\)")):
    algorithm.make_algorithm()


def test_rungs_are_promoted_asynchronously_within_the_step_budget(tmp_path):
  """Hand-made scores: the 4th dispatch is already a promotion (no full rung is awaited),
  work orders continue from the rung before, and the budget is spent to the step."""
  coordinator = _coordinator(tmp_path / "t.sqlite", budget=2)  # 2 x 900 = 1800 steps
  scores = {0: [0.5, 0.7, 0.6], 1: [0.9]}
  orders = []
  for expected_id in (0, 1, 2):
    trial = coordinator.next_trial()
    order = decode(trial.cell_json).fidelity
    assert (trial.id, trial.rung, order.steps, order.schedule_steps, order.start_from) == (
        expected_id, 0, 100, 900, None)
    assert order.save_to == str(tmp_path / "heads" / f"trial_{trial.id}" / "steps_100")
    coordinator.complete(trial.id, {"miou": scores[0][trial.id]}, 1.0)
  trial = coordinator.next_trial()  # trial 1 (0.7) is the best third of rung 0
  order = decode(trial.cell_json).fidelity
  assert (trial.id, trial.rung, order.steps, order.start_from, order.save_to) == (
      1, 1, 300, str(tmp_path / "heads/trial_1/steps_100"),
      str(tmp_path / "heads/trial_1/steps_300"))
  other = coordinator.next_trial()  # meanwhile a free worker takes a new cell, not waiting
  assert (other.id, other.rung) == (3, 0)
  coordinator.complete(1, {"miou": 0.9}, 1.0)
  coordinator.complete(3, {"miou": 0.1}, 1.0)
  assert coordinator.committed_steps == 600
  dispatched = []
  while not coordinator.finished():
    trial = coordinator.next_trial()
    dispatched.append((trial.id, trial.rung))
    coordinator.complete(trial.id, {"miou": 0.3 + 0.01 * trial.id}, 1.0)
  # Rung 0's quota grows by one per 3 results: at 6 results trial 2 (0.6) is promoted, at
  # 9 trial 0 (0.5); rung 1's 3 results earn trial 1 the top rung, but its 600 steps no
  # longer fit in the 300 left, which go to new cells.
  assert dispatched == [(4, 0), (5, 0), (2, 1), (6, 0), (7, 0), (8, 0), (0, 1), (9, 0),
                        (10, 0), (11, 0)]
  assert coordinator.committed_steps == 1800
  with coordinator.store as store:
    spent = sum(RUNGS.cost(r["rung"]) for r in store.rung_results())
    assert spent == coordinator.committed_steps
    row = {t.id: t for t in store.trials()}[1]
    assert (row.rung, row.score) == (1, 0.9)
    text = results_csv_text(store)
  rows = {r["trial_id"]: r for r in csv.DictReader(text.splitlines())}
  assert (rows["1"]["max_steps"], rows["1"]["scores_by_steps"], rows["1"]["proxy_miou"]) == (
      "300", "100:0.7 300:0.9", "0.9")
  assert rows["0"]["scores_by_steps"] == "100:0.5 300:0.3"


def test_resume_at_every_commit_point_loses_and_repeats_nothing(tmp_path):
  """A kill -9 stops the driver between two store transactions: here, after a promotion
  was committed but before it started, and while a promoted rung runs."""
  path = tmp_path / "t.sqlite"
  coordinator = _coordinator(path, budget=2)
  for score in (0.5, 0.7, 0.6):
    trial = coordinator.next_trial()
    coordinator.complete(trial.id, {"miou": score}, 1.0)
  coordinator.store.promote(1, 1)  # the promotion committed, then the driver died
  coordinator.store.close()
  resumed = _coordinator(path, budget=2)  # a new driver
  assert resumed.committed_steps == 500  # 3 x 100 + the promotion's 200
  trial = resumed.next_trial()
  assert (trial.id, trial.rung, trial.attempts) == (1, 1, 1)  # the queued promotion first
  resumed.store.close()  # killed while rung 1 runs
  again = _coordinator(path, budget=2)
  assert again.requeued == [1]
  trial = again.next_trial()
  # the kill gave its attempt back (a driver stop is never the cell's fault)
  assert (trial.id, trial.rung, trial.attempts) == (1, 1, 1)
  assert decode(trial.cell_json).fidelity.start_from.endswith("trial_1/steps_100")
  again.complete(1, {"miou": 0.8}, 1.0)
  assert again.next_trial().rung == 0  # rung 1's quota (0 of 1 result) is not yet earned
  with again.store as store:
    assert [(r["trial_id"], r["rung"]) for r in store.rung_results()] == [
        (0, 0), (1, 0), (1, 1), (2, 0)]  # each rung once: nothing lost, nothing repeated


def test_a_promoted_cell_that_fails_keeps_its_last_rung(tmp_path):
  coordinator = _coordinator(tmp_path / "t.sqlite", budget=2, max_attempts=1)
  for score in (0.5, 0.7, 0.6):
    trial = coordinator.next_trial()
    coordinator.complete(trial.id, {"miou": score}, 1.0)
  trial = coordinator.next_trial()
  assert (trial.id, trial.rung) == (1, 1)
  assert coordinator.fail(1, "boom") == "done"
  store = coordinator.store
  row = store.get(1)
  assert (row.status, row.rung, row.score) == ("done", 0, 0.7)
  assert store.rung_results(1)[-1]["status"] == "failed"
  assert 'rung 1 failed: boom' in results_csv_text(store)
  assert coordinator.next_trial().rung == 0  # never promoted again
  store.close()


def test_schema_1_store_is_migrated(tmp_path):
  path = str(tmp_path / "old.sqlite")
  with Store(path) as store:  # make it look like a store written before rungs
    store._db.executescript("DROP TABLE rung_results; ALTER TABLE trials DROP COLUMN rung;")
    store.set_meta("schema_version", "1")
    store.add(0, RandomSearch(num_branches=2).suggest(0, algorithm.History(set(), [])).cell,
              "initial")
  with Store(path) as store:
    assert store.get_meta("schema_version") == "2" and store.get(0).rung == 0
    assert store.rung_results() == []


def test_sigkill_mid_rung_then_resume_finishes_the_budget_exactly(tmp_path, commands, count_rows):
  """The local engine with 2 workers (the Ray engine's halving run: test_ray_engine.py)."""
  search_dir, log = str(tmp_path / "search"), str(tmp_path / "log")
  args = ["--gin_file=gin/search/fake_demo_halving.gin", f"--search_dir={search_dir}",
          "--budget=2", "--workers=2",
          "--gin_bindings=fake_trial.sleep_s = 0.2", f"--gin_bindings=fake_trial.log_path = '{log}'",
          "--gin_bindings=search_pipeline.rerank_top_k = 0",
          "--gin_bindings=search_pipeline.plots = False"]
  driver = commands.start("dpc_tf.search", *args)
  store_path = os.path.join(search_dir, "trials.sqlite")
  deadline = time.time() + 60
  while count_rows(store_path, table="rung_results") < 8 and time.time() < deadline:
    time.sleep(0.05)
  driver.send_signal(signal.SIGKILL)
  driver.communicate()
  with Store(store_path) as store:
    before = {(r["trial_id"], r["rung"]) for r in store.rung_results()}
  result = commands.run("dpc_tf.search", *args, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  with Store(store_path) as store:
    results = store.rung_results()
    jobs = [(r["trial_id"], r["rung"]) for r in results if r["trial_id"] >= 0]
    assert before <= set(jobs + [(-1, 0), (-2, 0)]) and len(jobs) == len(set(jobs))
    assert sum(RUNGS.cost(rung) for _, rung in jobs) == 1800  # 2 top-rung trials' steps
    assert all(t.status == "done" for t in store.trials())
    promoted = [r for r in results if r["rung"] > 0]
    assert promoted and all(r["record"]["resumed_from_steps"] == RUNGS.steps[r["rung"] - 1]
                            for r in promoted)
    top = [t for t in store.trials() if t.rung == 2]
    for trial in top:  # the full-fidelity score: the cell's quality plus its small noise
      assert abs(trial.score - fake_miou(trial.cell)) <= 0.1 / 3 + 1e-9
  with open(log) as f:
    ends = [tuple(line.split()[1::3]) for line in f if line.startswith("end")]  # FP, STEPS
  finished_before = len(before)
  assert len(ends) <= len(results) + 2 and finished_before >= 8  # at most the 2 in flight again
