"""What differs between two settings dicts: the one comparison behind every "made with other
settings" refusal (a feature cache's manifest, a halving table's settings file)."""

from __future__ import annotations

import json
from typing import Callable


def as_json(value):
  """Settings as JSON sees them (tuples become lists), so a reloaded file compares equal."""
  return json.loads(json.dumps(value))


def describe_differences(found: dict, wanted: dict, line: Callable[[str, object, object], str],
                         missing: object = None, prefix: str = "") -> list[str]:
  """line(dotted key, found value, wanted value) for every differing (nested) key, compared
  as JSON sees them; a key one side lacks reads as `missing`."""
  found, wanted = as_json(found), as_json(wanted)
  lines = []
  for key in sorted(set(found) | set(wanted)):
    a, b = found.get(key, missing), wanted.get(key, missing)
    if isinstance(a, dict) and isinstance(b, dict):
      lines.extend(describe_differences(a, b, line, missing, f"{prefix}{key}."))
    elif a != b:
      lines.append(line(f"{prefix}{key}", a, b))
  return lines
