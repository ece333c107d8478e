"""The one error type a user can cause. The CLI prints its message as one line and exits 2."""


class CuratorError(Exception):
    """A user-facing error: bad input, a missing file, an un-migrated or unreachable store."""
