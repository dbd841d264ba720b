"""Segments images with a SavedModel:
`python -m dpc_tf.predict --saved_model=DIR --images='photos/*.jpg' --output_dir=OUT`.

Writes OUT/<stem>.png (class ids) and OUT/<stem>_overlay.png (colour overlay, the palette
stored in the SavedModel or that of --dataset).
"""

from absl import flags

from dpc_tf import app

flags.DEFINE_string("saved_model", None, "A SavedModel folder written by dpc_tf.export.")
flags.DEFINE_string("images", None, "Glob of the images to segment (quote it).")
flags.DEFINE_string("output_dir", None, "Where label maps and overlays are written.")
flags.DEFINE_string("dataset", None, "Take the overlay palette from this dataset instead of "
                    "the SavedModel's.")
flags.DEFINE_float("alpha", 0.5, "Overlay opacity of the label colours (0..1).")
FLAGS = flags.FLAGS


def main() -> None:
  # pylint: disable=import-outside-toplevel
  from dpc_tf.errors import DpcError
  from dpc_tf.training.predict import predict_images
  saved_model = app.required("saved_model")
  pattern = app.required("images")
  from dpc_tf.utils.files import writable_dir
  output_dir = writable_dir(app.required("output_dir"), "output_dir")
  if not 0.0 <= FLAGS.alpha <= 1.0:
    raise DpcError(f"--alpha must be in [0, 1], got {FLAGS.alpha}")
  written = predict_images(saved_model, pattern, output_dir, FLAGS.dataset, FLAGS.alpha)
  print(f"wrote {len(written)} files to {output_dir}", flush=True)


run = app.command("dpc_tf.predict", main)

if __name__ == "__main__":
  run()
