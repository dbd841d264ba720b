"""The DPC search space: operators, cells, the released JSON format, sampling, mutation."""

from dpc_tf.search_space.cell import (DEFAULT_NUM_BRANCHES, FEATURES, Branch, Cell, as_cell,
                                      validate)
from dpc_tf.search_space.operators import (
    ALL_OPERATORS, GRIDS, NUM_OPERATORS, RATES, CellError, Conv1x1, Operator, PyramidPooling,
    SeparableConv3x3, operator_from_index)
from dpc_tf.search_space.sampling import enumerate_cells, mutate_cell, sample_cell, space_size
from dpc_tf.search_space.released import CITYSCAPES_CELL, released_cell_path
