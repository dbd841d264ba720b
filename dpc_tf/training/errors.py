"""Training's own user-facing error (a DpcError: one line, exit status 2)."""

from dpc_tf.errors import DpcError


class NonFiniteLossError(DpcError):
  """Training produced a NaN/Inf loss or gradient; the last good checkpoint was kept."""
