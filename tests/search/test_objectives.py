"""Objectives and constraints: the Pareto front, the cell distance, the diverse re-rank set,
cost limits that are never broken, and Pareto mutation parents."""

import random

import pytest

from dpc_tf.search import objectives
from dpc_tf.search.algorithm import History, Observation, RandomSearch
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.errors import SearchError
from dpc_tf.search.fake_trial import FakeTrial, branch_costs
from dpc_tf.search.store import Store
from dpc_tf.search.subjects import Subject
from dpc_tf.search_space import Cell, mutate_cell, sample_cell


def _brute_force_ranks(points):
  def dominates(a, b):
    return a[0] >= b[0] and a[1] <= b[1] and a != b
  ranks, left, rank = [0] * len(points), set(range(len(points))), 0
  while left:
    rank += 1
    front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
    for i in front:
      ranks[i] = rank
    left -= front
  return ranks


def test_pareto_ranks_on_hand_made_points():
  points = [(0.5, 100), (0.6, 200), (0.55, 150), (0.4, 50), (0.5, 120), (0.6, 250), (0.7, 300),
            (0.5, 100), (0.3, 400)]
  # (0.5, 120) is dominated by (0.5, 100), (0.6, 250) by (0.6, 200); equal points share rank 1;
  # (0.3, 400) by everything cheaper and better, and it is behind (0.5, 120) and (0.6, 250).
  assert objectives.pareto_ranks(points) == [1, 1, 1, 1, 2, 2, 1, 1, 3]
  rng = random.Random(0)
  for _ in range(50):
    pts = [(rng.choice([0.1, 0.2, 0.3, rng.random()]), rng.choice([1, 2, 3, rng.randrange(10)]))
           for _ in range(rng.randrange(1, 25))]
    assert objectives.pareto_ranks(pts) == _brute_force_ranks(pts)


def test_pareto_order_is_front_then_neighbours():
  obs = [Observation(i, None, s, m) for i, (s, m) in enumerate(
      [(0.5, 100), (0.9, 900), (0.45, 120), (0.8, 950), (0.3, 50), (0.6, None)])]
  ordered = objectives.order(obs, "pareto", lambda o: o.score, lambda o: o.madds,
                             lambda o: o.index)
  # front {0.9@900, 0.5@100, 0.3@50} by score, then {0.8@950, 0.45@120}; no cost: left out
  assert [o.index for o in ordered] == [1, 0, 4, 3, 2]
  assert [o.index for o in objectives.order(obs, "miou", lambda o: o.score, lambda o: o.madds,
                                            lambda o: o.index)] == [1, 3, 5, 0, 2, 4]
  with pytest.raises(SearchError, match="objective = 'mAP'"):
    RandomSearch(objective="mAP")


def test_cell_distance():
  d = objectives.cell_distance
  a = Cell.from_text("F:conv1x1 F:sep3x3@3x3 1:pool@2x2")
  assert d(a, Cell.from_text("F:sep3x3@3x3 F:conv1x1 0:pool@2x2")) == 0  # renumbered
  assert d(a, Cell.from_text("F:conv1x1 F:sep3x3@3x6 1:pool@2x2")) == 1  # one operator
  assert d(a, Cell.from_text("F:conv1x1 F:sep3x3@3x3 0:pool@2x2")) == 1  # one input
  assert d(a, Cell.from_text("F:conv1x1 F:sep3x3@3x3")) == 1  # one branch fewer
  assert d(a, Cell.from_text("F:pool@1x1 0:pool@1x1 1:pool@1x1")) == 3
  rng = random.Random(1)
  cells = [sample_cell(rng, 4) for _ in range(12)]
  for x in cells:
    assert d(x, x.canonical()) == 0 and d(x, mutate_cell(x, rng)) <= 1
    for y in cells:
      assert d(x, y) == d(y, x)
      for z in cells[:4]:
        assert d(x, z) <= d(x, y) + d(y, z)


def test_diverse_set_keeps_distance_and_is_greedy():
  rng = random.Random(2)
  base = [sample_cell(rng, 5) for _ in range(6)]
  items = [c for b in base for c in (b, mutate_cell(b, rng), mutate_cell(b, rng))]
  for min_distance in (0, 1, 2, 3):
    kept = objectives.diverse(items, 5, min_distance, lambda c: c)
    assert len(kept) == min(5, len(kept)) and kept[0] is items[0]
    for i, x in enumerate(kept):
      assert all(objectives.cell_distance(x, y) >= min_distance for y in kept[i + 1:])
    last = items.index(kept[-1])
    for skipped in (c for c in items[:last] if c not in kept):  # skipped: too close to one kept
      assert any(objectives.cell_distance(skipped, k) < min_distance for k in kept)
  assert objectives.diverse(items, 5, 0, lambda c: c) == items[:5]


def _suggest_many(search: RandomSearch, count: int) -> list:
  """Suggestions with FakeTrial scores fed back, as a one-worker search makes them."""
  seen, observations, out = set(), [], []
  for index in range(count):
    suggestion = search.suggest(index, History(seen, observations))
    seen.add(suggestion.cell.fingerprint())
    record = FakeTrial()(suggestion.cell)
    observations.append(Observation(index, suggestion.cell, record["miou"],
                                    record["branch_madds"]))
    out.append(suggestion)
  return out


def _check_constraint_holds(seed: int, limit: float, objective: str, kind: str) -> None:
  search = RandomSearch(num_branches=4, budget=40, top_k=4, seed=seed, objective=objective,
                        cost_fn=branch_costs, **{kind: limit})
  for suggestion in _suggest_many(search, 25):
    params, madds = branch_costs(suggestion.cell)
    assert (madds if kind == "max_branch_madds" else params) <= limit, suggestion


try:
  from hypothesis import given, settings, strategies as st

  @settings(max_examples=25, deadline=None)
  @given(seed=st.integers(0, 10**6), limit=st.floats(1.2e8, 4.5e8),
         objective=st.sampled_from(["miou", "pareto"]))
  def test_the_madds_limit_is_never_broken(seed, limit, objective):
    _check_constraint_holds(seed, limit, objective, "max_branch_madds")

except ImportError:  # no hypothesis: the same property over a seeded loop
  def test_the_madds_limit_is_never_broken():
    rng = random.Random(0)
    for seed in range(25):
      _check_constraint_holds(seed, rng.uniform(1.2e8, 4.5e8), rng.choice(["miou", "pareto"]),
                              "max_branch_madds")


def test_the_params_limit_and_an_impossible_limit():
  for seed in range(5):
    _check_constraint_holds(seed, 3.0e5, "miou", "max_branch_params")
  impossible = RandomSearch(num_branches=5, seed=0, max_branch_madds=1.0, cost_fn=branch_costs,
                            max_draws=300)
  with pytest.raises(SearchError, match=r"no untried 5-branch cell within max_branch_madds = 1 "
                                        r"was found in 300 draws"):
    impossible.suggest(0, History(set(), []))
  with pytest.raises(SearchError, match="need the trial function's analytic costs"):
    RandomSearch(max_branch_madds=1e8).suggest(0, History(set(), []))


def test_pareto_parents_come_from_the_front_and_baselines_never_parent(tmp_path):
  search = RandomSearch(num_branches=4, budget=30, top_k=3, seed=3, objective="pareto",
                        p_uniform=0.3)
  store = Store(str(tmp_path / "t.sqlite"))
  aspp = Subject(None, "aspp")
  coordinator = Coordinator(store, search, baselines=[aspp])
  trial_fn = FakeTrial()
  while not coordinator.finished():
    trial = coordinator.next_trial()
    record = trial_fn(trial.subject.argument)
    if trial.is_baseline:
      record["miou"] = 0.99  # the best score of all: still never a parent
    coordinator.complete(trial.id, record, 0.0)
  assert store.counts(baselines=False)["done"] == 30 and store.get(-1).status == "done"
  trials = store.trials("done")
  mutations = [t for t in trials if t.origin == "mutation"]
  assert len(mutations) > 5
  for trial in mutations:
    before = [Observation(t.id, t.cell, t.score, t.record["branch_madds"])
              for t in trials if 0 <= t.id < trial.id]
    assert trial.parent in [o.index for o in search.top(before)]
  assert all(o.index >= 0 for o in coordinator.history().observations)
