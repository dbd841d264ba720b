"""What the guard of every training loop raises (DpcErrors: one line, exit status 2)."""

from dpc_tf.errors import DpcError


class NonFiniteLossError(DpcError, FloatingPointError):
  """A loop produced a NaN/Inf loss or gradient; nothing was saved after it.

  Also a FloatingPointError because proxy/cli.py (until the command layer catches every
  DpcError) reports only the error types it lists, and a diverging trial is a user's fix.
  """


class BadLabelError(DpcError):
  """A batch holds labels that are neither a class id nor the ignore label (a data bug)."""


# dpc_tf/training/cli.py (owned by the command-layer rewrite) still imports the name that
# 02dc657 folded into DpcError; without it every `python -m dpc_tf.train` fails to import.
# Drop this alias together with that import.
UserError = DpcError
