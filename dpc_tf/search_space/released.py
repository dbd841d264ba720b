"""The cell released with the paper (searched on Cityscapes), shipped as package data."""

import os

_CELLS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "cells")
RELEASED_CELLS = {"cityscapes": "dense_prediction_cell_branch5_top1_cityscapes.json"}


def released_cell_path(name: str = "cityscapes") -> str:
  if name not in RELEASED_CELLS:
    from dpc_tf.search_space.operators import CellError  # pylint: disable=import-outside-toplevel
    raise CellError(f"unknown released cell {name!r}; known: {', '.join(RELEASED_CELLS)}")
  return os.path.join(_CELLS_DIR, RELEASED_CELLS[name])


def _load_cityscapes():
  from dpc_tf.search_space.cell import Cell  # local: cell.py does not import this module
  return Cell.load(released_cell_path("cityscapes"))


CITYSCAPES_CELL = _load_cityscapes()
