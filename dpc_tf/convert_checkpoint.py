"""Converts a released TF1 DeepLab checkpoint into weights dpc_tf models load.

  python -m dpc_tf.convert_checkpoint --checkpoint=PREFIX --backbone=xception_71 \\
      (--cell=CELL.json | --head=aspp) [--decoder_output_stride=4|none] --num_classes=19 \\
      --output_dir=DIR [--backbone_only] [--skip_logits] [--depth_multiplier=1.0] [--overwrite]

Writes DIR/weights.h5 (one dataset per Keras weight key), DIR/model_config.json (the
build_deeplab arguments) and DIR/mapping.json (Keras weight key -> TF1 variable, plus what
was skipped and what went unused); load with
dpc_tf.checkpoints.load_converted_weights(model, DIR[, skip_logits=True]). global_step,
optimizer slots, ImageNet classifiers and MobileNet's 1280-channel conv are skipped and
listed. A missing variable or a shape mismatch exits 2 with one line naming the
variable(s), and nothing is written (the folder appears whole or not at all).
--backbone_only converts the backbone alone (e.g. an ImageNet checkpoint): load it into a
model whose head, decoder and logits stay freshly initialised.
"""

from absl import flags, logging

from dpc_tf import app
from dpc_tf.errors import DpcError

flags.DEFINE_string("checkpoint", None, "TF1 checkpoint prefix (e.g. .../model.ckpt).")
flags.DEFINE_enum("backbone", "xception_71",
                  ["xception_41", "xception_65", "xception_71", "mobilenet_v2"],
                  "The checkpoint's backbone.")
flags.DEFINE_string("cell", None, "Cell JSON of a DPC checkpoint; default the released "
                    "Cityscapes cell (with --head=dpc).")
flags.DEFINE_enum("head", "dpc", ["dpc", "aspp"], "The checkpoint's head.")
flags.DEFINE_string("decoder_output_stride", "4", "4 (the checkpoint has a decoder) or none.")
flags.DEFINE_integer("num_classes", None, "Classes of the checkpoint's logits.")
flags.DEFINE_string("output_dir", None, "Folder to write (must not exist or be empty, "
                    "unless --overwrite).")
flags.DEFINE_bool("backbone_only", False, "Convert the backbone only (ImageNet checkpoints).")
flags.DEFINE_bool("skip_logits", False, "Convert everything but the logits.")
flags.DEFINE_float("depth_multiplier", 1.0, "MobileNet-v2 depth multiplier.")
flags.DEFINE_bool("overwrite", False, "Replace a non-empty --output_dir.")
flags.mark_flags_as_required(["checkpoint", "num_classes", "output_dir"])
FLAGS = flags.FLAGS


def main() -> None:
  from dpc_tf import checkpoints, models  # pylint: disable=import-outside-toplevel
  if FLAGS.cell and FLAGS.head == "aspp":
    raise DpcError("--cell and --head=aspp exclude each other")
  report = checkpoints.convert_checkpoint(
      FLAGS.checkpoint, FLAGS.output_dir, FLAGS.num_classes, backbone=FLAGS.backbone,
      head=FLAGS.head, cell=FLAGS.cell,
      decoder_output_stride=models.parse_decoder_output_stride(FLAGS.decoder_output_stride),
      depth_multiplier=FLAGS.depth_multiplier, backbone_only=FLAGS.backbone_only,
      skip_logits=FLAGS.skip_logits, overwrite=FLAGS.overwrite)
  for name, reason in report.skipped.items():
    logging.info("skipped %s (%s)", name, reason)
  if report.unused:
    logging.warning("%d checkpoint variable(s) not used by the requested model (listed in "
                    "mapping.json): %s%s", len(report.unused), ", ".join(report.unused[:5]),
                    " ..." if len(report.unused) > 5 else "")
  print(f"converted {report.converted} weights ({', '.join(report.parts)}) to "
        f"{report.output_dir}; skipped {len(report.skipped)}, unused {len(report.unused)}")


run = app.command("dpc_tf.convert_checkpoint", main)

if __name__ == "__main__":
  run()
