"""What a trial scores: a cell, or a baseline head, optionally under one of several seeds.

A search trial scores a Cell. Baselines (`search_pipeline.baselines`) and the re-rank's
repeated seeds need more, without changing what engines ship (one JSON string per trial,
the store's `cell_json`) or what a plain trial function takes:

- a searched cell with no seed travels as the cell's released JSON (a list), as always;
- anything else travels as a JSON object {"baseline": NAME, "cell": [...] or absent,
  "seed": K or absent}. The ASPP head is not a cell: it is the baseline 'aspp' with no cell.

A trial function is called as `fn(cell)` for a plain cell, `fn("aspp")` for the ASPP head,
and with `seed=K` when the subject has a seed (the re-rank's K-th seed; 0 is the configured
one). So every trial function written for cells keeps working; the shipped ones (FakeTrial,
ProxyTrial, RerankTrial) accept "aspp" and `seed`.

Successive halving (algorithm.py's fidelity) adds a work order, `Fidelity`: how many proxy
steps to reach, the poly schedule's horizon (the top rung's steps), the checkpoint folder to
continue from and the one to save to. It travels inside the same JSON string (key
"fidelity", so engines pass it through untouched), is never part of the fingerprint, and
the trial function gets it as keyword arguments `steps=N, schedule_steps=M, start_from=DIR,
save_to=DIR` (FakeTrial and ProxyTrial accept them).

Pure Python: the driver resolves baselines without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional, Sequence, Union

from dpc_tf.search.errors import SearchError
from dpc_tf.search_space import Cell, CellError, as_cell

ASPP = "aspp"  # the baseline that is a DeepLab ASPP head, not a DPC cell
ASPP_FINGERPRINT = "baseline:aspp"


@dataclasses.dataclass(frozen=True)
class Fidelity:
  """A rung's work order (successive halving): train to `steps` (a total, not an increment)
  under a poly schedule over `schedule_steps`, continuing from the checkpoint folder
  `start_from` (None: from scratch), then save the head's state to `save_to` (None: the top
  rung, nothing to continue)."""
  steps: int
  schedule_steps: int
  start_from: Optional[str] = None
  save_to: Optional[str] = None

  def kwargs(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Subject:
  """A cell or the ASPP head, maybe a named baseline, maybe under a seed.

  Duck-types the three Cell methods Store.add reads (fingerprint, text, to_json_string).
  """
  cell: Optional[Cell]  # None: the ASPP head
  baseline: Optional[str] = None  # the name it was configured by ('aspp', 'released', ...)
  seed: Optional[int] = None
  fidelity: Optional[Fidelity] = None  # a rung's work order; not part of the identity

  @property
  def is_aspp(self) -> bool:
    return self.cell is None

  @property
  def argument(self) -> Union[Cell, str]:
    """What the trial function is called with."""
    return ASPP if self.cell is None else self.cell

  def fingerprint(self) -> str:
    base = ASPP_FINGERPRINT if self.cell is None else self.cell.fingerprint()
    return base if self.seed is None else f"{base}#seed{self.seed}"

  @property
  def text(self) -> str:
    return ASPP if self.cell is None else self.cell.text

  def to_json_string(self) -> str:
    if self.baseline is None and self.seed is None and self.fidelity is None:
      return self.cell.to_json_string()
    data = {"baseline": self.baseline}
    if self.cell is not None:
      data["cell"] = self.cell.to_json()
    if self.seed is not None:
      data["seed"] = self.seed
    if self.fidelity is not None:
      data["fidelity"] = self.fidelity.kwargs()
    return json.dumps(data, sort_keys=True)

  def with_seed(self, seed: int) -> "Subject":
    return dataclasses.replace(self, seed=int(seed))

  def with_fidelity(self, fidelity: Optional[Fidelity]) -> "Subject":
    return dataclasses.replace(self, fidelity=fidelity)


def decode(cell_json: str) -> Subject:
  """The Subject a store row's / an engine message's cell_json stands for."""
  data = json.loads(cell_json)
  if isinstance(data, list):
    return Subject(Cell.from_json(data))
  cell = Cell.from_json(data["cell"]) if data.get("cell") is not None else None
  fidelity = Fidelity(**data["fidelity"]) if data.get("fidelity") else None
  return Subject(cell, data.get("baseline"), data.get("seed"), fidelity)


def call_trial(trial_fn, subject: Subject) -> dict:
  """trial_fn(cell or 'aspp'[, seed=K][, steps=N, schedule_steps=M, start_from=..,
  save_to=..]): see the module doc."""
  kwargs = {} if subject.fidelity is None else subject.fidelity.kwargs()
  if subject.seed is not None:
    kwargs["seed"] = subject.seed
  return trial_fn(subject.argument, **kwargs)


def resolve_baseline(spec: str) -> Subject:
  """'aspp', 'released', a cell JSON path or a compact text cell -> its baseline Subject."""
  if not isinstance(spec, str) or not spec.strip():
    raise SearchError(f"search_pipeline.baselines: {spec!r} is not a baseline name, cell "
                      "path or cell text")
  if spec.strip().lower() == ASPP:
    return Subject(None, ASPP)
  try:
    return Subject(as_cell(spec.strip()), spec.strip())
  except CellError as e:
    raise SearchError(f"search_pipeline.baselines: {spec!r} is not 'aspp', 'released', a "
                      f"cell file or a cell: {e}") from None


def resolve_baselines(specs: Sequence[str]) -> list[Subject]:
  """Each spec's Subject, in order; the same cell named twice is refused."""
  subjects, seen = [], {}
  for spec in specs:
    subject = resolve_baseline(spec)
    fingerprint = subject.fingerprint()
    if fingerprint in seen:
      raise SearchError(f"search_pipeline.baselines: {spec!r} is the same cell as "
                        f"{seen[fingerprint]!r}")
    seen[fingerprint] = spec
    subjects.append(subject)
  return subjects
