"""Draws a DPC as a DAG, as in the paper's Figure 5: features -> branches -> concat -> 1x1.

Needs matplotlib (`pip install dpc-tf[plots]`); imported lazily so the package works
without it.
"""

from __future__ import annotations

import os
from typing import Optional

from dpc_tf import search_space
from dpc_tf.errors import DpcError
from dpc_tf.search_space import FEATURES, Cell


def _require_matplotlib():
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise DpcError("drawing needs matplotlib: pip install 'dpc-tf[plots]'") from None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def node_label(op: search_space.Operator) -> str:
  if isinstance(op, search_space.SeparableConv3x3):
    return f"3x3 sep conv\nrate {op.rate_h}x{op.rate_w}"
  if isinstance(op, search_space.PyramidPooling):
    return f"pyramid pooling\ngrid {op.grid_h}x{op.grid_w}"
  return "1x1 conv"


def layout(cell: Cell) -> dict:
  """Node -> (x, y): branches side by side in order, features above, concat below.

  A row keeps every edge visible: edges from the features come from above, edges between
  branches are arcs over the row, and every branch feeds the concat from below.
  """
  n = len(cell)
  positions = {i: (float(i) - (n - 1) / 2.0, 0.0) for i in range(n)}
  positions[FEATURES] = (0.0, 1.6)
  positions["concat"] = (0.0, -1.5)
  positions["projection"] = (0.0, -2.6)
  return positions


def render_cell(cell: Cell, path: str, title: Optional[str] = None) -> str:
  """Writes the diagram to `path` (.png or .svg, chosen by the extension); returns path."""
  extension = os.path.splitext(path)[1].lower()
  if extension not in (".png", ".svg"):
    raise DpcError(f"{path}: the picture must be .png or .svg")
  plt = _require_matplotlib()
  pos = layout(cell)
  fig, ax = plt.subplots(figsize=(1.75 * len(cell) + 1.0, 5.2))
  boxes = {FEATURES: ("features", "#d9d9d9"), "concat": ("concat", "#fde9a9"),
           "projection": ("1x1 conv 256\n(projection)", "#c6dbef")}
  colours = {search_space.SeparableConv3x3: "#c7e9c0", search_space.PyramidPooling: "#fdd0a2",
             search_space.Conv1x1: "#dadaeb"}
  for i, branch in enumerate(cell):
    boxes[i] = (f"branch {i}\n{node_label(branch.op)}", colours[type(branch.op)])
  texts = {node: ax.text(*pos[node], text, ha="center", va="center", fontsize=9, zorder=3,
                         bbox=dict(boxstyle="round,pad=0.4", fc=colour, ec="#333333"))
           for node, (text, colour) in boxes.items()}

  def arrow(source, target, start, end, style="arc3", colour="#555555"):
    # Coordinates are fractions of each box, so arrows start and end on the box edges.
    ax.annotate("", xy=end, xycoords=texts[target], xytext=start, textcoords=texts[source],
                arrowprops=dict(arrowstyle="-|>", color=colour, connectionstyle=style,
                                shrinkA=1, shrinkB=1), zorder=4)

  for i, branch in enumerate(cell):
    if branch.input == FEATURES:
      arrow(FEATURES, i, (0.5, 0.0), (0.5, 1.0))
    else:  # an arc over the row, higher for longer jumps
      rad = -0.25 - 0.05 * (i - branch.input)
      arrow(branch.input, i, (0.6, 1.0), (0.4, 1.0), f"arc3,rad={rad}", "#2b6cb0")
    arrow(i, "concat", (0.5, 0.0), (0.5, 1.0))
  arrow("concat", "projection", (0.5, 0.0), (0.5, 1.0))
  ax.set_xlim(-len(cell) / 2.0 - 0.2, len(cell) / 2.0 + 0.2)
  ax.set_ylim(-3.1, 2.0)
  ax.set_title(title or cell.text, fontsize=9)
  ax.axis("off")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, bbox_inches="tight", dpi=110)
  plt.close(fig)
  return path
