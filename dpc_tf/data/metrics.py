"""Streaming mean IOU over a confusion matrix, as DeepLab evaluates (REFERENCE.md section 5).

Classes absent from both the labels and the predictions seen so far (IOU denominator 0) have
no IOU: `per_class_iou` reports NaN for them and the mean leaves them out, like TF1's
`tf.metrics.mean_iou`. A class that is predicted but never labelled has IOU 0 and counts.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from dpc_tf.data.specs import IGNORE_LABEL


@keras.saving.register_keras_serializable(package="dpc_tf")
class StreamingMeanIoU(keras.metrics.Metric):
  """Mean IOU over classes from a confusion matrix accumulated across batches.

  The confusion matrix is a metric variable (aggregation SUM, synchronised on read, as every
  Keras metric variable), so updates inside `strategy.run` are summed over replicas when the
  result is read in cross-replica context. Counts are float64 by default: float32 stops
  counting exactly at 2^24 pixels per cell, which one Cityscapes class passes in 10 images.

  Args:
    num_classes: K; labels and predictions are class ids in 0..K-1.
    ignore_label: label value whose pixels are not counted (255).
    from_logits: predictions are scores [..., K] and are argmax-ed; otherwise class ids.
    count_dtype: dtype of the confusion-matrix counts.
  """

  def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
               from_logits: bool = False, count_dtype: str = "float64",
               name: str = "mean_iou", dtype=None):
    super().__init__(name=name, dtype=dtype)
    if num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    self.num_classes = int(num_classes)
    self.ignore_label = int(ignore_label)
    self.from_logits = bool(from_logits)
    self.count_dtype = count_dtype
    self.confusion_matrix = self.add_variable(
        shape=(self.num_classes, self.num_classes), initializer="zeros", dtype=count_dtype,
        aggregation="sum", name="confusion_matrix")

  def update_state(self, labels, predictions, sample_weight=None):
    """Adds one batch. labels: class ids of any shape ([B, H, W, 1] or [B, H, W]);
    predictions: class ids with as many elements (or scores [..., K] with from_logits);
    sample_weight: optional, broadcastable from the left to the labels' shape."""
    labels = tf.convert_to_tensor(labels)
    predictions = tf.convert_to_tensor(predictions)
    if self.from_logits:
      predictions = tf.argmax(predictions, axis=-1)
    k = self.num_classes
    flat_labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    flat_predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
    tf.debugging.assert_equal(
        tf.size(flat_labels), tf.size(flat_predictions),
        message="StreamingMeanIoU: labels and predictions hold different numbers of pixels")
    counted = tf.not_equal(flat_labels, self.ignore_label)
    weights = tf.ones_like(flat_labels, dtype=self.count_dtype)
    if sample_weight is not None:
      sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), self.count_dtype)
      # Keras convention: a per-example weight [B] applies to all of that example's pixels.
      while sample_weight.shape.rank < labels.shape.rank:
        sample_weight = sample_weight[..., None]
      weights = tf.reshape(tf.broadcast_to(sample_weight, tf.shape(labels)), [-1])
    flat_labels = tf.boolean_mask(flat_labels, counted)
    flat_predictions = tf.boolean_mask(flat_predictions, counted)
    weights = tf.boolean_mask(weights, counted)
    checks = [
        tf.debugging.assert_less(
            flat_labels, tf.constant(k, tf.int64),
            message=f"StreamingMeanIoU: a label is neither a class id < {k} nor the ignore "
                    f"label {self.ignore_label}"),
        tf.debugging.assert_non_negative(flat_labels, message="StreamingMeanIoU: negative label"),
        tf.debugging.assert_less(flat_predictions, tf.constant(k, tf.int64),
                                 message=f"StreamingMeanIoU: a prediction is >= {k}"),
        tf.debugging.assert_non_negative(flat_predictions,
                                         message="StreamingMeanIoU: negative prediction"),
    ]
    with tf.control_dependencies(checks):
      cells = flat_labels * k + flat_predictions
      counts = tf.math.unsorted_segment_sum(weights, cells, k * k)
    self.confusion_matrix.assign_add(tf.reshape(counts, (k, k)))

  def _iou(self) -> tuple[tf.Tensor, tf.Tensor]:
    matrix = tf.cast(tf.convert_to_tensor(self.confusion_matrix), tf.float64)
    true_positives = tf.linalg.diag_part(matrix)
    union = tf.reduce_sum(matrix, 0) + tf.reduce_sum(matrix, 1) - true_positives
    present = union > 0
    iou = tf.where(present, true_positives / tf.where(present, union, 1.0),
                   tf.constant(float("nan"), tf.float64))
    return iou, present

  def result(self):
    """Mean IOU over classes seen in the labels or the predictions; 0 before any pixel."""
    iou, present = self._iou()
    total = tf.reduce_sum(tf.where(present, iou, 0.0))
    count = tf.reduce_sum(tf.cast(present, tf.float64))
    return tf.cast(tf.math.divide_no_nan(total, count), self.dtype)

  def per_class_iou(self) -> tf.Tensor:
    """IOU of every class [K] (row = label, column = prediction); NaN where never seen."""
    return tf.cast(self._iou()[0], self.dtype)

  def pixel_accuracy(self) -> tf.Tensor:
    """Correct pixels / counted pixels (ignore label excluded); 0 before any pixel."""
    matrix = tf.cast(tf.convert_to_tensor(self.confusion_matrix), tf.float64)
    return tf.cast(tf.math.divide_no_nan(tf.linalg.trace(matrix), tf.reduce_sum(matrix)),
                   self.dtype)

  def get_config(self) -> dict:
    config = super().get_config()
    config.update(num_classes=self.num_classes, ignore_label=self.ignore_label,
                  from_logits=self.from_logits, count_dtype=self.count_dtype)
    return config
