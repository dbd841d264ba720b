"""Sampling, mutation, counting and enumeration of cells.

The space counts labelled cells: branch i (0-based) picks one of i + 1 inputs and one of 81
operators, so a B-branch space holds B! * 81^B cells (418,414,128,120 for B = 5).
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Iterator, Sequence

from dpc_tf.search_space import operators as ops_lib
from dpc_tf.search_space.cell import FEATURES, Branch, Cell
from dpc_tf.search_space.operators import CellError, Operator


def space_size(num_branches: int = 5, num_operators: int = ops_lib.NUM_OPERATORS) -> int:
  if num_branches < 1:
    raise CellError(f"num_branches must be >= 1, got {num_branches}")
  return math.factorial(num_branches) * num_operators ** num_branches


def sample_cell(rng: random.Random, num_branches: int = 5,
                operators: Sequence[Operator] = ops_lib.ALL_OPERATORS) -> Cell:
  """A cell drawn uniformly from the labelled space."""
  if num_branches < 1:
    raise CellError(f"num_branches must be >= 1, got {num_branches}")
  return Cell(tuple(Branch(rng.randrange(-1, i), rng.choice(operators))
                    for i in range(num_branches)))


def _neighbour_ops(op: Operator) -> list[Operator]:
  """Operators that differ from `op` in exactly one rate or grid component."""
  if isinstance(op, ops_lib.SeparableConv3x3):
    return ([ops_lib.SeparableConv3x3(r, op.rate_w) for r in ops_lib.RATES if r != op.rate_h]
            + [ops_lib.SeparableConv3x3(op.rate_h, r) for r in ops_lib.RATES if r != op.rate_w])
  if isinstance(op, ops_lib.PyramidPooling):
    return ([ops_lib.PyramidPooling(g, op.grid_w) for g in ops_lib.GRIDS if g != op.grid_h]
            + [ops_lib.PyramidPooling(op.grid_h, g) for g in ops_lib.GRIDS if g != op.grid_w])
  return []


def mutate_cell(cell: Cell, rng: random.Random, max_tries: int = 100,
                operators: Sequence[Operator] = ops_lib.ALL_OPERATORS) -> Cell:
  """A valid neighbour differing from `cell` in one branch.

  One branch changes its input, its operator, or one rate/grid component, each kind of move
  equally likely among those possible. Moves that give a cell equivalent to the original
  (same canonical form) are rejected and redrawn.
  """
  original = cell.fingerprint()
  for _ in range(max_tries):
    i = rng.randrange(len(cell))
    branch = cell.branches[i]
    moves = []
    if i > 0:
      moves.append("input")
    if len(operators) > 1:
      moves.append("operator")
    if _neighbour_ops(branch.op):
      moves.append("component")
    if not moves:
      continue
    move = rng.choice(moves)
    if move == "input":
      new = Branch(rng.choice([s for s in range(FEATURES, i) if s != branch.input]), branch.op)
    elif move == "operator":
      new = Branch(branch.input, rng.choice([o for o in operators if o != branch.op]))
    else:
      new = Branch(branch.input, rng.choice(_neighbour_ops(branch.op)))
    candidate = cell.replace_branch(i, new)
    if candidate.fingerprint() != original:
      return candidate
  raise CellError(f"no distinct neighbour of {cell.text} found in {max_tries} tries")


def enumerate_cells(num_branches: int,
                    operators: Sequence[Operator] = ops_lib.ALL_OPERATORS,
                    unique: bool = False) -> Iterator[Cell]:
  """Every labelled cell of a (tiny) space; with unique=True one per canonical form."""
  seen = set()
  inputs = [range(FEATURES, i) for i in range(num_branches)]
  for sources in itertools.product(*inputs):
    for chosen in itertools.product(operators, repeat=num_branches):
      cell = Cell(tuple(Branch(s, o) for s, o in zip(sources, chosen)))
      if unique:
        key = cell.fingerprint()
        if key in seen:
          continue
        seen.add(key)
      yield cell
