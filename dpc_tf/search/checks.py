"""Type checks of the search's gin settings, made in the driver before any process starts.

gin checks binding names against a configurable's signature when it parses a config, but
not values: `search_algorithm.budget = '10'` or `proxy_trial.steps = 3.5` would otherwise
reach a worker, fail there once per attempt and cost the whole budget. So the search's
configurables are registered with `configurable(name)` (gin.configurable plus a check of
every argument against its annotation on each call), and dataclass settings such as
`proxy_trial` (dpc_tf.proxy.TrialConfig) go through `check_fields`. A mismatch is one
SearchError line naming the binding: `proxy_trial.steps = 3.5 is not an int`.

Pure Python (typing and inspect): the driver stays free of TensorFlow.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable

import gin

from dpc_tf.search.errors import SearchError
from dpc_tf.utils import typecheck

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


_matches, _describe = typecheck.matches, typecheck.describe


def check(where: str, value, hint) -> None:
  """SearchError naming `where` (e.g. 'proxy_trial.steps') unless value fits the annotation."""
  typecheck.check(where, value, hint, SearchError)


def check_fields(name: str, settings) -> None:
  """Every field of a dataclass instance against its annotation (`name` is its gin name)."""
  typecheck.check_fields(name, settings, error_class=SearchError)


def configurable(name: str):
  """gin.configurable(name) whose every call checks its arguments' types first.

  The wrapper keeps the function's signature (`__signature__`, which gin reads), so gin
  still refuses a misspelt binding when it parses the config.
  """
  def register(fn):
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def checked(*args, **kwargs):
      hints = typing.get_type_hints(fn)
      for key, value in signature.bind(*args, **kwargs).arguments.items():
        if key in hints and signature.parameters[key].kind not in _VARIADIC:
          check(f"{name}.{key}", value, hints[key])
      return fn(*args, **kwargs)

    checked.__signature__ = signature
    return gin.configurable(name)(checked)
  return register
