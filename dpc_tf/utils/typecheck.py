"""Type checks of gin settings against their annotations: one line naming the setting.

gin checks binding names when it parses a config, but not values: `train.num_steps = '10'`
or `proxy_trial.steps = 3.5` would otherwise fail later with a TypeError traceback (or run
with a wrong value). Configurations call `check_fields` on their dataclass (or `check` per
argument) where the settings enter: `train.base_learning_rate = 'a' is not a float`.
Pure Python (typing only).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any, Callable, Sequence

from dpc_tf.errors import DpcError


def matches(value, hint) -> bool:
  """Whether `value` fits the annotation `hint`; annotations not covered here let it pass."""
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if hint is Any:
    return True
  if origin in (typing.Union, types.UnionType):
    return any(matches(value, a) for a in args)
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
    return all(matches(v, element) for v in value)
  if origin in (dict, collections.abc.Mapping) or hint is dict:
    return isinstance(value, collections.abc.Mapping)
  if isinstance(hint, type):
    return isinstance(value, hint)
  return True


def describe(hint) -> str:
  if isinstance(hint, type) and typing.get_origin(hint) is None:
    article = "an" if hint.__name__[0] in "aeiou" else "a"
    return f"{article} {hint.__name__}"
  return str(hint).replace("typing.", "")


def check(where: str, value, hint, error_class: type = DpcError) -> None:
  """error_class naming `where` (e.g. 'train.num_steps') unless value fits the annotation."""
  if not matches(value, hint):
    raise error_class(f"{where} = {value!r} is not {describe(hint)}")


def check_fields(name: str, settings, skip: Sequence[str] = (),
                 error_class: type = DpcError) -> None:
  """Every field of a dataclass instance against its annotation (`name`: its gin name);
  fields in `skip` have their own, wider checks (a crop given as one int or [h, w])."""
  hints = typing.get_type_hints(type(settings))
  for field in dataclasses.fields(settings):
    if field.name not in skip:
      check(f"{name}.{field.name}", getattr(settings, field.name), hints[field.name],
            error_class)
