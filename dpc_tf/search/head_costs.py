"""Analytic head costs, known before training: what search_algorithm.max_branch_* limit.

The paper's Table 1 convention: branch convolution kernels only (no BN, no projection), a
1x1 conv costing C_in x filters weights, a separable 3x3 9 x C_in + C_in x filters, each
applied at every position of the feature map (a pooling branch's conv at its grid's
positions). C_in is the backbone's channels for a branch reading the features, else
`filters`. Pure Python, so the driver can price a cell without TensorFlow; the traced
figure a real trial records (dpc_tf.costs) counts the same kernels, and differs only for
pooling branches, whose stride-1 pooled map the trace measures at its actual size.
"""

from __future__ import annotations

from dpc_tf.search_space import FEATURES, Cell, Conv1x1, PyramidPooling

ASPP_RATES = 3  # separable atrous convs in DeepLab's ASPP (rates 6, 12, 18)


def branch_costs(cell: Cell, channels: int, filters: int, positions: int) -> tuple[int, int]:
  """(params, multiply-adds) of the cell's branch convolutions; positions = h x w."""
  params = madds = 0
  for branch in cell:
    c_in = channels if branch.input == FEATURES else filters
    if isinstance(branch.op, Conv1x1):
      weights, where = c_in * filters, positions
    elif isinstance(branch.op, PyramidPooling):
      weights, where = c_in * filters, branch.op.grid_h * branch.op.grid_w
    else:
      weights, where = 9 * c_in + c_in * filters, positions
    params += weights
    madds += weights * where
  return params, madds


def aspp_costs(channels: int, filters: int, positions: int) -> tuple[int, int]:
  """ASPP's branches counted the same way: a 1x1 conv, 3 separable 3x3, image pooling."""
  conv, sep = channels * filters, 9 * channels + channels * filters
  return 2 * conv + ASPP_RATES * sep, (conv + ASPP_RATES * sep) * positions + conv
