"""The Ray engine on a local Ray instance: trials run, a killed trial process is retried,
packs (cells_per_program) keep the store's bookkeeping per trial."""

import collections
import os

import pytest

ray = pytest.importorskip("ray", reason="the ray extra (ray[tune]) is not installed")

from dpc_tf.search.algorithm import History, RandomSearch  # pylint: disable=wrong-import-position
from dpc_tf.search.coordinator import Coordinator  # pylint: disable=wrong-import-position
from dpc_tf.search.engines.ray_tune import RayEngine  # pylint: disable=wrong-import-position
from dpc_tf.search.fake_trial import FakeTrial, fake_miou  # pylint: disable=wrong-import-position
from dpc_tf.search.store import Store  # pylint: disable=wrong-import-position
from dpc_tf.search.trial import WorkerPayload  # pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def local_ray():
  # address="local": always a fresh instance, never a cluster another run started here
  ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
  yield
  ray.shutdown()


def _algorithm(budget):
  return RandomSearch(num_branches=4, budget=budget, top_k=3, seed=2)


def test_ray_engine_runs_the_budget_and_retries_a_killed_trial(tmp_path, local_ray):
  first = _algorithm(1).suggest(0, History(set(), [])).cell  # trial 0, fixed by the seed
  second = _algorithm(1).suggest(1, History({first.fingerprint()}, [])).cell  # trial 1
  markers = tmp_path / "markers"
  markers.mkdir()
  trial_fn = FakeTrial(crash_once_cells=(first.fingerprint(), second.fingerprint()),
                       marker_dir=str(markers))
  store = Store(str(tmp_path / "trials.sqlite"))
  coordinator = Coordinator(store, _algorithm(5), max_attempts=2)
  RayEngine(max_concurrent=2).run(coordinator, WorkerPayload(trial_fn), str(tmp_path))
  trials = store.trials()
  assert len(trials) == 5 and all(t.status == "done" for t in trials)
  assert [t.attempts for t in trials] == [2, 2, 1, 1, 1]  # os._exit on the first attempt
  assert trials[0].cell_text == first.text and trials[1].cell_text == second.text
  assert sorted(os.listdir(markers)) == sorted(f + ".crashed" for f in
                                               (first.fingerprint(), second.fingerprint()))
  for trial in trials:
    assert trial.score == pytest.approx(fake_miou(trial.cell))
    assert trial.record["branch_params"] > 0 and trial.seconds >= 0

  # Resume on the same store with a larger budget: the first five are kept, none re-run.
  more = Coordinator(store, _algorithm(7), max_attempts=2)
  RayEngine(max_concurrent=2).run(more, WorkerPayload(trial_fn), str(tmp_path))
  assert [t.attempts for t in store.trials()] == [2, 2, 1, 1, 1, 1, 1]
  assert [t.finished for t in store.trials()[:5]] == [t.finished for t in trials]


def test_ray_engine_out_of_attempts_and_trial_exceptions(tmp_path, local_ray):
  first = _algorithm(1).suggest(0, History(set(), [])).cell
  second = _algorithm(1).suggest(1, History({first.fingerprint()}, [])).cell
  trial_fn = FakeTrial(crash_once_cells=(first.fingerprint(),), marker_dir=str(tmp_path),
                       fail_cells=(second.fingerprint(),))
  store = Store(str(tmp_path / "trials.sqlite"))
  coordinator = Coordinator(store, _algorithm(4), max_attempts=1, max_consecutive_failures=0)
  RayEngine(max_concurrent=2).run(coordinator, WorkerPayload(trial_fn), str(tmp_path))
  trials = store.trials()
  assert [t.status for t in trials] == ["failed", "failed", "done", "done"]
  assert "the Ray trial process failed" in trials[0].error  # died: Ray's own error text
  assert "RuntimeError: injected failure" in trials[1].error  # raised: the trial's traceback
  assert all(t.attempts == 1 for t in trials)


def test_ray_engine_packs_cells_and_books_each_alone(tmp_path, local_ray):
  """cells_per_program = 3: a Tune trial carries 3 store trials. Trial 0 kills its pack's
  process on its first attempt (its pack-mates lose that attempt with it and run again),
  trial 1 raises on every attempt (it fails alone); every result is recorded once and the
  budget of 4 is exact."""
  first = _algorithm(1).suggest(0, History(set(), [])).cell
  second = _algorithm(1).suggest(1, History({first.fingerprint()}, [])).cell
  log = str(tmp_path / "calls.log")
  trial_fn = FakeTrial(cells_per_program=3, crash_once_cells=(first.fingerprint(),),
                       fail_cells=(second.fingerprint(),), marker_dir=str(tmp_path),
                       log_path=log)
  store = Store(str(tmp_path / "trials.sqlite"))
  coordinator = Coordinator(store, _algorithm(4), max_attempts=2, max_consecutive_failures=0)
  RayEngine(max_concurrent=2).run(coordinator, WorkerPayload(trial_fn), str(tmp_path))
  trials = store.trials()
  assert [t.status for t in trials] == ["done", "failed", "done", "done"]
  assert [t.attempts for t in trials] == [2, 2, 2, 1]
  assert "RuntimeError: injected failure" in trials[1].error
  for trial in trials[:1] + trials[2:]:
    assert trial.score == pytest.approx(fake_miou(trial.cell))
  # one Tune trial per pack: the retried pack (0, 1, 2), then the last cell
  packs = collections.defaultdict(list)
  for trial in trials:
    packs[trial.worker].append(trial.id)
  assert sorted(packs.values()) == [[0, 1, 2], [3]]
  assert all(worker.startswith("ray/") for worker in packs)
  with open(log) as f:
    ends = collections.Counter(line.split()[1] for line in f if line.startswith("end"))
  assert all(ends[t.fingerprint] == 1 for t in trials if t.status == "done")


def test_ray_engine_runs_successive_halving_with_continuations(tmp_path, local_ray):
  """Rung work orders travel through Tune untouched: 60 steps = 4 new cells (10) and the
  best of the first three promoted to 30, continuing from its saved state."""
  from dpc_tf.search.halving import Rungs  # pylint: disable=import-outside-toplevel
  algorithm = RandomSearch(num_branches=4, budget=2, top_k=3, seed=2, rungs=Rungs((10, 30), 3))
  store = Store(str(tmp_path / "trials.sqlite"))
  coordinator = Coordinator(store, algorithm, max_attempts=1)
  RayEngine(max_concurrent=2).run(coordinator, WorkerPayload(FakeTrial(step_noise=0.1)),
                                  str(tmp_path))
  results = store.rung_results()
  assert sorted((r["rung"], r["steps"]) for r in results) == [(0, 10)] * 4 + [(1, 30)]
  promoted = next(r for r in results if r["rung"] == 1)
  started = store.get(promoted["trial_id"]).started  # when its rung 1 was dispatched
  known = [r for r in results if r["rung"] == 0 and r["finished"] <= started]
  assert len(known) >= 3  # no promotion before a third of 3 results
  assert promoted["trial_id"] == max(known, key=lambda r: r["score"])["trial_id"]
  assert promoted["record"]["resumed_from_steps"] == 10
  assert os.path.exists(tmp_path / "heads" / f"trial_{promoted['trial_id']}" / "steps_10"
                        / "state.json")
