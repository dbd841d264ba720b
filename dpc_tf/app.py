"""The one command layer: every `python -m dpc_tf.<name>` and `dpc-<name>` runs through here.

A command module defines its absl flags at import, a `main()` without arguments that reads
them, and `run = app.command("dpc_tf.<name>", main)` (its console script's entry point and
its `__main__` call). This module gives all of them the same behaviour:

- flags: `define_gin_flags()` (--gin_file, --gin_bindings), `required(name)`; a bad flag
  value (`--seeds=a`) or a stray positional argument is a user error like any other;
- configuration: `parse_gin(modules)` parses the flags' files and bindings with the one gin
  parser (dpc_tf.gin_config: one include rule, packaged configs);
- errors: a dpc_tf.errors.DpcError ends the command with `PROG: error: <one line>` on
  stderr and exit status 2, no traceback; anything else is a bug and keeps its traceback;
- interruption: Ctrl-C and SIGTERM (a cluster's preemption) stop the command the same way,
  with `PROG: interrupted` and status 130; `on_interrupt` adds what is kept.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable, Iterable, Optional

from absl import app as absl_app
from absl import flags, logging

from dpc_tf import gin_config
from dpc_tf.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, DpcError, one_line

FLAGS = flags.FLAGS


def define_gin_flags() -> None:
  """--gin_file (repeatable, parsed in order) and --gin_bindings (applied after them)."""
  flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), parsed in order; a path not "
                            "on disk is looked up among the packaged configs (gin/...).")
  flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings, applied after the files, "
                            "e.g. 'train.num_steps = 100' (repeatable).")


def required(name: str):
  """The value of flag --name, or a DpcError saying it is required."""
  value = getattr(FLAGS, name)
  if value is None or value == "" or value == []:
    raise DpcError(f"--{name} is required")
  return value


def parse_gin(modules: Iterable[str] = (), files: Optional[list[str]] = None,
              default_dir: Optional[str] = None) -> list[str]:
  """Parses --gin_file/--gin_bindings (or `files`) after importing `modules`.

  default_dir: with no --gin_file, the operative config a training run saved there is used
  (evaluate or export a model without repeating how it was trained). Returns the files.
  """
  files = list(FLAGS.gin_file) if files is None else files
  if not files and default_dir:
    operative = os.path.join(default_dir, gin_config.OPERATIVE_CONFIG)
    if os.path.isfile(operative):
      logging.info("No --gin_file: using %s", operative)
      files = [operative]
  return gin_config.parse(files, FLAGS.gin_bindings, modules=modules)


def integers(name: str) -> tuple[int, ...]:
  """A comma-separated list flag (flags.DEFINE_list) as integers, or DpcError naming it."""
  values = getattr(FLAGS, name)
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise DpcError(f"--{name} must be comma-separated integers, got "
                   f"{','.join(values)!r}") from None


def fail(prog: str, message: str, status: int = EXIT_USER_ERROR) -> None:
  """Prints `PROG: error: message` (one line) and exits with `status`."""
  print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
  sys.exit(status)


def _terminate(signum, frame):
  del signum, frame
  raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C (finally blocks run)


def command(prog: str, main: Callable[..., Optional[int]], on_interrupt: str = "",
            positional: bool = False) -> Callable[[], None]:
  """The entry point of a command: parses flags, runs main(), reports errors as above.

  positional: main takes the positional arguments (a subcommand, benchmark names) as a
  list; otherwise any positional argument is an error. main's return value (None or an
  int) is the exit status.
  """

  def parse_flags(argv: list[str]) -> list[str]:
    try:
      return FLAGS(argv)
    except flags.Error as e:
      fail(prog, str(e))
    return []  # unreachable

  def wrapped(argv: list[str]) -> Optional[int]:
    logging.set_verbosity(logging.INFO)
    try:
      if len(argv) > 1 and not positional:
        raise DpcError(f"unexpected arguments {' '.join(argv[1:])} (settings are --flags or "
                       "--gin_bindings)")
      signal.signal(signal.SIGTERM, _terminate)
      return main(argv[1:]) if positional else main()
    except DpcError as e:
      fail(prog, one_line(e))
    except KeyboardInterrupt:
      print(f"{prog}: interrupted{'; ' + on_interrupt if on_interrupt else ''}",
            file=sys.stderr, flush=True)
      sys.exit(EXIT_INTERRUPTED)
    return None

  def run() -> None:
    absl_app.run(wrapped, flags_parser=parse_flags)

  return run
