"""The training progress line: step, loss, learning rate, steps/s, images/s and ETA.

Speed is measured over the steps since the previous line (not since the start, which
would include tracing and make the first minutes' ETA meaningless).
"""

from __future__ import annotations

import time
from typing import Callable, Optional


def format_duration(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}"


class ProgressMeter:
  """Formats one line per call of `line(step, ...)`; `clock` is injectable for tests."""

  def __init__(self, num_steps: int, start_step: int, batch_size: int,
               clock: Callable[[], float] = time.monotonic):
    self.num_steps = num_steps
    self.batch_size = batch_size
    self._clock = clock
    self._last_step = start_step
    self._last_time: Optional[float] = None

  def start(self) -> None:
    """Marks the beginning of timed steps (call after the first, traced, step)."""
    self._last_time = self._clock()

  def line(self, step: int, loss: float, learning_rate: float,
           extra: str = "") -> str:
    now = self._clock()
    rate = None
    if self._last_time is not None and now > self._last_time and step > self._last_step:
      rate = (step - self._last_step) / (now - self._last_time)
    self._last_step, self._last_time = step, now
    text = f"step {step}/{self.num_steps} loss {loss:.4f} lr {learning_rate:.3g}"
    if rate is not None:
      eta = (self.num_steps - step) / rate
      text += (f" | {rate:.2f} steps/s {rate * self.batch_size:.1f} images/s "
               f"ETA {format_duration(eta)}")
    if extra:
      text += f" | {extra}"
    return text
