"""The one gin parser: which file a path means, one include rule, one-line errors.

Every command parses its configuration here (dpc_tf.app.parse_gin calls `parse`):

- A --gin_file path that exists on disk is used as it is. One that does not, and is
  relative, is looked up among the configs shipped inside the package (dpc_tf/configs/,
  what the repository's gin/ folder links to), with an optional leading `gin/` dropped:
  `gin/search/fake_demo.gin` works from any folder after `pip install dpc-tf`. The log says
  which file was used.
- `include 'X'` inside a config: an absolute X as it is; a relative X relative to the folder
  of the file that includes it, else relative to the packaged config root. Nothing else
  (not the working directory, not gin's global search paths), so a config means the same
  wherever it is parsed from. Shipped configs include each other root-relative
  (`include 'proxy/synthetic.gin'`), so a copy edited elsewhere still finds them.
- gin raises a dozen exception types over several lines; every one becomes a DpcError
  with one line naming the file or binding.

gin 0.5 quirks handled here: it uses importlib.util without importing it, and it resolves
includes through a global list of readers, which is where the include rule plugs in.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util  # noqa: F401  gin 0.5 uses importlib.util without importing it
import os
from typing import Iterable, Optional, Sequence

from absl import logging
import gin

from dpc_tf.errors import DpcError, one_line
from dpc_tf.utils.files import write_text_atomic

PACKAGED_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
"""Where the shipped configs live (package data; the repository's gin/ links here)."""

OPERATIVE_CONFIG = "operative_config.gin"

_STRIPPABLE_PREFIXES = ("gin/", "dpc_tf/configs/")
_including: list[str] = []  # folders of the config files being parsed, innermost last


def packaged_path(path: str) -> Optional[str]:
  """The shipped config a relative path names (with or without `gin/`), or None."""
  if os.path.isabs(path):
    return None
  rel = os.path.normpath(path).replace(os.sep, "/")
  for prefix in _STRIPPABLE_PREFIXES:
    if rel.startswith(prefix):
      rel = rel[len(prefix):]
      break
  candidate = os.path.join(PACKAGED_ROOT, rel)
  return candidate if os.path.isfile(candidate) else None


def resolve_file(path: str) -> str:
  """The config file a --gin_file path means (see the module docstring), as an absolute
  path; DpcError when it is neither on disk nor shipped."""
  expanded = os.path.expanduser(path)
  if os.path.isfile(expanded):
    return os.path.abspath(expanded)
  if os.path.isdir(expanded):
    raise DpcError(f"gin file {path} is a folder, not a config file")
  shipped = packaged_path(expanded)
  if shipped is None and os.path.isabs(expanded):
    raise DpcError(f"gin file not found: {path}")
  if shipped is None:
    raise DpcError(f"gin file not found: {path} (neither on disk nor among the packaged "
                   f"configs in {PACKAGED_ROOT})")
  logging.info("gin file %s: not on disk, using the packaged config %s", path, shipped)
  return shipped


def _resolve_include(name: str) -> str:
  if os.path.isabs(name):
    return name
  if _including:
    beside = os.path.normpath(os.path.join(_including[-1], name))
    if os.path.isfile(beside):
      return beside
  shipped = packaged_path(name)
  if shipped is not None:
    return shipped
  where = f"beside {_including[-1]} or " if _including else ""
  raise DpcError(f"include '{name}': no such config {where}in the packaged configs "
                 f"({PACKAGED_ROOT})")


@contextlib.contextmanager
def _open_config(path: str):
  """gin's file reader for every config: tracks the including file for nested includes."""
  resolved = _resolve_include(path)
  _including.append(os.path.dirname(resolved))
  try:
    with open(resolved, encoding="utf-8") as f:
      yield f
  except UnicodeDecodeError:
    raise DpcError(f"gin file {resolved} is not UTF-8 text") from None
  finally:
    _including.pop()


def _install_reader() -> None:
  """Puts our reader first in gin's list, for every path (absolute or not), so that gin's
  default (open relative to the working folder and its search paths) is never reached."""
  readers = gin.config._FILE_READERS  # pylint: disable=protected-access
  entry = (_open_config, lambda path: True)
  if not readers or readers[0][0] is not _open_config:
    readers.insert(0, entry)


def import_modules(modules: Iterable[str]) -> None:
  """Imports the modules whose configurables a command binds, so gin knows every name."""
  for name in modules:
    importlib.import_module(name)


def parse(gin_files: Sequence[str] = (), bindings: Sequence[str] = (),
          modules: Iterable[str] = (), clear: bool = True) -> list[str]:
  """Parses files, then bindings (later ones win), and finalizes the config.

  modules: imported first (their configurables registered). clear: forget earlier
  bindings. Returns the files used (absolute). Raises DpcError naming the culprit.
  """
  import_modules(modules)
  resolved = [resolve_file(f) for f in gin_files or ()]
  _install_reader()
  if clear:
    with gin.unlock_config():
      gin.clear_config()
  was_locked = gin.config_is_locked()
  try:
    with gin.unlock_config():
      gin.parse_config_files_and_bindings(resolved, list(bindings or ()),
                                          finalize_config=False)
  except DpcError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (gin raises many types)
    # gin's messages span lines (what, then the file and line): keep them all, on one.
    raise DpcError(f"bad gin configuration: {' '.join(str(e).split()) or one_line(e)}"
                   ) from None
  finally:
    _including.clear()
  if not was_locked:
    gin.finalize()
  return resolved


def save_operative_config(model_dir: str, header: str = "",
                          overrides: Optional[dict] = None) -> str:
  """Writes the run's configuration atomically to model_dir/operative_config.gin.

  gin.operative_config_str() lists the bound and default values of every configurable
  called, but not arguments passed explicitly in code (train_and_evaluate's cell and step
  budget, say). `overrides` ({"train.num_steps": 12, ...}) are appended as bindings after
  it, so that parsing the file (what evaluate/export do by default) rebuilds this run.
  """
  path = os.path.join(model_dir, OPERATIVE_CONFIG)
  text = "".join(f"# {line}\n" for line in header.splitlines()) + gin.operative_config_str()
  if overrides:
    text += ("\n# Values this run used, explicit arguments included (they override the "
             "above).\n")
    text += "".join(f"{key} = {value!r}\n" for key, value in overrides.items())
  write_text_atomic(path, text)
  return path
