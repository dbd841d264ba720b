"""The one guard every training loop (full training, proxy trial, pretraining) runs per step.

It runs on the host after the step, on values the step returned, so it costs one scalar
read and works the same under tf.distribute, XLA and float16 loss scaling. A step that
diverged, or that saw labels breaking dpc_tf.data.metrics' rule, stops the loop before
anything after it is saved; the caller's `advice` says what was kept and what to change.
"""

from __future__ import annotations

import math
from typing import Callable, Union

from dpc_tf.data.specs import IGNORE_LABEL
from dpc_tf.training.errors import BadLabelError, NonFiniteLossError


def check_labels(bad_labels: float, num_classes: int, where: str) -> None:
  """Refuses pixels whose label is neither a class id 0..C-1 nor IGNORE_LABEL."""
  if bad_labels:
    raise BadLabelError(
        f"{where}: {int(bad_labels)} pixel(s) have labels that are neither a class id "
        f"0..{num_classes - 1} nor the ignore label {IGNORE_LABEL}: check the dataset's "
        f"label mapping and its number of classes")


def check_step(step: int, loss: float, *, num_classes: int, where: str,
               advice: Union[str, Callable[[], str]],
               bad_labels: float = 0, gradients_finite: bool = True) -> None:
  """Raises BadLabelError or NonFiniteLossError when step `step` must stop the loop.

  loss: the step's loss as a Python float; gradients_finite: False when a gradient held a
  NaN/Inf (loops that check gradients; under loss scaling those steps are skipped anyway).
  advice: what was kept and what to change; a callable is called only on failure (it may
  read files).
  """
  check_labels(bad_labels, num_classes, f"{where}, step {step}")
  if math.isfinite(loss) and gradients_finite:
    return
  what = f"loss is {loss}" if not math.isfinite(loss) else "a gradient is NaN/Inf"
  advice = advice() if callable(advice) else advice
  raise NonFiniteLossError(f"{where}: {what} at step {step}; {advice}")
