"""Dense Prediction Cells: branches, validation, the released JSON format, text, hashing.

A cell is a list of branches in order. Branch i reads `input` = -1 (the backbone features)
or the output of an earlier branch k (0 <= k < i), applies one operator, and every branch
output goes into the final concat.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Sequence

from dpc_tf.search_space import operators as ops_lib
from dpc_tf.search_space.operators import CellError, Operator
from dpc_tf.utils.files import write_text_atomic

FEATURES = -1
DEFAULT_NUM_BRANCHES = 5
_JSON_KEYS = {"op", "kernel", "rate", "grid_size", "input"}


class _JsonObject(dict):
  """A JSON object that remembers the keys it saw twice (json keeps the last silently)."""
  duplicated: tuple = ()


def _object(pairs) -> dict:
  obj = _JsonObject(pairs)
  if len(obj) != len(pairs):
    seen, duplicated = set(), set()
    for key, _ in pairs:
      (duplicated if key in seen else seen).add(key)
    obj.duplicated = tuple(duplicated)
  return obj


def _parse_json(text) -> object:
  """The cell's JSON text or bytes; one-line CellError for non-UTF-8, bad or deep JSON."""
  try:
    if isinstance(text, bytes):
      text = text.decode("utf-8")
    return json.loads(text, object_pairs_hook=_object)
  except UnicodeDecodeError as e:
    raise CellError(f"cell is not UTF-8 text (byte {e.start})") from None
  except json.JSONDecodeError as e:
    raise CellError(f"cell is not valid JSON: {e}") from None
  except RecursionError:
    raise CellError("cell JSON is nested too deeply") from None


@dataclasses.dataclass(frozen=True)
class Branch:
  input: int
  op: Operator

  def to_json(self) -> dict:
    return {**self.op.to_json(), "input": self.input}

  @property
  def text(self) -> str:
    source = "F" if self.input == FEATURES else str(self.input)
    return f"{source}:{self.op.text}"


@dataclasses.dataclass(frozen=True)
class Cell:
  """An immutable, validated DPC. Build it from branches, JSON or text."""
  branches: tuple[Branch, ...]

  def __post_init__(self):
    object.__setattr__(self, "branches", tuple(self.branches))
    validate(self.branches)

  def __len__(self) -> int:
    return len(self.branches)

  def __iter__(self):
    return iter(self.branches)

  # --- Released DeepLab JSON format -------------------------------------------------------
  def to_json(self) -> list[dict]:
    return [b.to_json() for b in self.branches]

  def to_json_string(self) -> str:
    """One line, as the released dense_prediction_cell_branch5_top1_cityscapes.json."""
    return json.dumps(self.to_json())

  @classmethod
  def from_json(cls, data) -> "Cell":
    if isinstance(data, (str, bytes)):
      data = _parse_json(data)
    if not isinstance(data, list):
      raise CellError(f"a cell must be a JSON list of branch objects, got {type(data).__name__}")
    if not data:
      raise CellError("the cell is empty: it needs at least one branch")
    branches = []
    for i, obj in enumerate(data):
      if not isinstance(obj, dict):
        raise CellError(f"branch {i}: expected a JSON object, got {obj!r}")
      duplicated = getattr(obj, "duplicated", ())
      if duplicated:
        raise CellError(f"branch {i}: duplicated key(s) {', '.join(sorted(duplicated))}")
      unknown = sorted(set(obj) - _JSON_KEYS)
      if unknown:
        raise CellError(f"branch {i}: unknown key(s) {', '.join(unknown)}")
      if "input" not in obj:
        raise CellError(f"branch {i}: missing 'input'")
      try:
        op = ops_lib.operator_from_json(obj)
      except CellError as e:
        raise CellError(f"branch {i}: {e}") from None
      branches.append(Branch(obj["input"], op))
    return cls(tuple(branches))

  @classmethod
  def load(cls, path: str) -> "Cell":
    try:
      with open(path, "rb") as f:
        text = f.read()
    except OSError as e:
      raise CellError(f"cannot read cell file {path}: {e.strerror}") from None
    try:
      return cls.from_json(text)
    except CellError as e:
      raise CellError(f"{path}: {e}") from None

  def save(self, path: str) -> None:
    """Writes the released JSON format atomically (a crash never leaves half a file)."""
    write_text_atomic(path, self.to_json_string() + "\n")

  # --- Compact text form, e.g. "F:sep3x3@1x6 0:sep3x3@18x15 1:pool@2x2" ------------------
  @property
  def text(self) -> str:
    return " ".join(b.text for b in self.branches)

  def __str__(self) -> str:
    return self.text

  @classmethod
  def from_text(cls, text: str) -> "Cell":
    tokens = text.split()
    if not tokens:
      raise CellError("the cell is empty: it needs at least one branch")
    branches = []
    for i, token in enumerate(tokens):
      source, sep, op_text = token.partition(":")
      if not sep:
        raise CellError(f"branch {i}: {token!r} is not INPUT:OP (e.g. F:sep3x3@1x6)")
      if source == "F":
        source_index = FEATURES
      elif source.isdigit():
        source_index = int(source)
      else:
        raise CellError(f"branch {i}: input {source!r} is not F or a branch number")
      try:
        branches.append(Branch(source_index, ops_lib.operator_from_text(op_text)))
      except CellError as e:
        raise CellError(f"branch {i}: {e}") from None
    return cls(tuple(branches))

  # --- Canonical form and hash ------------------------------------------------------------
  def canonical(self) -> "Cell":
    """The representative of this cell's equivalence class.

    Each branch has exactly one input, so a cell is a tree rooted at the features with an
    operator on every node; the concat takes every node. Two cells that differ only by the
    order of independent branches compute the same function (up to a permutation of the
    projection's input channels), so they share one canonical form: nodes are renumbered in
    a pre-order walk whose children are sorted by their subtree's signature.
    """
    children: dict[int, list[int]] = {FEATURES: []}
    for i, branch in enumerate(self.branches):
      children.setdefault(i, [])
      children[branch.input].append(i)
    signature: dict[int, str] = {}
    for i in reversed(range(len(self.branches))):  # children come after their parent
      subtrees = sorted(signature[c] for c in children[i])
      signature[i] = f"{self.branches[i].op.index}({','.join(subtrees)})"
    order: list[int] = []
    stack = sorted(children[FEATURES], key=lambda c: signature[c], reverse=True)
    while stack:
      node = stack.pop()
      order.append(node)
      stack.extend(sorted(children[node], key=lambda c: signature[c], reverse=True))
    renumber = {FEATURES: FEATURES, **{old: new for new, old in enumerate(order)}}
    return Cell(tuple(Branch(renumber[self.branches[old].input], self.branches[old].op)
                      for old in order))

  def fingerprint(self) -> str:
    """Stable 16-hex-digit hash of the canonical form, for de-duplication."""
    canonical = self.canonical().to_json_string()
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]

  def replace_branch(self, index: int, branch: Branch) -> "Cell":
    branches = list(self.branches)
    branches[index] = branch
    return Cell(tuple(branches))


def as_cell(value) -> Cell:
  """The one Cell-from-anything converter (flags, gin values, layer configs):

  a Cell; None or "released" (the paper's Cityscapes cell); a path to a cell JSON file
  (ends in .json, or exists); released JSON (a list, or a string starting with '['); or
  the compact text form. Invalid input raises CellError naming what is wrong.
  """
  if isinstance(value, Cell):
    return value
  if value is None or value == "released":
    from dpc_tf.search_space.released import CITYSCAPES_CELL  # pylint: disable=import-outside-toplevel
    return CITYSCAPES_CELL
  if isinstance(value, os.PathLike) or (isinstance(value, str) and (
      value.endswith(".json") or os.path.isfile(value))):
    return Cell.load(os.fspath(value))
  if isinstance(value, str) and not value.lstrip().startswith("["):
    return Cell.from_text(value)
  return Cell.from_json(value if isinstance(value, str) else list(value))


def validate(branches: Sequence[Branch]) -> None:
  """Raises CellError naming the first bad branch and what is wrong with it."""
  if not isinstance(branches, (list, tuple)):
    raise CellError(f"branches must be a sequence, got {type(branches).__name__}")
  if not branches:
    raise CellError("the cell is empty: it needs at least one branch")
  for i, branch in enumerate(branches):
    if not isinstance(branch, Branch):
      raise CellError(f"branch {i}: expected a Branch, got {type(branch).__name__}")
    source = branch.input
    if not isinstance(source, int) or isinstance(source, bool):
      raise CellError(f"branch {i}: input must be an integer, got {source!r}")
    allowed = "-1 (the features)" + (f" or an earlier branch 0..{i - 1}" if i else "")
    if source == i:
      raise CellError(f"branch {i}: input {source} refers to the branch itself "
                      f"(allowed: {allowed})")
    if source > i:
      raise CellError(f"branch {i}: input {source} is a forward reference (allowed: {allowed})")
    if source < FEATURES:
      raise CellError(f"branch {i}: input {source} is out of range (allowed: {allowed})")
    if not isinstance(branch.op, (ops_lib.Conv1x1, ops_lib.SeparableConv3x3,
                                  ops_lib.PyramidPooling)):
      raise CellError(f"branch {i}: unknown operator {branch.op!r}")
