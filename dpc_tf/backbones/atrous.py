"""DeepLab's rule for reaching an output stride with atrous convolution (REFERENCE.md 4)."""

from __future__ import annotations

from typing import Sequence

from dpc_tf.layers.common import LayerArgumentError

OUTPUT_STRIDES = (8, 16, 32)


def check_output_stride(output_stride: int) -> int:
  if output_stride not in OUTPUT_STRIDES:
    raise LayerArgumentError(f"output_stride must be one of {', '.join(map(str, OUTPUT_STRIDES))}, "
                     f"got {output_stride!r}")
  return output_stride


def atrous_schedule(strides: Sequence[int], output_stride: int,
                    initial_stride: int = 1) -> list[tuple[int, int]]:
  """(stride, rate) to run each unit with, given the units' nominal strides in order.

  Walk the units keeping the current stride; once it equals the target, a unit runs with
  stride 1 at the current atrous rate and the rate is multiplied by the unit's nominal
  stride, so later units see the receptive field they were trained for. `initial_stride`
  is the stride already taken before the first unit (Xception's root conv: 2).
  """
  current, rate, schedule = initial_stride, 1, []
  for stride in strides:
    if current == output_stride:
      schedule.append((1, rate))
      rate *= stride
    elif current > output_stride:
      raise LayerArgumentError(f"output stride {output_stride} cannot be reached: the stride is "
                       f"already {current} before a unit")
    else:
      schedule.append((stride, 1))
      current *= stride
  if current != output_stride:
    raise LayerArgumentError(f"output stride {output_stride} cannot be reached: the units only "
                     f"reach stride {current}")
  return schedule
