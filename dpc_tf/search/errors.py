"""The error the search raises for anything a user can fix (a DpcError: one line, exit 2)."""

from dpc_tf.errors import DpcError


class SearchError(DpcError):
  """A search cannot start or continue; the message is one line naming the cause."""
