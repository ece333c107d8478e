"""What the media route does for one request, without the web framework: resolve the token to the
clip it stands for (only for the user it was issued to, only while that clip is theirs to hear),
send its blind copy (annotate_ui/logic/media.py) or the part a range asks for, and write the bytes
sent of an audio copy into the playback record (annotate_ui/logic/playback.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from annotate_ui.logic import audit, playback
from annotate_ui.logic.auth import AuthUser
from annotate_ui.logic.listening import queue
from annotate_ui.logic.media import TOKEN_RE, CopyCache, blind_copy, byte_range
from annotate_ui.logic.spectrogram import blind_png, cached_png
from curator.audio import AudioStore
from db.errors import CuratorError

NO_SUCH_CLIP = "no open clip of yours has this address; reload the page"


@dataclass(frozen=True)
class Served:
    """One answer of the media route: STATUS 200 (all of DATA), 206 (bytes START..END of TOTAL) or 416."""

    status: int
    body: bytes
    media_type: str
    total: int
    start: int = 0
    end: int = -1


def serve(session: Session, audio_store: AudioStore, copies: CopyCache, user: AuthUser, token: str,
          range_header: str | None) -> Served:
    """The blind copy (or the part a single-range header asks for) of the clip TOKEN stands for,
    when USER may hear it now; CuratorError otherwise (one line that names nothing, the same for an
    unknown token and another user's). The bytes sent of an audio copy go into the playback record."""
    grant = playback.find_grant(session, token, user.id) if TOKEN_RE.match(token or "") else None
    if grant is None:
        raise CuratorError(NO_SUCH_CLIP)
    if grant.kind == "audit":
        path, _ = audit.assignment_audio(session, audio_store, user, *grant.ref)
    else:
        path = queue.item_audio_path(session, audio_store, grant.ref[0], user.id, grant.ref[1])
    cached = copies.get(token)
    if cached is None:
        if grant.what == "spectrogram":
            cached = blind_png(cached_png(path), token)
        else:
            cached = blind_copy(path.read_bytes(), token)
        copies.put(token, cached)
    data, media_type = cached
    rng = byte_range(range_header, len(data))
    if rng is False:
        return Served(416, b"", media_type, len(data))
    start, end = (0, len(data) - 1) if rng is None else rng
    if grant.what == "audio":
        playback.record_served(session, grant.id, start, end, len(data))
    if rng is None:
        return Served(200, data, media_type, len(data), start, end)
    return Served(206, data[start:end + 1], media_type, len(data), start, end)


__all__ = ["NO_SUCH_CLIP", "Served", "serve"]
