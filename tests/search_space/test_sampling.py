import collections
import math
import random

import pytest
from hypothesis import given, settings, strategies as st

from dpc_tf import search_space as ss
from dpc_tf.search_space import Cell


def test_space_size_matches_the_paper():
  assert ss.space_size(5) == 418_414_128_120
  assert ss.space_size(1) == 81
  assert ss.space_size(3) == 6 * 81 ** 3
  with pytest.raises(ss.CellError, match="num_branches must be >= 1"):
    ss.space_size(0)


def test_enumeration_of_tiny_spaces_matches_the_count():
  ops = ss.ALL_OPERATORS[:3]
  cells = list(ss.enumerate_cells(3, ops))
  assert len(cells) == ss.space_size(3, len(ops)) == math.factorial(3) * 27
  assert len({c.text for c in cells}) == len(cells)
  unique = list(ss.enumerate_cells(3, ops, unique=True))
  assert len(unique) == len({c.fingerprint() for c in cells}) < len(cells)
  # Two 1x1 branches from the features, or a chain: exactly 2 shapes of 2-branch trees.
  assert len(list(ss.enumerate_cells(2, ss.ALL_OPERATORS[:1], unique=True))) == 2


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), branches=st.integers(1, 7))
def test_sampled_and_mutated_cells_are_valid(seed, branches):
  rng = random.Random(seed)
  cell = ss.sample_cell(rng, branches)
  assert len(cell) == branches
  ss.validate(cell.branches)
  assert Cell.from_json(cell.to_json()) == cell
  neighbour = ss.mutate_cell(cell, rng)
  ss.validate(neighbour.branches)
  changed = [i for i, (a, b) in enumerate(zip(cell, neighbour)) if a != b]
  assert len(changed) == 1
  assert neighbour.fingerprint() != cell.fingerprint()
  a, b = cell.branches[changed[0]], neighbour.branches[changed[0]]
  if a.input == b.input and type(a.op) is type(b.op) and not isinstance(a.op, ss.Conv1x1):
    # A component move or another op of the same kind: differs somewhere.
    assert a.op != b.op


def test_sampling_is_uniform_over_inputs_and_operators():
  rng = random.Random(0)
  cells = [ss.sample_cell(rng, 3) for _ in range(6000)]
  inputs = collections.Counter(c.branches[2].input for c in cells)
  assert set(inputs) == {-1, 0, 1}
  assert all(abs(n / 6000 - 1 / 3) < 0.03 for n in inputs.values())
  kinds = collections.Counter(type(c.branches[0].op).__name__ for c in cells)
  assert abs(kinds["SeparableConv3x3"] / 6000 - 64 / 81) < 0.02
  assert abs(kinds["PyramidPooling"] / 6000 - 16 / 81) < 0.02


def test_sampling_is_deterministic_by_seed():
  a = [ss.sample_cell(random.Random(7)).text for _ in range(3)]
  b = [ss.sample_cell(random.Random(7)).text for _ in range(3)]
  assert a == b


def test_mutation_uses_every_kind_of_move():
  rng = random.Random(1)
  cell = Cell.from_text("F:sep3x3@6x6 0:pool@2x2 1:conv1x1")
  moves = collections.Counter()
  for _ in range(300):
    n = ss.mutate_cell(cell, rng)
    i = next(i for i, (a, b) in enumerate(zip(cell, n)) if a != b)
    a, b = cell.branches[i], n.branches[i]
    if a.input != b.input:
      moves["input"] += 1
    elif type(a.op) is type(b.op) and sum(x != y for x, y in zip(
        a.op.rate if hasattr(a.op, "rate") else a.op.grid,
        b.op.rate if hasattr(b.op, "rate") else b.op.grid)) == 1:
      moves["component_or_op"] += 1
    else:
      moves["operator"] += 1
  assert moves["input"] > 30 and moves["operator"] > 30 and moves["component_or_op"] > 30


def test_mutation_of_a_single_conv_gives_up_clearly():
  with pytest.raises(ss.CellError, match="no distinct neighbour"):
    ss.mutate_cell(Cell.from_text("F:conv1x1"), random.Random(0), operators=[ss.Conv1x1()])
