"""Parameter and multiply-add counts of a DPC or ASPP head, or of a whole DeepLab model.

  python -m dpc_tf.model_stats --cell=CELL.json --feature_channels=2048 --crop=1025,2049 \
      --output_stride=16 [--head=aspp] [--json]
  python -m dpc_tf.model_stats --backbone=xception_71 --decoder_output_stride=4 \
      --num_classes=19 --crop=1025,2049 --output_stride=16 [--cell=...|--head=aspp] [--json]

Without --backbone only the head is counted, on features of the size the crop gives
({"head", "total"}). With --backbone the whole model is built (dpc_tf.models.build_deeplab)
and counted at the crop: {"backbone", "head", "decoder", "logits", "total"}, where "total"
sums the parts ("decoder" is all zeros with --decoder_output_stride=none).

"branch_params" / "branch_madds" follow the paper's Table 1 convention (the branch
convolution kernels only: no batch norm, no projection); for the backbone, decoder and
logits parts they count that part's conv kernels only (no batch norm, no bias). The other
figures count every weight and every conv/dense multiply-add (see dpc_tf/costs.py).
"""

import json

from absl import flags

from dpc_tf import app, backbones, costs, models, search_space
from dpc_tf.errors import DpcError
from dpc_tf.layers import common

flags.DEFINE_string("cell", None, "Cell JSON file (released DeepLab format); default: the "
                    "released Cityscapes cell.")
flags.DEFINE_enum("head", "dpc", ["dpc", "aspp"], "Which head to count.")
flags.DEFINE_integer("feature_channels", 2048, "Channels of the backbone features.",
                     lower_bound=1)
flags.DEFINE_list("crop", ["1025", "2049"], "Input size H,W (or one value for a square).")
flags.DEFINE_integer("output_stride", 16, "Backbone output stride (8, 16 or 32).")
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
flags.DEFINE_enum("backbone", None, list(backbones.BACKBONES),
                  "Count the whole model on this backbone instead of the head alone.")
flags.DEFINE_string("decoder_output_stride", "4", "With --backbone: 4 (DeepLabv3+ decoder) "
                    "or none.")
flags.DEFINE_integer("num_classes", 19, "With --backbone: classes of the logits layer.")
flags.DEFINE_float("depth_multiplier", 1.0, "With --backbone=mobilenet_v2: its multiplier.")
FLAGS = flags.FLAGS
_MODEL_ONLY_FLAGS = ("decoder_output_stride", "num_classes", "depth_multiplier")


def parse_crop(values) -> tuple[int, int]:
  try:
    sizes = [int(v) for v in values]
  except ValueError:
    raise DpcError(f"--crop must be integers H,W, got {','.join(values)}") from None
  if len(sizes) == 1:
    sizes = sizes * 2
  if len(sizes) != 2 or min(sizes) < 1:
    raise DpcError(f"--crop must be one or two positive integers, got {','.join(values)}")
  return sizes[0], sizes[1]


def head_stats(head: str, cell, feature_channels: int, crop, output_stride: int) -> dict:
  """Counts a head on backbone features of the size the crop gives at output_stride."""
  import keras  # pylint: disable=import-outside-toplevel
  from dpc_tf import layers  # pylint: disable=import-outside-toplevel
  if output_stride not in (8, 16, 32):
    raise DpcError(f"--output_stride must be 8, 16 or 32, got {output_stride}")
  size = tuple(common.scale_dimension(c, 1.0 / output_stride) for c in crop)
  shape = size + (feature_channels,)
  kwargs = dict(crop_size=crop, output_stride=output_stride, name="head")
  layer = layers.ASPP(**kwargs) if head == "aspp" else layers.DensePredictionCell(cell, **kwargs)
  inputs = keras.Input(shape)
  model = keras.Model(inputs, layer(inputs))
  return costs.model_costs(model, shape, {"head": layer}, {"head": layer.branch_layers})


def model_stats(backbone: str, head: str, cell, crop, output_stride: int,
                decoder_output_stride, num_classes: int, depth_multiplier: float = 1.0) -> dict:
  """Counts build_deeplab(...) at one crop: backbone, head, decoder, logits and their sum."""
  if output_stride not in (8, 16):
    raise DpcError(f"--output_stride must be 8 or 16 for a whole model (rates scale by "
                     f"16 // output_stride), got {output_stride}")
  model = models.build_deeplab(
      num_classes, backbone=backbone, head=head, cell=cell if head == "dpc" else None,
      crop_size=crop, output_stride=output_stride,
      decoder_output_stride=decoder_output_stride, depth_multiplier=depth_multiplier)
  parts, branches = models.model_parts(model)
  # Non-head parts: "branch" = the part's conv kernels (no BN, no bias), same convention.
  branches = {name: branches.get(name, [layer]) for name, layer in parts.items()}
  stats = costs.model_costs(model, tuple(crop) + (3,), parts, branches)
  zeros = dict.fromkeys(stats["head"], 0)
  return {part: stats.get(part, zeros) for part in ("backbone", "head", "decoder", "logits",
                                                    "total")}


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


def main() -> None:
  cell = search_space.as_cell(FLAGS.cell)
  if FLAGS.backbone:
    if FLAGS["feature_channels"].present:
      raise DpcError("--feature_channels is implied by --backbone; drop one of them")
    stats = model_stats(FLAGS.backbone, FLAGS.head, cell, parse_crop(FLAGS.crop),
                        FLAGS.output_stride,
                        models.parse_decoder_output_stride(FLAGS.decoder_output_stride),
                        FLAGS.num_classes, FLAGS.depth_multiplier)
  else:
    given = [f"--{name}" for name in _MODEL_ONLY_FLAGS if FLAGS[name].present]
    if given:
      raise DpcError(f"{', '.join(given)} need(s) --backbone (a whole model)")
    stats = head_stats(FLAGS.head, cell, FLAGS.feature_channels, parse_crop(FLAGS.crop),
                       FLAGS.output_stride)
  print(json.dumps(stats) if FLAGS.json else format_table(stats))


run = app.command("dpc_tf.model_stats", main)

if __name__ == "__main__":
  run()
