"""The trial contract between the search and whatever scores a cell.

A trial function is any picklable callable `cell -> score record` (baselines and seeds:
subjects.py): a module-level function,
a functools.partial of one, or an instance of a module-level class. It runs in a worker
process (the local engine's subprocess or a Ray worker, maybe on another machine), so it must
carry its settings with it, as arguments, rather than read driver state.

The score record is a dict with at least the metric (default 'miou', a float, higher is
better); the proxy also gives branch_params, branch_madds, steps and seconds. Gin bindings the
trial's own code reads are re-applied in each worker from the driver's config text
(`WorkerPayload.gin_config`), because gin state is per process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
import time
import traceback
from typing import Callable, Mapping

from dpc_tf.errors import one_line
from dpc_tf.search import subjects
from dpc_tf.search_space import Cell

TrialFn = Callable[[Cell], dict]


class TrialError(RuntimeError):
  """A trial function returned something that is not a score record."""


@dataclasses.dataclass(frozen=True)
class WorkerPayload:
  """Everything a worker needs besides the cell: shipped once per worker, not per trial."""
  trial_fn: TrialFn
  gin_config: str = ""
  metric: str = "miou"


def validate_record(record, metric: str = "miou") -> dict:
  """The record as a plain dict with a float metric, or TrialError saying what is wrong."""
  if not isinstance(record, Mapping):
    raise TrialError(f"the trial function returned {type(record).__name__}, expected a dict "
                     f"with at least {metric!r}")
  if metric not in record:
    raise TrialError(f"the trial's score record has no {metric!r} (keys: "
                     f"{', '.join(sorted(map(str, record))) or 'none'})")
  value = record[metric]
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    try:
      value = float(value)  # numpy scalars, 0-d arrays
    except (TypeError, ValueError):
      raise TrialError(f"the trial's {metric!r} is {value!r}, not a number") from None
  out = dict(record)
  out[metric] = float(value)
  return out


def score_of(record: Mapping, metric: str = "miou") -> float:
  """The metric as a float; NaN (never ranked) when it is missing or not finite."""
  try:
    value = float(record[metric])
  except (KeyError, TypeError, ValueError):
    return math.nan
  return value if math.isfinite(value) else math.nan


def describe_exception(error: BaseException) -> str:
  """One line for logs and the CSV (see headline), then the traceback for the store."""
  first = f"{type(error).__name__}: {one_line(error)}"
  return first[:500] + "\n\n" + "".join(traceback.format_exception(error))[-4000:]


def headline(error_text) -> str:
  """The one-line headline of a stored trial error (describe_exception's first line)."""
  return error_text.splitlines()[0] if error_text else "unknown error"


_APPLIED_GIN: set[str] = set()
_LOGGING_READY = False


def setup_child_logging() -> None:
  """absl INFO lines on stderr in a worker or stage subprocess (no app.run there), so that
  a long stage (pretraining, caching, a trial) shows its progress in the driver's output."""
  global _LOGGING_READY
  if _LOGGING_READY:
    return
  from absl import flags, logging  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  _LOGGING_READY = True


def apply_gin(gin_config: str) -> None:
  """Applies the driver's gin config in this process, once (idempotent).

  The config's `import` lines register the configurables it binds (unpickling the trial
  function imported its own module already); bindings of configurables this process never
  imports (the driver's search_pipeline.*, engines) are skipped.
  """
  setup_child_logging()
  if not gin_config:
    return
  key = hashlib.sha256(gin_config.encode()).hexdigest()
  if key in _APPLIED_GIN:
    return
  import gin  # pylint: disable=import-outside-toplevel
  gin.clear_config()
  gin.parse_config(gin_config, skip_unknown=True)
  _APPLIED_GIN.clear()
  _APPLIED_GIN.add(key)


def prepare_worker(payload: WorkerPayload) -> None:
  apply_gin(payload.gin_config)


def execute(payload: WorkerPayload, cell_json: str) -> tuple[dict, float]:
  """Runs one trial in this process: (validated record, seconds inside the trial function)."""
  prepare_worker(payload)
  subject = subjects.decode(cell_json)
  start = time.perf_counter()
  record = subjects.call_trial(payload.trial_fn, subject)
  seconds = time.perf_counter() - start
  return validate_record(record, payload.metric), seconds


def pack_size(trial_fn) -> int:
  """Cells one worker call takes: the trial function's `cells_per_program` (default 1)."""
  size = getattr(trial_fn, "cells_per_program", 1)
  return size if isinstance(size, int) and size >= 1 else 1


def execute_pack(payload: WorkerPayload, cell_jsons: list[str]) -> list[tuple]:
  """Runs the cells of one worker call: ('done', record, seconds) or ('error', text,
  seconds) per cell, in order; one cell's failure is that cell's alone.

  A trial function with `run_pack(subjects) -> [record or exception]` trains them together
  (the proxy's cells_per_program, ProxyTrial.run_pack) and each cell is charged its share of
  the call's time (_time_shares); otherwise, or for a single cell, they run one after
  another.
  """
  if len(cell_jsons) == 1 or not hasattr(payload.trial_fn, "run_pack"):
    results = []
    for cell_json in cell_jsons:
      start = time.perf_counter()
      try:
        results.append(("done",) + execute(payload, cell_json))
      except Exception as e:  # pylint: disable=broad-except
        results.append(("error", describe_exception(e), time.perf_counter() - start))
    return results
  start = time.perf_counter()
  try:
    prepare_worker(payload)
    outcomes = payload.trial_fn.run_pack([subjects.decode(c) for c in cell_jsons])
    if len(outcomes) != len(cell_jsons):
      raise TrialError(f"run_pack returned {len(outcomes)} results for {len(cell_jsons)} cells")
  except Exception as e:  # pylint: disable=broad-except
    outcomes = [e] * len(cell_jsons)
  shares = _time_shares(outcomes)
  call_seconds = time.perf_counter() - start
  results = []
  for outcome, share in zip(outcomes, shares):
    seconds = call_seconds * share
    try:
      if isinstance(outcome, BaseException):
        raise outcome
      results.append(("done", validate_record(outcome, payload.metric), seconds))
    except Exception as e:  # pylint: disable=broad-except
      results.append(("error", describe_exception(e), seconds))
  return results


def _time_shares(outcomes: list) -> list[float]:
  """Each cell's fraction of a pack's time: in proportion to the `seconds` its record
  claims (packed heads that trained more steps claim more), equal where any cannot say."""
  claims = [o.get("seconds") if isinstance(o, Mapping) else None for o in outcomes]
  if all(isinstance(c, numbers.Real) and not isinstance(c, bool) and c >= 0 for c in claims):
    total = float(sum(claims))
    if total > 0:
      return [c / total for c in claims]
  return [1.0 / len(outcomes)] * len(outcomes)
