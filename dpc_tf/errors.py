"""The one base class of every error a user can fix, and the one way to print it.

Anything a user can get wrong (a flag, a gin file or binding, a cell file, a dataset, a
cache or checkpoint made with other settings, a path) is raised as a `DpcError` (or a
subclass) whose message is one line naming what is wrong and where. Every command
(dpc_tf.app.run) turns it into `PROG: error: <one line>` on stderr and exit status
EXIT_USER_ERROR, without a traceback. Any other exception is a bug and keeps its traceback:
builtin ValueError/TypeError are never treated as user errors.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2
"""Exit status of a command stopped by a DpcError (also by a bad flag)."""

EXIT_INTERRUPTED = 130
"""Exit status of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells do)."""


class DpcError(Exception):
  """A mistake in the user's settings, paths or inputs; the message is one line."""


def one_line(error: BaseException) -> str:
  """The message of `error` as one line, for `PROG: error: ...`, logs and result files.

  TensorFlow wraps an exception raised while tracing a tf.function in text whose first line
  is boilerplate ('in user code:' or '{{function_node ...'): the real message is its last
  line. Otherwise the first non-empty line is the message; whitespace runs become one space.
  """
  lines = [" ".join(l.split()) for l in str(error).splitlines()]
  lines = [l for l in lines if l]
  if not lines:
    return type(error).__name__
  if lines[0].startswith(("in user code", "{{function_node")):
    return f"{type(error).__name__} while tracing: {lines[-1]}"
  return lines[0]
