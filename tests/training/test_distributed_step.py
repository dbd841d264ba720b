"""One step on 2 replicas equals one step on 1 replica (loss scaling is exact); mixed
precision and synchronized batch norm run. In a subprocess: logical CPU devices must be
configured before TensorFlow initialises, which the test process has done already."""


SCRIPT = r'''
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from dpc_tf.training.config import TrainConfig
from dpc_tf.training.trainer import Trainer

def model_fn(sync_bn=False):
  images = keras.Input((None, None, 3))
  x = keras.layers.Rescaling(1 / 255.0)(images)
  x = keras.layers.Conv2D(4, 3, padding="same", name="conv",
                          kernel_regularizer=keras.regularizers.L2(1e-2))(x)
  if sync_bn:
    x = keras.layers.BatchNormalization(synchronized=True)(x)
  x = keras.layers.ReLU()(x)
  return keras.Model(images, keras.layers.Conv2D(7, 1, name="logits", dtype="float32")(x))

rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (4, 9, 9, 3)).astype(np.float32)
labels = rng.integers(0, 7, (4, 9, 9, 1)).astype(np.int32)
labels[:2, :7] = 255   # replica 0 sees far fewer valid pixels than replica 1
config = TrainConfig(dataset="dpc_synthetic/tiny", batch_size=4, crop_size=9, num_steps=10,
                     base_learning_rate=0.5, last_layer_gradient_multiplier=3.0)
keras.utils.set_random_seed(0)
initial = model_fn().get_weights()

def one_step(strategy, model_dir, mixed=None, sync_bn=False):
  cfg = TrainConfig(**{**config.__dict__, "mixed_precision": mixed})
  trainer = Trainer(cfg, model_dir, strategy=strategy, model_fn=lambda: model_fn(sync_bn))
  if not sync_bn:
    trainer.model.set_weights(initial)
  batch = next(iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors((images, labels)))))
  values = trainer._train_step(batch)
  return (float(values["loss"]), float(values["data_loss"]), float(values["regularization"]),
          [w.numpy().tolist() for w in trainer.model.trainable_weights], trainer)

out = {}
# One MirroredStrategy for the whole process: two instances over the same devices reuse
# collective instance keys and their all-reduces collide (a TensorFlow limitation).
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one = one_step(tf.distribute.get_strategy(), sys.argv[1] + "/one")
two = one_step(mirrored, sys.argv[1] + "/two")
out["replicas"] = two[4].strategy.num_replicas_in_sync
out["loss"] = [one[0], two[0]]
out["data_loss"] = [one[1], two[1]]
out["regularization"] = [one[2], two[2]]
out["max_weight_diff"] = max(float(np.max(np.abs(np.array(a) - np.array(b))))
                             for a, b in zip(one[3], two[3]))
out["max_update"] = max(float(np.max(np.abs(np.array(a) - np.array(b))))
                        for a, b in zip(one[3], [w.tolist() for w in initial]))
# Reference: the global mean cross-entropy over the valid pixels at the initial weights.
ref = model_fn(); ref.set_weights(initial)
z = ref(images).numpy().astype(np.float64)
z -= z.max(-1, keepdims=True)
logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
valid = labels[..., 0] != 255
picked = np.take_along_axis(logp, np.where(valid, labels[..., 0], 0)[..., None], -1)[..., 0]
out["reference_data_loss"] = float(-(picked * valid).sum() / valid.sum())
# Reference update: plain SGD's first step, w - lr * multiplier * dL/dw, with
# L = mean cross-entropy + L2; multipliers: logits x3 (last layer), biases x2.
with tf.GradientTape() as tape:
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
      tf.constant(np.where(valid, labels[..., 0], 0)), ref(images))
  loss = tf.reduce_sum(ce * valid) / valid.sum() + tf.add_n(ref.losses)
grads = tape.gradient(loss, ref.trainable_weights)
expected = []
for w, g in zip(ref.trainable_weights, grads):
  m = (3.0 if "logits" in w.path else 1.0) * (2.0 if w.path.endswith("bias") else 1.0)
  expected.append(w.numpy() - 0.5 * m * g.numpy())
out["max_reference_diff"] = max(float(np.max(np.abs(np.array(a) - b)))
                                for a, b in zip(one[3], expected))
mixed = one_step(tf.distribute.get_strategy(), sys.argv[1] + "/mixed", mixed="float16")
out["mixed"] = [mixed[0], type(mixed[4].optimizer).__name__]
sync = one_step(mirrored, sys.argv[1] + "/sync", sync_bn=True)

def two_steps(strategy, model_dir, in_one_call):
  trainer = Trainer(config, model_dir, strategy=strategy, model_fn=model_fn)
  trainer.model.set_weights(initial)
  batches = iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors((images, labels)).repeat()))
  if in_one_call:  # train.steps_per_call > 1: the iterator is read inside the function
    losses = trainer._train_steps(batches, tf.constant(2))["loss"].numpy().tolist()
  else:
    losses = [float(trainer._train_step(next(batches))["loss"]) for _ in range(2)]
  return losses, [w.numpy() for w in trainer.model.trainable_weights]

separate = two_steps(tf.distribute.get_strategy(), sys.argv[1] + "/separate", False)
together = two_steps(mirrored, sys.argv[1] + "/together", True)
out["two_steps_losses"] = [separate[0], together[0]]
out["two_steps_weight_diff"] = max(float(np.max(np.abs(a - b)))
                                   for a, b in zip(separate[1], together[1]))
out["sync_bn_loss"] = sync[0]
print("RESULT " + json.dumps(out))
'''


def test_two_replicas_take_the_same_step_as_one(tmp_path, helpers):
  out = helpers.run_script(tmp_path, SCRIPT, str(tmp_path))
  assert out["replicas"] == 2
  one, two = out["data_loss"]
  assert abs(one - out["reference_data_loss"]) < 1e-5
  assert abs(two - out["reference_data_loss"]) < 1e-5  # global mean, not a mean of means
  assert abs(out["regularization"][0] - out["regularization"][1]) < 1e-7
  assert out["regularization"][0] > 0
  assert out["max_update"] > 1e-3  # the step moved the weights...
  assert out["max_weight_diff"] < 1e-5  # ...identically on 1 and 2 replicas
  assert out["max_reference_diff"] < 1e-5  # ...and as hand-written SGD would
  assert out["mixed"][1] == "LossScaleOptimizer" and out["mixed"][0] == out["mixed"][0]
  assert abs(out["mixed"][0] - out["loss"][0]) < 0.05  # float16 forward, same loss roughly
  assert out["sync_bn_loss"] > 0
  # Two steps in one call on 2 replicas = two calls of one step on 1 replica.
  separate, together = out["two_steps_losses"]
  assert len(together) == 2 and separate[1] != separate[0]
  assert max(abs(a - b) for a, b in zip(separate, together)) < 1e-5
  assert out["two_steps_weight_diff"] < 1e-5
