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

import collections.abc
import dataclasses
import functools
import inspect
import types
import typing
from typing import Any, Callable

import gin

from dpc_tf.search.errors import SearchError

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _matches(value, hint) -> bool:
  """Whether `value` fits the annotation `hint`; annotations not covered here let it pass."""
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if hint is Any:
    return True
  if origin in (typing.Union, types.UnionType):
    return any(_matches(value, a) for a in args)
  if hint is type(None):
    return value is None
  if hint is bool:
    return isinstance(value, bool)
  if hint is int:  # bool is an int subclass, but `steps = True` is a mistake
    return isinstance(value, int) and not isinstance(value, bool)
  if hint is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if origin is collections.abc.Callable or hint is Callable:
    return callable(value)
  if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
    if not isinstance(value, (list, tuple)):  # gin gives lists and tuples; never a string
      return False
    element = args[0] if args else Any
    return all(_matches(v, element) for v in value)
  if origin in (dict, collections.abc.Mapping) or hint is dict:
    return isinstance(value, collections.abc.Mapping)
  if isinstance(hint, type):
    return isinstance(value, hint)
  return True


def _describe(hint) -> str:
  if isinstance(hint, type) and typing.get_origin(hint) is None:
    article = "an" if hint.__name__[0] in "aeiou" else "a"
    return f"{article} {hint.__name__}"
  return str(hint).replace("typing.", "")


def check(where: str, value, hint) -> None:
  """SearchError naming `where` (e.g. 'proxy_trial.steps') unless value fits the annotation."""
  if not _matches(value, hint):
    raise SearchError(f"{where} = {value!r} is not {_describe(hint)}")


def check_fields(name: str, settings) -> None:
  """Every field of a dataclass instance against its annotation (`name` is its gin name)."""
  hints = typing.get_type_hints(type(settings))
  for field in dataclasses.fields(settings):
    check(f"{name}.{field.name}", getattr(settings, field.name), hints[field.name])


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
