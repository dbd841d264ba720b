"""Writes TF1-style (name-based, tf.compat.v1.train.Saver) checkpoints.

For tests and for reproducing a release's layout without its files: the converter reads
these exactly as it reads the released DeepLab checkpoints.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf


def write_tf1_checkpoint(prefix: str, variables: Mapping[str, np.ndarray]) -> str:
  """Saves {TF1 variable name: value} under `prefix`; returns the prefix written."""
  v1 = tf.compat.v1
  with tf.Graph().as_default():
    created, assigns, feed = [], [], {}
    for name, value in variables.items():
      value = np.asarray(value)
      dtype = tf.as_dtype(value.dtype)
      variable = v1.get_variable(name, shape=value.shape, dtype=dtype, use_resource=False,
                                 initializer=v1.zeros_initializer())
      # Values go in through placeholders, never as graph constants (2 GB proto limit).
      placeholder = v1.placeholder(dtype, value.shape)
      assigns.append(v1.assign(variable, placeholder))
      feed[placeholder] = value
      created.append(variable)
    saver = v1.train.Saver(var_list=created)
    with v1.Session() as session:
      session.run(assigns, feed_dict=feed)
      return saver.save(session, prefix, write_meta_graph=False)
