"""An inference copy of a model with every batch norm folded into its convolution.

`fold_batch_norm(model)` clones the model (same architecture, fresh variables holding a copy
of the weights) and folds each conv -> BN block of the copy (dpc_tf.layers.folding); the
original model and its checkpoints are untouched. The copy computes the same function up to
float rounding (tests/models/test_folding.py) and refuses training calls. It is a snapshot:
later changes to the original's weights do not reach it.
"""

from __future__ import annotations

import keras

from dpc_tf.layers.folding import FoldableMixin, Values


def foldable_layers(model: keras.layers.Layer) -> list:
  """Every block of `model` (nested ones included) whose batch norms can be folded."""
  return [l for l in model._flatten_layers(include_self=True, recursive=True)  # pylint: disable=protected-access
          if isinstance(l, FoldableMixin)]


def fold_batch_norm(model: keras.Model) -> keras.Model:
  """A folded inference copy of `model`; `model` itself when it has nothing to fold (or is
  already folded)."""
  blocks = foldable_layers(model)
  if not blocks or all(block.folded for block in blocks):
    return model
  copy = keras.models.clone_model(model)
  # Fold in arrays, then write every variable once (set_weights' order is weights' order).
  values = Values({id(v): a for v, a in zip(copy.weights, model.get_weights())})
  for block in foldable_layers(copy):
    block.fold_batch_norm(values)
  values.write(copy.weights)
  return copy
