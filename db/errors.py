"""The one error type a user can cause. The CLI prints its message as one line and exits 2."""

from __future__ import annotations

import re

MAX_QUOTED = 60  # characters of a quoted value a message keeps (then "…")
MAX_MESSAGE = 600  # characters of a whole message
# a value in quotes: the quote opens after a non-word character and closes before one ("can't" is no quote)
_QUOTED = re.compile(r"""(?<!\w)(?:'[^'\n]{%d,}'|"[^"\n]{%d,}")(?!\w)""" % (MAX_QUOTED + 20, MAX_QUOTED + 20))


def shorten(message: str) -> str:
    """MESSAGE with every quoted value longer than MAX_QUOTED + 20 characters cut to its first
    MAX_QUOTED, and the whole cut to MAX_MESSAGE, so an error never echoes a pasted 100 KB input."""
    text = _QUOTED.sub(lambda m: m.group(0)[:MAX_QUOTED + 1] + "…" + m.group(0)[-1], str(message))
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def quote(value: object, limit: int = MAX_QUOTED) -> str:
    """repr() of VALUE, of at most LIMIT characters of it (for messages naming a bad value)."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


class CuratorError(Exception):
    """A user-facing error: bad input, a missing file, an un-migrated or unreachable store.
    The message is kept short (see `shorten`)."""

    def __init__(self, message: object = "", *args: object):
        super().__init__(shorten(str(message)), *args)
