"""What the guard of every training loop raises (DpcErrors: one line, exit status 2)."""

from dpc_tf.errors import DpcError


class NonFiniteLossError(DpcError):
  """A loop produced a NaN/Inf loss or gradient; nothing was saved after it."""


class BadLabelError(DpcError):
  """A batch holds labels that are neither a class id nor the ignore label (a data bug)."""
