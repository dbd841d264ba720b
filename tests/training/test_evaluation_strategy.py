"""Evaluation runs under the training strategy: mirrored over 2 devices gives the confusion
matrix of one device (an uneven last batch leaves one replica empty). In a subprocess:
logical CPU devices must be configured before TensorFlow initialises."""


SCRIPT = r'''
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from dpc_tf.training import evaluation, strategy as strategy_lib

def model_fn():
  images = keras.Input((None, None, 3))
  x = keras.layers.Rescaling(1 / 255.0)(images)
  x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
  x = keras.layers.BatchNormalization()(x)
  return keras.Model(images, keras.layers.Conv2D(5, 1, name="logits")(x))

rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (7, 12, 10, 3)).astype(np.float32)
labels = rng.integers(0, 5, (7, 12, 10, 1)).astype(np.int32)
labels[:, :2] = 255
dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(3)  # 3, 3, 1 images
keras.utils.set_random_seed(0)
one = model_fn()
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with mirrored.scope():
  two = model_fn()
two.set_weights(one.get_weights())
out = {"replicas": mirrored.num_replicas_in_sync,
       "mirrored_variables": type(two.weights[0].value).__name__}
a, n_a = evaluation.confusion_matrix(one, dataset, 5)
b, n_b = evaluation.confusion_matrix(two, dataset, 5, strategy=mirrored)
out.update({"one": a.tolist(), "two": b.tolist(), "images": [n_a, n_b]})
# the trainer's strategy is the one evaluation uses, by name (the same cached object)
out["same_object"] = (strategy_lib.evaluation_strategy("mirrored")
                      is strategy_lib.make_strategy("mirrored"))
out["mwms_without_tf_config"] = type(
    strategy_lib.evaluation_strategy("multi_worker_mirrored")).__name__
print("RESULT " + json.dumps(out))
'''


def test_mirrored_evaluation_counts_what_one_device_counts(tmp_path, helpers):
  out = helpers.run_script(tmp_path, SCRIPT)
  assert out["replicas"] == 2
  assert out["mirrored_variables"] == "MirroredVariable"
  assert out["images"] == [7, 7]
  assert out["one"] == out["two"]
  assert sum(map(sum, out["one"])) == 7 * 10 * 10  # every valid pixel, once
  assert sum(out["one"][i][i] for i in range(5)) < 7 * 10 * 10  # not a trivial case
  assert out["same_object"] and out["mwms_without_tf_config"] == "MirroredStrategy"
