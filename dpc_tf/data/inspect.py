"""Checks a folder dataset before training: `python -m dpc_tf.data.inspect --root=ROOT`.

Prints counts per split, the image size range, pixels per class (with names) and every
problem naming its file (docs/CUSTOM_DATA.md explains each kind). Exit status 0 when
training may start (warnings allowed), 1 when a problem must be fixed first, 2 for a bad
flag or a root without images/ and labels/. `--json` prints the report as one JSON object.
The root and label settings can also come from the gin config training uses
(`--gin_file=train/folder.gin --gin_bindings="folder_dataset.root = '...'"`).
"""

from __future__ import annotations

import json
import sys

from absl import flags

from dpc_tf import app

app.define_gin_flags()
flags.DEFINE_string("root", None, "The dataset folder (ROOT/classes.txt, ROOT/images/<split>/, "
                    "ROOT/labels/<split>/); default: folder_dataset.root from gin.")
flags.DEFINE_integer("ignore_label", None, "Value of unlabelled pixels in index labels "
                     "(default: folder_dataset.ignore_label, 255).")
flags.DEFINE_integer("sample", None, "Decode only this many random pairs per split (what "
                     "training checks at start-up); default: every file.")
flags.DEFINE_integer("max_problems", 50, "Problems printed (all of them with --json).")
flags.DEFINE_bool("json", False, "Print the report as JSON instead of text.")
FLAGS = flags.FLAGS

EXIT_PROBLEMS = 1


def main() -> int:
  # pylint: disable=import-outside-toplevel
  from dpc_tf.data import folder, folder_check
  from dpc_tf.errors import DpcError
  app.parse_gin(("dpc_tf.data",))
  overrides = {}
  if FLAGS.root:
    overrides["root"] = FLAGS.root
  if FLAGS.ignore_label is not None:
    overrides["ignore_label"] = FLAGS.ignore_label
  if FLAGS.sample is not None and FLAGS.sample < 1:
    raise DpcError(f"--sample must be >= 1, got {FLAGS.sample}")
  if "root" not in overrides:
    import gin
    try:
      gin.query_parameter("folder_dataset.root")
    except ValueError:
      raise DpcError("--root is required (or folder_dataset.root in --gin_file / "
                     "--gin_bindings)") from None
  settings = folder.folder_dataset(**overrides)
  report = folder_check.inspect_folder(settings, sample=FLAGS.sample)
  if FLAGS.json:
    print(json.dumps(report.as_dict(), indent=1))
  else:
    print(report.text(FLAGS.max_problems))
  sys.stdout.flush()
  return 0 if report.ok else EXIT_PROBLEMS


run = app.command("dpc_tf.data.inspect", main)

if __name__ == "__main__":
  run()
