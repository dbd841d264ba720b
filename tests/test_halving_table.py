"""The halving study's real-proxy table (reproduction/halving_table.py) and its replay, with
the fake trial standing in for the proxy (tests/proxy/test_halving_table.py builds one with
the real proxy)."""

import hashlib
import os
import statistics

import pytest

from dpc_tf.errors import DpcError
from dpc_tf.reproduction import halving, halving_table as ht
from dpc_tf.search.fake_trial import FakeTrial
from dpc_tf.search.store import Store
from dpc_tf.search_space import Cell

RUNGS = (2, 4, 8)
SETTINGS = ht.TableSettings(num_cells=4, cells_seed=3, rungs=RUNGS)
IDENTITY = ht.table_identity(SETTINGS, {"learning_rate": 0.02}, {"backbone": "fake"})


class Counting:
  """The fake trial (which checks every continuation's state file), calls recorded."""

  def __init__(self, fail_at_call=None):
    self.fake, self.calls, self.fail_at_call = FakeTrial(step_noise=0.1), [], fail_at_call

  def __call__(self, cell, **kwargs):
    if len(self.calls) == self.fail_at_call:
      raise KeyboardInterrupt  # a kill in the middle of a row
    self.calls.append((cell.fingerprint(), kwargs["steps"], kwargs["start_from"] is not None,
                       kwargs["schedule_steps"]))
    return self.fake(cell, **kwargs)


def test_table_rows_are_the_rung_scores_of_one_continued_run(tmp_path):
  trial = Counting()
  rows = ht.build_table(str(tmp_path), SETTINGS, trial, IDENTITY)
  cells = ht.table_cells(SETTINGS)
  assert len({c.fingerprint() for c in cells}) == 4
  assert [r["fingerprint"] for r in rows] == [c.fingerprint() for c in cells]
  # Each cell: rung 0 from scratch, then continued to 4 and 8, the schedule over 8 steps.
  assert trial.calls == [(c.fingerprint(), s, s != 2, 8) for c in cells for s in RUNGS]
  for row, cell in zip(rows, cells):
    assert row["scores"] == [pytest.approx(trial.fake.score(cell, steps=s), abs=1e-6)
                             for s in RUNGS]
    assert Cell.from_text(row["cell_text"]).fingerprint() == row["fingerprint"]
  header = open(tmp_path / ht.TABLE_FILE).readline().strip()
  assert header == "index,cell_text,fingerprint,score_at_2,score_at_4,score_at_8,seconds"
  assert sorted(os.listdir(tmp_path)) == sorted([".lock", ht.SETTINGS_FILE, ht.TABLE_FILE])


def test_table_resumes_after_a_kill_and_is_never_retrained(tmp_path):
  killed = Counting(fail_at_call=4)  # row 0 done, row 1 killed after its first rung
  with pytest.raises(KeyboardInterrupt):
    ht.build_table(str(tmp_path), SETTINGS, killed, IDENTITY)
  os.mkdir(tmp_path / "heads-killed")  # what a kill -9 leaves (a TemporaryDirectory's rest)
  assert len(ht.read_table(str(tmp_path), IDENTITY)) == 1
  resumed = Counting()
  rows = ht.build_table(str(tmp_path), SETTINGS, resumed, IDENTITY, max_new=2)
  assert [r["index"] for r in rows] == [0, 1, 2] and len(resumed.calls) == 6
  assert not (tmp_path / "heads-killed").exists()
  rows = ht.build_table(str(tmp_path), SETTINGS, resumed, IDENTITY)
  assert len(rows) == 4 and len(resumed.calls) == 9
  again = Counting()
  assert ht.build_table(str(tmp_path), SETTINGS, again, IDENTITY) == rows
  assert again.calls == []  # rebuilt without retraining
  fresh = ht.build_table(str(tmp_path / "fresh"), SETTINGS, Counting(), IDENTITY)
  assert [r["scores"] for r in fresh] == [r["scores"] for r in rows]
  # A longer table extends this one (same cell sequence); a shorter one is its head.
  small = ht.TableSettings(num_cells=2, cells_seed=3, rungs=RUNGS)
  assert ht.build_table(str(tmp_path), small, again, IDENTITY) == rows[:2]


def test_a_table_made_with_other_settings_is_refused(tmp_path):
  ht.build_table(str(tmp_path), SETTINGS, Counting(), IDENTITY, max_new=1)
  other = ht.table_identity(SETTINGS, {"learning_rate": 0.05}, {"backbone": "fake"})
  with pytest.raises(ht.TableError, match=r"made with other settings: "
                     r"proxy_trial.learning_rate 0.02 \(wanted 0.05\)"):
    ht.build_table(str(tmp_path), SETTINGS, Counting(), other)
  other_rungs = ht.TableSettings(num_cells=4, cells_seed=3, rungs=(2, 8))
  with pytest.raises(DpcError, match=r"table.rungs \[2, 4, 8\] \(wanted \[2, 8\]\)"):
    ht.read_table(str(tmp_path), ht.table_identity(other_rungs, {"learning_rate": 0.02},
                                                   {"backbone": "fake"}))
  os.remove(tmp_path / ht.SETTINGS_FILE)
  with pytest.raises(DpcError, match="has no table_settings.json beside it"):
    ht.read_table(str(tmp_path), IDENTITY)


def _rows(top_scores, lower=None):
  return [{"scores": [lower[i] if lower else s - 0.2, s - 0.1, s]}
          for i, s in enumerate(top_scores)]


def test_table_trial_reads_the_row_the_fingerprint_hashes_to():
  table = ht.table_trial(_rows([0.5, 0.6, 0.7]), (100, 300, 900))
  cell = Cell.from_text("F:conv1x1 0:sep3x3@1x1")
  row = int.from_bytes(hashlib.sha256(cell.fingerprint().encode()).digest()[:8], "big") % 3
  assert table.row(cell) == row
  assert table.score(cell, steps=300) == pytest.approx([0.4, 0.5, 0.6][row])
  assert table.score(cell) == pytest.approx([0.5, 0.6, 0.7][row])  # the top rung
  record = table(cell, steps=900)
  assert record["miou"] == pytest.approx([0.5, 0.6, 0.7][row]) and record["table_row"] == row
  with pytest.raises(DpcError, match="200 steps is not a rung of the table"):
    table.score(cell, steps=200)


def test_replay_on_one_row_gives_hand_checked_numbers(tmp_path):
  """One row: every sampled cell is that row. Flat reaches its best-1 (the row's top score)
  after one trial (300 steps), halving after one rung-0 job (33 steps); every later cell is
  a collision."""
  table = ht.table_trial([{"scores": [0.1, 0.2, 0.55]}], (33, 100, 300))
  settings = halving.Settings(seeds=(0, 1), budget=3, rungs=(33, 100, 300), best_k=1,
                              trial="table", p_uniform=1.0)
  result = halving.study(settings, table)
  for p in result["per_seed"]:
    assert (p["flat_best_k"], p["halving_best_k"]) == (0.55, 0.55)
    assert (p["flat_steps_to_target"], p["halving_steps_to_target"]) == (300, 33)
    assert p["steps_ratio"] == pytest.approx(33 / 300)
    assert p["budget_fraction"] == pytest.approx(33 / 900)
    assert (p["flat_cells"], p["flat_distinct"], p["halving_distinct"]) == (3, 1, 1)
  assert result["collision_rate"]["flat"] == pytest.approx(2 / 3)


def test_replay_best_k_counts_distinct_rows(tmp_path):
  """Six rows; flat's final best-3 is the mean of the 3 best top-rung scores among the rows
  it sampled (its ranking is the table's top rung), each row once."""
  tops = [0.40, 0.45, 0.50, 0.55, 0.60, 0.65]
  table = ht.table_trial(_rows(tops), (33, 100, 300))
  settings = halving.Settings(seeds=(4,), budget=6, rungs=(33, 100, 300), best_k=3,
                              trial="table", p_uniform=1.0)
  run = halving.run_search(settings, 4, "flat", str(tmp_path), table)
  with Store(str(tmp_path / "flat-4.sqlite")) as store:
    sampled = {table.row(t.cell) for t in store.trials("done")}
  assert run["distinct"] == len(sampled) >= 3 and run["cells"] == 6
  assert run["final_best_k"] == pytest.approx(
      statistics.fmean(sorted((tops[r] for r in sampled), reverse=True)[:3]))
  assert run["steps"] == 6 * 300
  halving_run = halving.run_search(settings, 4, "successive_halving", str(tmp_path), table)
  assert halving_run["steps"] <= 6 * 300 and halving_run["cells"] > 6


def test_table_replay_settings_are_checked():
  table = ht.table_trial(_rows([0.5] * 6), (33, 100, 300))
  with pytest.raises(DpcError, match="needs a table"):
    halving.study(halving.TABLE_SETTINGS)
  with pytest.raises(DpcError, match=r"rungs \(100, 300, 900\) are not rungs of the table"):
    halving.study(halving.Settings(trial="table", p_uniform=1.0), table)
  with pytest.raises(DpcError, match="needs p_uniform = 1.0"):
    halving.study(halving.Settings(trial="table", rungs=(33, 100, 300)), table)


def test_the_command_refuses_another_recipes_table_before_making_a_cache(tmp_path, clean_gin):
  folder = tmp_path / ht.TABLE_DIR
  folder.mkdir()
  (folder / ht.SETTINGS_FILE).write_text('{"table": {}, "proxy_trial": {"filters": 256}}')
  with pytest.raises(ht.TableError, match=r"made with other settings: proxy_trial.batch_size "
                     r"None \(wanted 8\); proxy_trial.bn_momentum"):
    ht.build_real_table(str(tmp_path), ht.TableSettings())
  assert sorted(os.listdir(tmp_path)) == [ht.TABLE_DIR]  # no cache, no backbone


def test_replay_runs_every_rung_set_and_states_the_table():
  """20 rows; the lower rungs rank the rows in reverse (rho -1) and then in order (+1)."""
  rows = [{"index": i, "seconds": 10.0 * (i + 1), "scores": [0.3 - 0.01 * i, 0.01 * i,
                                                             0.40 + 0.01 * i]}
          for i in range(20)]
  result = halving.replay(rows, (33, 100, 300), seeds=(0,))
  assert [s["settings"]["rungs"] for s in result["studies"]] == [(33, 100, 300), (100, 300)]
  facts = result["table"]
  assert facts["rung_spearman"] == [pytest.approx(-1.0), pytest.approx(1.0)]
  assert (facts["rows"], facts["build_seconds"], facts["median_row_seconds"]) == (20, 2100, 105)
  assert facts["best_k_rows_mean"] == pytest.approx(0.57)  # rows 15-19
  text = "\n".join(halving.markdown({"table_study": result}))
  assert "The table's best 5 rows average 0.570" in text and "33: -1.00, 100: 1.00" in text
  assert "#### Halving over rungs (100, 300)" in text
