"""Spectrograms drawn ahead of the raters: the clips waiting in the audit queue and in open
listening sessions get their cached image (annotate_ui/logic/spectrogram.py) before anyone asks.

Drawing one image costs ~80 ms of CPU. Drawn on the first view, that lands on the rater's next
pair; drawn here, on a background thread of the server (when it starts, when an admin fills the
queue or creates a session, and once a minute), the media route only reads the cached file.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import select, union
from sqlalchemy.orm import Session, sessionmaker

from annotate_ui.logic.spectrogram import cache_path, cached_png
from curator.audio import AudioStore
from db.errors import CuratorError
from db.annotation import AuditItem
from db.listening import ListeningItem, ListeningSession
from db.models import AudioClip, Pair

log = logging.getLogger(__name__)

PERIOD_S = 60.0


def waiting_clips(session: Session, audio_store: AudioStore) -> list[Path]:
    """Stored files of the clips raters may be shown (queued pairs, open sessions) with no cached image yet."""
    ids = union(select(Pair.winner_clip_id).join(AuditItem, AuditItem.pair_id == Pair.id),
                select(Pair.loser_clip_id).join(AuditItem, AuditItem.pair_id == Pair.id),
                select(ListeningItem.clip_id).join(ListeningSession, ListeningSession.id == ListeningItem.session_id)
                .where(ListeningSession.is_open.is_(True))).subquery()
    out = []
    for rel in session.scalars(select(AudioClip.path).where(AudioClip.id.in_(select(ids.c[0])))):
        try:
            path = audio_store.resolve(rel)
        except CuratorError:
            continue
        if path.is_file() and not cache_path(path).is_file():
            out.append(path)
    return out


def predraw(session: Session, audio_store: AudioStore, stop: threading.Event | None = None) -> int:
    """Draw and cache the images of `waiting_clips`; returns how many were drawn. A clip that cannot
    be decoded is left for the media route (which tells the rater to skip)."""
    drawn = 0
    for path in waiting_clips(session, audio_store):
        if stop is not None and stop.is_set():
            break
        try:
            cached_png(path)
            drawn += 1
        except Exception as exc:  # noqa: BLE001 - a broken file must not stop the others
            log.warning("spectrogram of %s not drawn ahead: %s", path.name, exc)
    return drawn


class Predrawer:
    """`predraw` on a background thread: at start, on `kick()`, and every PERIOD_S seconds."""

    def __init__(self, factory: sessionmaker, audio_store: AudioStore, period_s: float = PERIOD_S):
        self.factory, self.audio_store, self.period_s = factory, audio_store, period_s
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="predraw", daemon=True)

    def start(self) -> "Predrawer":
        self._thread.start()
        return self

    def kick(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                with self.factory() as s:
                    n = predraw(s, self.audio_store, self._stop)
                if n:
                    log.info("drew %d spectrogram(s) ahead of the raters", n)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("drawing spectrograms ahead failed")
            self._wake.wait(self.period_s)


__all__ = ["waiting_clips", "predraw", "Predrawer", "PERIOD_S"]
