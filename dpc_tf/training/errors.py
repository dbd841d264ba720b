"""The one exception type the command-line entry points turn into `PROG: error: ...`.

Anything a user can get wrong (a gin file, a binding, a dataset, a model_dir without a
checkpoint, a SavedModel path, an image glob) is raised as a UserError with a one-line
message naming what is wrong and where. Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A mistake in the user's configuration, paths or inputs (one-line message)."""


class NonFiniteLossError(UserError):
  """Training produced a NaN/Inf loss or gradient; the last good checkpoint was kept."""
