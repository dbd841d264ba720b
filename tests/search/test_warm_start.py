"""Warm start (search_algorithm.warm_start): from a hand-made results.csv, resumed, refused."""

import csv

import gin
import pytest

from dpc_tf.errors import one_line
from dpc_tf.search import fake_trial, results, warm_start
from dpc_tf.search.algorithm import History, make_algorithm
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.errors import SearchError
from dpc_tf.search.fake_trial import FakeTrial
from dpc_tf.search.store import Store
from dpc_tf.search.trial import WorkerPayload
from dpc_tf.search_space import Cell

A = "F:sep3x3@12x12 0:sep3x3@6x6"  # the best, but 1.662e8 branch MAdds: over LIMIT
B = "F:pool@1x1 F:sep3x3@1x1"  # 0.924e8
B_RENUMBERED = "F:sep3x3@1x1 F:pool@1x1"  # the same cell as B (one fingerprint)
C = "F:conv1x1 0:sep3x3@3x3"  # 1.631e8
D = "F:sep3x3@6x3 0:conv1x1"  # 1.637e8
LIMIT = 1.65e8


def _write_results(path, rows):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=results.COLUMNS)
    writer.writeheader()
    for row in rows:
      writer.writerow(dict({c: "" for c in results.COLUMNS}, **row))
  return str(path)


def _row(trial_id, cell, score, status="done", origin="initial"):
  madds = fake_trial.branch_costs(Cell.from_text(cell))[1] if cell != "aspp" else 3.7e8
  return {"trial_id": trial_id, "cell": cell, "status": status, "proxy_miou": score,
          "branch_madds": madds, "origin": origin}


def _other_search(tmp_path):
  """Another search's results.csv: a baseline, a failure, a duplicate and an unscored row."""
  return _write_results(tmp_path / "results.csv", [
      _row(-1, "aspp", 0.99, origin="baseline"), _row(0, "F:conv1x1 F:conv1x1", "", "failed"),
      _row(1, A, 0.9), _row(2, B, 0.8), _row(3, B_RENUMBERED, 0.75), _row(4, C, 0.7),
      _row(5, D, 0.6), _row(6, "F:pool@2x2 0:conv1x1", "")])


def _coordinator(path, warm_path, budget=8):
  algorithm = make_algorithm(num_branches=2, budget=budget, p_uniform=0.0, top_k=2, seed=3,
                             max_branch_madds=LIMIT, warm_start=warm_path, warm_start_cells=2)
  algorithm.cost_fn = fake_trial.branch_costs
  store = Store(path)
  warm_start.pin(store, algorithm)  # what the pipeline does once the store is open
  return Coordinator(store, algorithm)


def test_warm_start_proposes_the_best_allowed_cells_first_then_mutates_them(
    tmp_path, inline_engine):
  other = _other_search(tmp_path)
  rows = warm_start.read_results(other, num_branches=2)
  assert [r.cell.text for r in rows] == [A, B, C, D]  # best first, baseline/dup/unscored out
  assert [r.line for r in rows] == [4, 5, 7, 8]
  whole = _coordinator(str(tmp_path / "a.sqlite"), other)
  inline_engine().run(whole, WorkerPayload(FakeTrial()))
  trials = whole.store.trials()
  assert len(trials) == 8  # the warm cells count in the budget
  assert [(t.cell_text, t.origin) for t in trials[:2]] == [(B, "warm_start"), (C, "warm_start")]
  assert all(t.origin != "warm_start" for t in trials[2:])
  assert trials[2].origin == "mutation" and trials[2].parent in (0, 1)  # p_uniform = 0
  assert len({t.fingerprint for t in trials}) == 8
  assert all(fake_trial.branch_costs(t.cell)[1] <= LIMIT for t in trials)
  # killed after the first warm cell, resumed: the same search, no cell proposed twice
  path = str(tmp_path / "b.sqlite")
  with pytest.raises(KeyboardInterrupt):
    inline_engine(stop_after=1).run(_coordinator(path, other), WorkerPayload(FakeTrial()))
  resumed = _coordinator(path, other)
  inline_engine().run(resumed, WorkerPayload(FakeTrial()))
  assert [(t.cell_text, t.origin, t.parent) for t in resumed.store.trials()] == \
      [(t.cell_text, t.origin, t.parent) for t in trials]
  # the chosen cells are pinned in the store: a later start keeps them though the file changed
  _write_results(tmp_path / "results.csv", [_row(0, D, 0.99)])
  again = _coordinator(path, other)
  assert [c.text for c in again.algorithm.warm_start.chosen(again.algorithm.allowed)] == [B, C]


def test_warm_cells_are_parents_before_any_result_here(tmp_path):
  algorithm = make_algorithm(num_branches=2, budget=8, p_uniform=0.0, top_k=2,
                             warm_start=_other_search(tmp_path), warm_start_cells=2)
  chosen = [Cell.from_text(A).fingerprint(), Cell.from_text(B).fingerprint()]
  suggestion = algorithm.suggest(2, History(seen=set(chosen), observations=[]))
  assert suggestion.origin == "warm_mutation" and suggestion.parent is None
  assert suggestion.cell.fingerprint() not in chosen


def test_a_missing_or_malformed_warm_start_file_is_one_line(tmp_path):
  good = _row(1, B, 0.8)
  cases = [
      (str(tmp_path / "nowhere.csv"), "nowhere.csv does not exist"),
      (_write_results(tmp_path / "badcell.csv", [good, dict(good, cell="F:conv9x9")]),
       r"badcell.csv line 3: cell 'F:conv9x9' is not a cell"),
      (_write_results(tmp_path / "badscore.csv", [dict(good, proxy_miou="high")]),
       r"badscore.csv line 2: proxy_miou 'high' is not a number"),
      (_write_results(tmp_path / "empty.csv", [_row(-1, "aspp", 0.5, origin="baseline")]),
       "empty.csv has no finished searched 2-branch cell"),
  ]
  (tmp_path / "other.csv").write_text("name,score\nx,1\n")
  cases.append((str(tmp_path / "other.csv"), "other.csv is not a search's results.csv: no "
                "column 'cell', 'status', 'proxy_miou', 'origin'"))
  (tmp_path / "short.csv").write_text(",".join(results.COLUMNS) + "\n1,F:conv1x1,done\n")
  cases.append((str(tmp_path / "short.csv"), f"short.csv line 2 has 3 fields, the header {len(results.COLUMNS)}"))
  (tmp_path / "latin1.csv").write_bytes(b"cell,status,proxy_miou,origin\n\xe9,done,1,x\n")
  cases.append((str(tmp_path / "latin1.csv"), "latin1.csv is not UTF-8 text"))
  for path, message in cases:
    with pytest.raises(SearchError, match=message) as error:
      make_algorithm(num_branches=2, warm_start=path)
    assert one_line(error.value).startswith("search_algorithm.warm_start: ")  # what users see
  with pytest.raises(SearchError, match="has no finished .* and a branch_madds"):
    make_algorithm(num_branches=2, objective="pareto",
                   warm_start=_write_results(tmp_path / "nocost.csv",
                                             [dict(good, branch_madds="")]))
  gin.parse_config("search_algorithm.warm_start = 3")
  with pytest.raises(SearchError, match="search_algorithm.warm_start = 3 is not"):
    make_algorithm()
  with pytest.raises(SearchError, match="warm_start_cells must be >= 1"):
    make_algorithm(warm_start=str(tmp_path / "badscore.csv"), warm_start_cells=0)
