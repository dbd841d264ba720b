"""What the absl entry points share: gin flags, configuration loading and error reporting.

User errors (errors.UserError) end the program with `PROG: error: <one line>` on stderr and
exit status 2, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

from absl import app, flags, logging

from dpc_tf.training import gin_utils
from dpc_tf.training.errors import UserError

FLAGS = flags.FLAGS
EXIT_USER_ERROR = 2


def define_gin_flags(model_dir_help: Optional[str] = None) -> None:
  flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), parsed in order (repeatable).")
  flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings, e.g. "
                            "'train.num_steps = 100', applied after the files (repeatable).")
  if model_dir_help:
    flags.DEFINE_string("model_dir", None, model_dir_help)


def require_flag(name: str) -> str:
  value = getattr(FLAGS, name)
  if not value:
    raise UserError(f"--{name} is required")
  return value


def parse_gin(model_dir: Optional[str] = None, default_to_operative: bool = False) -> list[str]:
  """Parses --gin_file/--gin_bindings. With default_to_operative and no --gin_file, the
  operative config a training run saved in model_dir is used (evaluate/export a model
  without repeating how it was trained). Returns the files parsed."""
  files = list(FLAGS.gin_file)
  if not files and default_to_operative and model_dir:
    operative = os.path.join(model_dir, gin_utils.OPERATIVE_CONFIG)
    if os.path.isfile(operative):
      logging.info("No --gin_file: using %s", operative)
      files = [operative]
  gin_utils.parse(files, FLAGS.gin_bindings)
  return files


def run(prog: str, main: Callable[[], None]) -> None:
  """app.run(main) with user errors reported as one line; main takes no arguments."""

  def wrapped(argv):
    if len(argv) > 1:
      _fail(prog, f"unexpected arguments {' '.join(argv[1:])} (settings are --flags or "
                  f"--gin_bindings)")
    logging.set_verbosity(logging.INFO)
    try:
      main()
    except UserError as e:
      _fail(prog, str(e))
    except KeyboardInterrupt:
      _fail(prog, "interrupted")

  app.run(wrapped)


def _fail(prog: str, message: str) -> None:
  print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)
