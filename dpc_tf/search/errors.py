"""The one error type the search raises for anything a user can fix.

The command prints its message as a single line and exits, so every message names what is
wrong and, where possible, what to do about it.
"""


class SearchError(RuntimeError):
  """A search cannot start or continue; the message is one line naming the cause."""
