"""Draws a cell as a picture: `python tools/render_cell.py --cell=CELL.json --output=cell.png`.

The diagram is the paper's Figure 5 style: a node per branch labelled with its operator and
rates, edges from each branch's input, and the concat of every branch. PNG or SVG by the
output's extension. Needs matplotlib (the `plots` extra).
"""

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dpc_tf import search_space  # pylint: disable=wrong-import-position
from dpc_tf.plots.cell_graph import render_cell  # pylint: disable=wrong-import-position

flags.DEFINE_string("cell", None, "Cell JSON file; default: the released Cityscapes cell.")
flags.DEFINE_string("output", "cell.png", "Output picture, .png or .svg.")
flags.DEFINE_string("title", None, "Title; default: the cell's compact text form.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    cell = search_space.Cell.load(FLAGS.cell) if FLAGS.cell else search_space.CITYSCAPES_CELL
    print(render_cell(cell, FLAGS.output, FLAGS.title))
  except (search_space.CellError, ValueError, ImportError) as e:
    print(f"render_cell: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  app.run(main)
