"""Draws a cell as a picture: `python -m dpc_tf.render_cell --cell=CELL.json --output=cell.png`.

The diagram is the paper's Figure 5 style: a node per branch labelled with its operator and
rates, edges from each branch's input, and the concat of every branch. PNG or SVG by the
output's extension. Needs matplotlib (the `plots` extra).
"""

from absl import flags

from dpc_tf import app, search_space

flags.DEFINE_string("cell", None, "Cell JSON file; default: the released Cityscapes cell.")
flags.DEFINE_string("output", "cell.png", "Output picture, .png or .svg.")
flags.DEFINE_string("title", None, "Title; default: the cell's compact text form.")
FLAGS = flags.FLAGS


def main() -> None:
  from dpc_tf.plots.cell_graph import render_cell  # pylint: disable=import-outside-toplevel
  print(render_cell(search_space.as_cell(FLAGS.cell), FLAGS.output, FLAGS.title))


run = app.command("dpc_tf.render_cell", main)

if __name__ == "__main__":
  run()
