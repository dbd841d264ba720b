"""Parameter and multiply-add counts of a DPC or ASPP head (and, later, whole models).

  python tools/model_stats.py --cell=CELL.json --feature_channels=2048 --crop=1025,2049 \
      --output_stride=16 [--head=aspp] [--json]

"branch_params" / "branch_madds" follow the paper's Table 1 convention (the branch
convolution kernels only: no batch norm, no projection); the other figures count every
weight and every conv/dense multiply-add (see dpc_tf/costs.py).
"""

import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dpc_tf import costs, search_space  # pylint: disable=wrong-import-position
from dpc_tf.layers import common  # pylint: disable=wrong-import-position

flags.DEFINE_string("cell", None, "Cell JSON file (released DeepLab format); default: the "
                    "released Cityscapes cell.")
flags.DEFINE_enum("head", "dpc", ["dpc", "aspp"], "Which head to count.")
flags.DEFINE_integer("feature_channels", 2048, "Channels of the backbone features.")
flags.DEFINE_list("crop", ["1025", "2049"], "Input size H,W (or one value for a square).")
flags.DEFINE_integer("output_stride", 16, "Backbone output stride (8, 16 or 32).")
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
FLAGS = flags.FLAGS


class UsageError(ValueError):
  """Bad flag values; reported as one line."""


def parse_crop(values) -> tuple[int, int]:
  try:
    sizes = [int(v) for v in values]
  except ValueError:
    raise UsageError(f"--crop must be integers H,W, got {','.join(values)}") from None
  if len(sizes) == 1:
    sizes = sizes * 2
  if len(sizes) != 2 or min(sizes) < 1:
    raise UsageError(f"--crop must be one or two positive integers, got {','.join(values)}")
  return sizes[0], sizes[1]


def head_stats(head: str, cell, feature_channels: int, crop, output_stride: int) -> dict:
  """Counts a head on backbone features of the size the crop gives at output_stride."""
  import keras  # pylint: disable=import-outside-toplevel
  from dpc_tf import layers  # pylint: disable=import-outside-toplevel
  if output_stride not in (8, 16, 32):
    raise UsageError(f"--output_stride must be 8, 16 or 32, got {output_stride}")
  size = tuple(common.scale_dimension(c, 1.0 / output_stride) for c in crop)
  shape = size + (feature_channels,)
  kwargs = dict(rate_multiplier=16 // output_stride, crop_size=crop,
                output_stride=output_stride, name="head")
  layer = layers.ASPP(**kwargs) if head == "aspp" else layers.DensePredictionCell(cell, **kwargs)
  inputs = keras.Input(shape)
  model = keras.Model(inputs, layer(inputs))
  return costs.model_costs(model, shape, {"head": layer}, {"head": layer.branch_layers})


def format_table(stats: dict) -> str:
  def human(n):
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,}"
  rows = [("part", "trainable", "non-trainable", "MAdds", "branch params", "branch MAdds")]
  for part, s in stats.items():
    rows.append((part, f"{s['trainable_params']:,}", f"{s['non_trainable_params']:,}",
                 human(s["madds"]),
                 f"{s['branch_params']:,}" if "branch_params" in s else "",
                 human(s["branch_madds"]) if "branch_madds" in s else ""))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(r, widths))) for r in rows]
  lines.insert(1, "-" * len(lines[0]))
  lines.append("branch = branch conv kernels only (the paper's Table 1 convention).")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    cell = search_space.Cell.load(FLAGS.cell) if FLAGS.cell else search_space.CITYSCAPES_CELL
    stats = head_stats(FLAGS.head, cell, FLAGS.feature_channels, parse_crop(FLAGS.crop),
                       FLAGS.output_stride)
  except (search_space.CellError, UsageError) as e:
    print(f"model_stats: error: {e}", file=sys.stderr)
    return 1
  print(json.dumps(stats) if FLAGS.json else format_table(stats))
  return 0


if __name__ == "__main__":
  app.run(main)
