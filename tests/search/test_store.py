"""The trial store and the coordinator: status machine, retries, budget, resume."""

import sqlite3

import pytest

from dpc_tf.search.algorithm import RandomSearch
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.errors import SearchError
from dpc_tf.search.fake_trial import FakeTrial, fake_miou
from dpc_tf.search.store import Store
from dpc_tf.search.trial import WorkerPayload
from dpc_tf.search_space import Cell

CELL = Cell.from_text("F:sep3x3@1x6 0:sep3x3@18x15 1:sep3x3@6x3 0:sep3x3@1x1 0:sep3x3@6x21")
OTHER = Cell.from_text("F:conv1x1 F:pool@2x2")


def test_status_machine_and_attempts(tmp_path):
  with Store(str(tmp_path / "t.sqlite")) as store:
    trial = store.add(0, CELL, "initial")
    assert (trial.status, trial.attempts, trial.cell.text) == ("pending", 0, CELL.text)
    assert store.start(0, "w").attempts == 1
    assert store.fail(0, "boom", max_attempts=2) == "pending"
    assert store.start(0, "w").attempts == 2
    assert store.fail(0, "boom again", max_attempts=2) == "failed"
    assert store.get(0).error == "boom again"
    store.add(1, OTHER, "uniform")
    store.start(1)
    assert store.finish(1, {"miou": 0.5, "branch_params": 3}, 0.5, 1.25)
    assert not store.finish(1, {"miou": 0.9}, 0.9, 1.0)  # first outcome wins
    done = store.get(1)
    assert (done.status, done.score, done.record["branch_params"], done.seconds) == \
        ("done", 0.5, 3, 1.25)
    assert store.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 1}


def test_never_the_same_cell_twice_and_ids_in_sequence(tmp_path):
  with Store(str(tmp_path / "t.sqlite")) as store:
    store.add(0, CELL, "initial")
    relabelled = Cell.from_text("F:sep3x3@1x6 0:sep3x3@1x1 0:sep3x3@18x15 0:sep3x3@6x21 "
                                "2:sep3x3@6x3")  # same canonical cell, other branch order
    assert relabelled.fingerprint() == CELL.fingerprint()
    with pytest.raises(SearchError, match="already in the store"):
      store.add(1, relabelled, "uniform")
    with pytest.raises(SearchError, match="out of sequence"):
      store.add(5, OTHER, "uniform")


def test_recover_gives_the_attempt_back_however_often_the_driver_dies(tmp_path):
  path = str(tmp_path / "t.sqlite")
  with Store(path) as store:
    store.add(0, CELL, "initial")
  for _ in range(3):  # the driver died with trial 0 running, three times: not its fault
    with Store(path) as store:
      store.start(0)
    with Store(path) as store:
      assert store.recover() == [0]
      trial = store.get(0)
      assert (trial.status, trial.attempts) == ("pending", 0) and "interrupted" in trial.error


def test_release_gives_the_attempt_back(tmp_path):
  with Store(str(tmp_path / "t.sqlite")) as store:
    store.add(0, CELL, "initial")
    store.start(0)
    assert store.release(0)
    assert (store.get(0).status, store.get(0).attempts) == ("pending", 0)


def test_store_is_readable_by_another_connection_while_open(tmp_path):
  path = str(tmp_path / "t.sqlite")
  with Store(path) as store:
    store.add(0, CELL, "initial")
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT cell_text, status FROM trials").fetchall() == \
        [(CELL.text, "pending")]
    assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reader.close()


def _coordinator(path, budget, **kwargs):
  return Coordinator(Store(path), RandomSearch(num_branches=3, budget=budget, top_k=3, seed=4),
                     **kwargs)


def test_budget_is_exact_and_failed_trials_count(tmp_path, inline_engine):
  path = str(tmp_path / "t.sqlite")
  trial_fn = FakeTrial(fail_fraction=0.25)
  coordinator = _coordinator(path, 24, max_attempts=2, max_consecutive_failures=0)
  inline_engine().run(coordinator, WorkerPayload(trial_fn))
  trials = coordinator.store.trials()
  assert len(trials) == 24
  assert all(t.status in ("done", "failed") for t in trials)
  failed = [t for t in trials if t.status == "failed"]
  assert failed and all(t.attempts == 2 and trial_fn.always_fails(t.cell) for t in failed)
  assert all(t.attempts == 1 and t.score == pytest.approx(fake_miou(t.cell))
             for t in trials if t.status == "done")


def test_resume_continues_the_same_sequence(tmp_path, inline_engine):
  """Interrupted after 7 results and resumed = the uninterrupted search, trial for trial."""
  whole = _coordinator(str(tmp_path / "a.sqlite"), 20)
  inline_engine().run(whole, WorkerPayload(FakeTrial()))
  path = str(tmp_path / "b.sqlite")
  with pytest.raises(KeyboardInterrupt):
    inline_engine(stop_after=7).run(_coordinator(path, 20), WorkerPayload(FakeTrial()))
  resumed = _coordinator(path, 20)
  assert resumed.counts()["done"] == 7
  inline_engine().run(resumed, WorkerPayload(FakeTrial()))
  assert [t.cell_text for t in resumed.store.trials()] == \
      [t.cell_text for t in whole.store.trials()]
  assert [t.origin for t in resumed.store.trials()] == [t.origin for t in whole.store.trials()]


def test_a_larger_budget_extends_a_finished_search(tmp_path, inline_engine):
  path = str(tmp_path / "t.sqlite")
  inline_engine().run(_coordinator(path, 5), WorkerPayload(FakeTrial()))
  more = _coordinator(path, 9)
  assert not more.finished()
  inline_engine().run(more, WorkerPayload(FakeTrial()))
  assert more.counts()["done"] == 9 and more.store.num_trials() == 9


def test_repeated_failures_stop_the_search_and_cost_no_cell(tmp_path, inline_engine):
  """A broken trial function (a config mistake) stops the search with its error; the run of
  failures is forgiven, so the fixed one continues with the whole budget and no cell lost."""
  path = str(tmp_path / "t.sqlite")
  coordinator = _coordinator(path, 5, max_consecutive_failures=3)
  inline_engine().run(coordinator, WorkerPayload(FakeTrial(fail_fraction=1.0)))
  with pytest.raises(SearchError, match="3 trial attempts failed in a row.*injected failure.*"
                     "none was counted"):
    coordinator.raise_if_stopped()
  trials = coordinator.store.trials()
  assert len(trials) == 2  # attempts: 0, 0 (retry), 1
  assert [(t.status, t.attempts) for t in trials] == [("pending", 0)] * 2
  assert trials[0].error.startswith("not counted") and "injected failure" in trials[0].error
  fixed = _coordinator(path, 5, max_consecutive_failures=3)
  inline_engine().run(fixed, WorkerPayload(FakeTrial()))
  fixed.raise_if_stopped()
  assert [(t.status, t.attempts) for t in fixed.store.trials()] == [("done", 1)] * 5


def test_a_search_whose_every_trial_failed_stops_rather_than_finishes(tmp_path, inline_engine):
  coordinator = _coordinator(str(tmp_path / "t.sqlite"), 2, max_attempts=1)  # 2 < 10 attempts
  inline_engine().run(coordinator, WorkerPayload(FakeTrial(fail_fraction=1.0)))
  with pytest.raises(SearchError, match="2 trial attempts failed in a row"):
    coordinator.raise_if_stopped()
  assert coordinator.counts()["failed"] == 0 and coordinator.counts()["pending"] == 2


def test_bad_records_fail_the_attempt(tmp_path, inline_engine):
  coordinator = _coordinator(str(tmp_path / "t.sqlite"), 1, max_attempts=1,
                             max_consecutive_failures=0)
  inline_engine().run(coordinator, WorkerPayload(lambda cell: {"loss": 1.0}))
  trial = coordinator.store.get(0)
  assert trial.status == "failed" and "has no 'miou'" in trial.error


def test_retry_failed_gives_failed_trials_fresh_attempts(tmp_path, inline_engine):
  from dpc_tf.search.pipeline import PipelineSettings, run_trials  # pylint: disable=import-outside-toplevel
  path = str(tmp_path / "t.sqlite")
  broken = FakeTrial(fail_fraction=0.4)
  inline_engine().run(_coordinator(path, 10, max_consecutive_failures=0),
                      WorkerPayload(broken))
  failed = [t.id for t in Store(path).trials("failed")]
  assert failed
  store = Store(path)
  settings = PipelineSettings(max_attempts=2, max_consecutive_failures=0)
  algorithm = RandomSearch(num_branches=3, budget=10, top_k=3, seed=4)
  run_trials("search", store, algorithm, inline_engine(), WorkerPayload(FakeTrial()), settings,
             str(tmp_path))  # without --retry_failed: the search is complete, nothing runs
  assert [t.id for t in store.trials("failed")] == failed
  run_trials("search", store, algorithm, inline_engine(), WorkerPayload(FakeTrial()), settings,
             str(tmp_path), retry_failed=True)  # the 'fixed' trial function
  assert store.counts()["done"] == 10 and store.num_trials() == 10
  assert all(store.get(i).attempts == 1 for i in failed)
