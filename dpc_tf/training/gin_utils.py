"""Parsing gin files and bindings with one-line errors, and saving the operative config.

gin 0.5 quirks handled here: a missing file surfaces as `AttributeError: module 'importlib'
has no attribute 'util'` (it forgets an import), errors span several lines, and `include`
paths resolve against search paths only, never against the including file's folder.
Our configs include by path under gin/ ('train/cityscapes.gin').
"""

from __future__ import annotations

import importlib.util  # noqa: F401  gin 0.5 uses importlib.util without importing it.
import os
from typing import Iterable, Optional

import gin

from dpc_tf.errors import DpcError
from dpc_tf.utils.files import write_text_atomic

OPERATIVE_CONFIG = "operative_config.gin"
_REPO_GIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "gin")


def register_configurables() -> None:
  """Imports every module that defines a configurable, so that gin validates all names."""
  # pylint: disable=import-outside-toplevel,unused-import
  import dpc_tf.data  # noqa: F401
  import dpc_tf.models  # noqa: F401
  import dpc_tf.training.config  # noqa: F401


def _one_line(error: BaseException) -> str:
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  return " ".join(lines) if lines else type(error).__name__


def parse(gin_files: Iterable[str] = (), bindings: Iterable[str] = (),
          clear: bool = True) -> None:
  """Parses files then bindings (later ones win); raises DpcError naming the culprit."""
  register_configurables()
  gin_files = [os.path.expanduser(f) for f in gin_files or ()]
  bindings = list(bindings or ())
  for path in gin_files:
    if not os.path.isfile(path):
      raise DpcError(f"gin file not found: {path}")
  # `include` paths resolve against the working directory, then the repository's gin/
  # folder (so 'train/cityscapes.gin' works from anywhere). Deliberately not against the
  # including file's folder: search paths are process-global in gin, and adding
  # gin/train would shadow same-named files other packages include (gin/search/...).
  search_paths = [_REPO_GIN]
  if clear:
    gin.clear_config()
  was_locked = gin.config_is_locked()
  for path in dict.fromkeys(search_paths):
    if path not in gin.config._LOCATION_PREFIXES:  # pylint: disable=protected-access
      gin.add_config_file_search_path(path)
  try:
    with gin.unlock_config():
      gin.parse_config_files_and_bindings(gin_files, bindings, finalize_config=False)
  except (ValueError, SyntaxError, OSError, KeyError, TypeError) as e:
    raise DpcError(f"bad gin configuration: {_one_line(e)}") from None
  if not was_locked:
    gin.finalize()


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
