"""Atomic writes (a temporary file beside the target, then a rename), the temporary siblings of a
folder being written and the removal of those a killed run left behind, and reading UTF-8 text.

A command that writes OUT atomically builds it in `.OUT.tmp-<pid>-<random>` beside it and renames
it into place (an old OUT is first moved to `.OUT.old-<pid>-<random>`). A run killed before the
rename leaves its temp folder; the next run of the same command for the same OUT removes every
such sibling whose process is gone (a live one is another run still writing, and is left alone).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("tmp", "old")


def temp_sibling(target: str | Path, kind: str = "tmp") -> Path:
    """A fresh name beside TARGET for this process: `.NAME.KIND-PID-RANDOM`."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    target = Path(target)
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_siblings(target: str | Path) -> list[Path]:
    """Remove the temp siblings of TARGET left by processes that no longer run; returns them."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(r"^\." + re.escape(target.name) + r"\.(?:" + "|".join(KINDS) + r")-(\d+)-[0-9a-f]{8}$")
    removed = []
    for entry in target.parent.iterdir():
        m = pattern.match(entry.name)
        if m is None or _alive(int(m.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        log.info("removed %s, left by a run that was killed", entry)
        removed.append(entry)
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside PATH, flushed to disk, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """OBJ as indented JSON with sorted keys and a final newline, written atomically to PATH."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_utf8(path: str | Path, what: str = "file") -> str:
    """The text of PATH (a UTF-8 byte order mark is dropped); one CuratorError line when it is
    missing, not a file, or not UTF-8."""
    from db.errors import CuratorError

    path = Path(path)
    if not path.is_file():
        raise CuratorError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CuratorError(f"{what} {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                           f"{exc.start})") from None
    except OSError as exc:
        raise CuratorError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
__all__ = ["atomic_write_bytes", "atomic_write_json", "temp_sibling", "remove_stale_siblings", "read_utf8"]
