"""train_and_evaluate on the synthetic config -> export -> a fresh TensorFlow-only process
predicts exactly what evaluation scored -> predict writes label maps and overlays."""

import json
import os
import subprocess
import sys
import types

import gin
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from dpc_tf import data, gin_config
from dpc_tf.utils import files
from dpc_tf.training import api, checkpointing, config, evaluation, export, predict
from dpc_tf.training.inference import Predictor

CELL = "F:pool@2x2 0:sep3x3@3x6 F:conv1x1 1:sep3x3@1x1 2:pool@1x1"

FRESH_PROCESS = r'''
import json, sys
import numpy as np
import tensorflow as tf
saved_model, inputs, output = sys.argv[1:4]
loaded = tf.saved_model.load(saved_model)
serve = loaded.signatures["serving_default"]
arrays = np.load(inputs)
out = {}
for name in ("batch", "small"):
  result = serve(images=tf.constant(arrays[name]))
  out[name + "_labels"] = result["labels"].numpy()
  out[name + "_probabilities"] = result["probabilities"].numpy()
errors = {}
for name, bad in (("rank3", np.zeros((4, 4, 3), np.uint8)),
                  ("float", np.zeros((1, 4, 4, 3), np.float32)),
                  ("channels", np.zeros((1, 4, 4, 4), np.uint8))):
  try:
    serve(images=tf.constant(bad))
    errors[name] = None
  except Exception as e:  # pylint: disable=broad-except
    errors[name] = type(e).__name__ + ": " + str(e)
meta = {"dataset": loaded.dataset.numpy().decode(),
        "class_names": [c.decode() for c in loaded.class_names.numpy()],
        "palette": loaded.palette.numpy().tolist(), "scales": loaded.scales.numpy().tolist(),
        "flip": bool(loaded.flip.numpy()), "step": int(loaded.step.numpy()),
        "outputs": sorted(serve.structured_outputs),
        "dpc_tf_imported": any(m.split(".")[0] == "dpc_tf" for m in sys.modules)}
np.savez(output, **out)
print("META " + json.dumps(meta))
print("ERRORS " + json.dumps(errors))
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory, helpers):
  gin.clear_config()
  # Two fixed training images, whole (129x129), no scale augmentation: the loss must fall
  # on a batch it sees again and again (random crops of different images are too noisy to
  # show a trend in 12 steps).
  config.parse_gin([helpers.SYNTHETIC_GIN], helpers.TINY_BINDINGS + [
      "train.split = 'train[:2]'", "train.crop_size = [129, 129]", "train.scales = [1.0]",
      "train.base_learning_rate = 0.02"])
  model_dir = str(tmp_path_factory.mktemp("e2e") / "model")
  losses = []
  result = api.train_and_evaluate(CELL, model_dir, num_steps=12,
                                  step_callback=lambda s, v: losses.append(v["loss"]))
  yield types.SimpleNamespace(result=result, losses=losses, model_dir=model_dir,
                              train=config.train_config(), tmp=tmp_path_factory)
  gin.clear_config()


def test_training_lowers_the_loss(run):
  assert len(run.losses) == 12 and all(np.isfinite(run.losses))
  assert run.losses[0] == pytest.approx(np.log(7), abs=0.2)  # near-uniform start
  assert np.mean(run.losses[-4:]) < run.losses[0] - 0.3, run.losses


def test_checkpoints_operative_config_and_summaries(run):
  names = os.listdir(run.model_dir)
  assert {"ckpt-4.index", "ckpt-8.index", "ckpt-12.index", "checkpoint"} <= set(names)
  assert checkpointing.checkpoint_step(checkpointing.latest_checkpoint(run.model_dir)) == 12
  path = os.path.join(run.model_dir, gin_config.OPERATIVE_CONFIG)
  operative = open(path).read()
  assert "train.num_steps = 12" in operative and "deeplab_model.depth_multiplier = 0.25" in operative
  assert f"deeplab_model.cell = '{CELL}'" in operative  # the explicit argument is recorded
  config.parse_gin([path])  # what evaluate/export parse when given no --gin_file
  assert config.train_config() == run.train
  assert gin.query_parameter("deeplab_model.cell") == CELL
  tags = set()
  folder = os.path.join(run.model_dir, "train")
  for name in os.listdir(folder):
    for record in tf.data.TFRecordDataset(os.path.join(folder, name)):
      event = event_pb2.Event.FromString(record.numpy())
      tags.update(v.tag for v in event.summary.value)
  assert {"loss/total", "loss/cross_entropy", "learning_rate", "train_miou",
          "image | label | prediction"} <= tags


def test_result_and_eval_json(run):
  result = run.result
  assert result["step"] == 12 and result["cell"] == CELL
  assert 0.0 <= result["miou"] <= 1.0 and result["eval"]["num_images"] == 4
  assert set(result["per_class_iou"]) == set(data.get_spec("dpc_synthetic/tiny").class_names)
  with open(os.path.join(run.model_dir, "eval_validation.json")) as f:
    written = json.load(f)
  assert written["miou"] == result["miou"] and written["step"] == 12
  confusion = np.array(written["confusion_matrix"])
  assert confusion.sum() > 0 and confusion.shape == (7, 7)


def test_export_predicts_what_evaluation_scored_in_a_fresh_process(run, helpers):
  scales, flip = (0.75, 1.0), True
  eval_config = config.EvalConfig(max_examples=4, batch_size=2, scales=scales, flip=flip)
  scored = evaluation.evaluate_checkpoint(run.train, eval_config, run.model_dir, cell=CELL)
  assert os.path.isfile(os.path.join(run.model_dir, "eval_validation_multiscale.json"))
  export_dir = str(run.tmp.mktemp("export") / "saved_model")
  info = export.export_checkpoint(run.train, eval_config, config.ExportConfig(), run.model_dir,
                                  export_dir, cell=CELL)
  assert info["scales"] == list(scales) and info["flip"] and info["pad_to"] == [129, 129]
  umask = files.current_umask()  # shared machines: not mkdtemp's / mkstemp's private modes
  assert os.stat(export_dir).st_mode & 0o777 == 0o777 & ~umask
  eval_json = os.path.join(run.model_dir, "eval_validation_multiscale.json")
  assert os.stat(eval_json).st_mode & 0o777 == 0o666 & ~umask

  examples = list(data.load_split("dpc_synthetic/tiny", "validation[:4]").as_numpy_iterator())
  batch = np.stack([e["image"] for e in examples])
  masks = np.stack([e["segmentation_mask"][..., 0] for e in examples]).astype(np.int64)
  small = batch[:1, :100, :120]
  inputs = os.path.join(export_dir + "_inputs.npz")
  np.savez(inputs, batch=batch, small=small)
  outputs = export_dir + "_outputs.npz"
  proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, export_dir, inputs, outputs],
                        cwd="/", env=helpers.subprocess_env({"PYTHONPATH": ""}),
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = dict(l.split(" ", 1) for l in proc.stdout.splitlines() if l[:5] in ("META ", "ERROR"))
  meta, errors = json.loads(lines["META"]), json.loads(lines["ERRORS"])
  served = np.load(outputs)

  # 1. The SavedModel's labels give evaluation's confusion matrix exactly.
  labels = served["batch_labels"]
  assert labels.shape == (4, 129, 129) and labels.dtype == np.int32
  assert served["batch_probabilities"].shape == (4, 129, 129, 7)
  valid = masks != 255
  confusion = np.bincount(masks[valid] * 7 + labels[valid], minlength=49).reshape(7, 7)
  np.testing.assert_array_equal(confusion, np.array(scored["confusion_matrix"]))

  # 2. Pixel for pixel against the in-framework predictor, padding path included.
  model = evaluation.build_eval_model(run.train, cell=CELL)
  checkpointing.restore_for_inference(model, checkpointing.latest_checkpoint(run.model_dir))
  predictor = Predictor(model, scales, flip, pad_to=(129, 129))
  for name, images in (("batch", batch), ("small", small)):
    mine_labels, mine_probabilities = predictor(tf.constant(images, tf.float32))
    np.testing.assert_array_equal(served[name + "_labels"], mine_labels.numpy())
    np.testing.assert_allclose(served[name + "_probabilities"], mine_probabilities.numpy(),
                               atol=1e-5)
  assert served["small_labels"].shape == (1, 100, 120)
  # Both run with batch norm folded; the unfolded model predicts the same within rounding.
  unfolded = Predictor(model, scales, flip, pad_to=(129, 129), fold=False)
  np.testing.assert_allclose(served["batch_probabilities"],
                             unfolded.probabilities(tf.constant(batch, tf.float32)).numpy(),
                             atol=1e-5)

  # 3. Metadata, and clear errors for bad inputs (not a crashed process).
  spec = data.get_spec("dpc_synthetic/tiny")
  assert not meta["dpc_tf_imported"]
  assert meta["dataset"] == "dpc_synthetic/tiny" and meta["step"] == 12
  assert meta["class_names"] == list(spec.class_names)
  assert meta["palette"] == spec.palette_array().tolist()
  assert meta["scales"] == list(scales) and meta["flip"] is True
  assert meta["outputs"] == ["labels", "probabilities"]
  assert "[N, H, W, 3]" in errors["rank3"] and "[4 4 3]" in errors["rank3"]
  assert "[N, H, W, 3]" in errors["channels"]
  assert "uint8" in errors["float"].splitlines()[0]

  # 4. dpc_tf.predict on image files: label PNGs equal the SavedModel's labels.
  image_dir = run.tmp.mktemp("images")
  for i in range(2):
    tf.io.write_file(str(image_dir / f"img{i}.png"), tf.io.encode_png(batch[i]))
  out_dir = str(run.tmp.mktemp("predictions"))
  written = predict.predict_images(export_dir, str(image_dir / "*.png"), out_dir)
  assert sorted(os.path.basename(p) for p in written) == [
      "img0.png", "img0_overlay.png", "img1.png", "img1_overlay.png"]
  for i in range(2):
    label_map = tf.io.decode_png(tf.io.read_file(os.path.join(out_dir, f"img{i}.png"))).numpy()
    np.testing.assert_array_equal(label_map[..., 0], labels[i])
    overlay = tf.io.decode_png(tf.io.read_file(os.path.join(out_dir, f"img{i}_overlay.png")))
    assert overlay.shape == (129, 129, 3)
