"""The algorithm: never repeats a cell, keeps its uniform/mutation mix, is deterministic."""

import math

import pytest

from dpc_tf.search.algorithm import History, Observation, RandomSearch, make_algorithm
from dpc_tf.search.errors import SearchError
from dpc_tf.search.fake_trial import fake_miou
from dpc_tf.search_space import Cell, space_size


def simulate(algorithm: RandomSearch, count: int, seen=()):
  """Suggests `count` cells, scoring each at once with the fake score (one worker)."""
  seen, observations, suggestions = set(seen), [], []
  for index in range(count):
    suggestion = algorithm.suggest(index, History(seen, observations))
    seen.add(suggestion.cell.fingerprint())
    observations.append(Observation(index, suggestion.cell, fake_miou(suggestion.cell)))
    suggestions.append(suggestion)
  return suggestions


def test_never_repeats_a_cell_including_seen_ones():
  algorithm = RandomSearch(num_branches=2, budget=400, p_uniform=0.2, top_k=3, seed=1)
  pre_seen = [s.cell.fingerprint() for s in simulate(RandomSearch(num_branches=2, seed=99), 50)]
  suggestions = simulate(algorithm, 400, seen=pre_seen)
  fingerprints = [s.cell.fingerprint() for s in suggestions]
  assert len(set(fingerprints)) == 400
  assert not set(fingerprints) & set(pre_seen)


def test_exhausts_a_tiny_space_then_says_so():
  # One branch: 81 cells, all different; the 82nd suggestion has nothing left.
  assert space_size(1) == 81
  algorithm = RandomSearch(num_branches=1, budget=81, p_uniform=0.5, top_k=5, seed=0,
                           max_draws=200)
  suggestions = simulate(algorithm, 81)
  assert len({s.cell.fingerprint() for s in suggestions}) == 81
  seen = {s.cell.fingerprint() for s in suggestions}
  with pytest.raises(SearchError, match="exhausted"):
    algorithm.suggest(81, History(seen, []))


def test_sampling_mix_matches_p_and_mutations_come_from_the_top_k():
  p, n, k = 0.3, 2000, 4
  algorithm = RandomSearch(num_branches=5, budget=n, p_uniform=p, top_k=k, seed=7)
  seen, observations, origins = set(), [], []
  for index in range(n):
    top_ids = {o.index for o in algorithm.top(observations)}
    suggestion = algorithm.suggest(index, History(seen, observations))
    origins.append(suggestion.origin)
    if suggestion.origin == "mutation":
      assert suggestion.parent in top_ids
      parent = observations[suggestion.parent].cell
      assert suggestion.cell.fingerprint() != parent.fingerprint()
    seen.add(suggestion.cell.fingerprint())
    observations.append(Observation(index, suggestion.cell, fake_miou(suggestion.cell)))
  assert origins[0] == "initial" and origins.count("initial") == 1
  drawn = [o for o in origins[1:] if o in ("uniform", "mutation", "fallback")]
  uniform_fraction = drawn.count("uniform") / len(drawn)
  # Binomial standard deviation sqrt(0.3 * 0.7 / 2000) = 0.010: allow 4 of them.
  assert abs(uniform_fraction - p) < 0.041, uniform_fraction
  assert origins.count("fallback") < 0.01 * n


def test_sampling_near_the_best_beats_uniform_sampling():
  near = simulate(RandomSearch(num_branches=5, budget=300, p_uniform=0.2, top_k=5, seed=3), 300)
  uniform = simulate(RandomSearch(num_branches=5, budget=300, p_uniform=1.0, seed=3), 300)
  best_near = max(fake_miou(s.cell) for s in near)
  best_uniform = max(fake_miou(s.cell) for s in uniform)
  assert best_near > best_uniform


def test_deterministic_given_seed_and_history():
  a = simulate(RandomSearch(seed=11, top_k=3), 60)
  b = simulate(RandomSearch(seed=11, top_k=3), 60)
  c = simulate(RandomSearch(seed=12, top_k=3), 60)
  assert [s.cell.text for s in a] == [s.cell.text for s in b]
  assert [(s.origin, s.parent) for s in a] == [(s.origin, s.parent) for s in b]
  assert [s.cell.text for s in a] != [s.cell.text for s in c]


def test_each_suggestion_depends_only_on_seed_index_and_history():
  """A 'resumed' algorithm object makes suggestion 40 exactly like the original one."""
  algorithm = RandomSearch(seed=5, top_k=3)
  suggestions = simulate(algorithm, 41)
  seen = {s.cell.fingerprint() for s in suggestions[:40]}
  observations = [Observation(i, s.cell, fake_miou(s.cell)) for i, s in enumerate(suggestions[:40])]
  fresh = RandomSearch(seed=5, top_k=3)
  again = fresh.suggest(40, History(seen, observations))
  assert again.cell.text == suggestions[40].cell.text
  assert (again.origin, again.parent) == (suggestions[40].origin, suggestions[40].parent)


def test_top_k_ignores_nan_and_breaks_ties_by_index():
  cell = Cell.from_text("F:conv1x1")
  algorithm = RandomSearch(num_branches=1, top_k=2)
  observations = [Observation(0, cell, 0.5), Observation(1, cell, math.nan),
                  Observation(2, cell, 0.7), Observation(3, cell, 0.5)]
  assert [o.index for o in algorithm.top(observations)] == [2, 0]


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 0}, "budget"), ({"p_uniform": 1.5}, "p_uniform"), ({"top_k": 0}, "top_k"),
    ({"num_branches": 0}, "num_branches")])
def test_bad_settings_are_one_line_errors(kwargs, message):
  with pytest.raises(SearchError, match=message) as info:
    RandomSearch(**kwargs)
  assert "\n" not in str(info.value)


def test_gin_factory():
  import gin  # pylint: disable=import-outside-toplevel
  gin.parse_config("search_algorithm.budget = 7\nsearch_algorithm.p_uniform = 0.25\n"
                   "search_algorithm.top_k = 3\nsearch_algorithm.num_branches = 4\n"
                   "search_algorithm.seed = 9")
  algorithm = make_algorithm()
  assert (algorithm.budget, algorithm.p_uniform, algorithm.top_k, algorithm.num_branches,
          algorithm.seed) == (7, 0.25, 3, 4, 9)
  assert make_algorithm(budget=3).budget == 3  # --budget overrides the config
