"""A rater's steps (next pair, vote, skip, undo; next clip, rate, skip, undo) as plain data.

One implementation for both ways the app is driven: the Gradio tabs render these views as HTML,
the JSON routes (annotate_ui/web/rater_api.py) send them as they are. Each step is the domain call
(annotate_ui/logic/audit.py, annotate_ui/logic/listening/queue.py, which check the user, the assignment and the
input) plus what the rater sees next: the caption or prompt and opaque media URLs of the clips
(never a clip id, a path or a system name).

CTX is the app's UIContext (annotate_ui/web/context.py): `session()`, `writing()`, `lease_due()`,
`audio_store`, `media_url(user, kind, ref, what)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from annotate_ui.logic import audit
from annotate_ui.logic.auth import AuthUser
from annotate_ui.logic.listening import queue
from curator.validate import is_int
from db.errors import CuratorError


@dataclass(frozen=True)
class Clip:
    """One player: opaque URLs of the audio and its spectrogram, or the problem (the rater skips)."""

    side: str  # "a"/"b" in the audit, "" in a listening session
    audio: Optional[str]
    spectrogram: Optional[str]
    problem: Optional[str] = None


@dataclass(frozen=True)
class AuditView:
    assignment_id: Optional[int]  # None: no pair is waiting
    caption: Optional[str]  # raw text: the page escapes it
    clips: tuple[Clip, ...]
    done: int
    skipped: int
    remaining: int
    message: str = ""
    empty_reason: str = ""  # why no pair is waiting, when it is not the end of the queue

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ListenView:
    session_id: int
    item_id: Optional[int]  # None: nothing left in this session
    prompt: Optional[str]
    clip: Optional[Clip]
    done: int
    total: int
    rated: Optional[int]  # set when the session is finished (the end screen counts them)
    skipped: Optional[int]
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# The pair audit
# --------------------------------------------------------------------------------------------


def _audit_view(ctx, s, user: AuthUser, task: audit.AuditTask | None, message: str = "") -> AuditView:
    if task is None:
        p = audit.progress(s, user)
        why = ("An admin has excluded your answers from the results: there is nothing to judge."
               if audit.is_excluded(s, user.id) else "")
        return AuditView(None, None, (), p.done, p.skipped, p.remaining, message, why)
    problems = audit.audio_problems(s, ctx.audio_store, task)
    clips = []
    for side in audit.AUDIO_SIDES:
        ref = (int(task.assignment_id), side)
        if side in problems:
            clips.append(Clip(side, None, None, problems[side]))
        else:
            clips.append(Clip(side, ctx.media_url(s, user, "audit", ref), ctx.media_url(s, user, "audit", ref, "spectrogram")))
    p = task.progress
    msg = " ".join(x for x in (message, *problems.values()) if x)
    return AuditView(task.assignment_id, task.caption, tuple(clips), p.done, p.skipped, p.remaining, msg)


def audit_next(ctx, user: AuthUser) -> AuditView:
    """USER's open pair, else a new one from the queue."""
    with ctx.session() as s:
        with ctx.writing():
            task = audit.next_assignment(s, user, lease_s=ctx.lease_due())
            s.commit()
        return _audit_view(ctx, s, user, task)


def audit_vote(ctx, user: AuthUser, assignment_id: Any, verdict: str, note: str | None = None) -> AuditView:
    """Record USER's verdict (refused: another's pair, a replay, a bad verdict), then the next pair."""
    with ctx.session() as s:
        with ctx.writing():
            audit.vote(s, user, assignment_id, verdict, note, min_played_share=ctx.min_played_share)
            s.commit()  # the vote is stored whatever happens to the next pair
            task = audit.next_assignment(s, user, lease_s=ctx.lease_due())
            s.commit()
        return _audit_view(ctx, s, user, task, f"Recorded: {audit.VERDICT_LABELS[verdict]}.")


def audit_skip(ctx, user: AuthUser, assignment_id: Any) -> AuditView:
    with ctx.session() as s:
        with ctx.writing():
            audit.skip(s, user, assignment_id)
            s.commit()
            task = audit.next_assignment(s, user, lease_s=ctx.lease_due())
            s.commit()
        return _audit_view(ctx, s, user, task, "Skipped.")


def audit_undo(ctx, user: AuthUser) -> AuditView:
    with ctx.session() as s:
        with ctx.writing():
            task = audit.undo_last(s, user)
            message = "Your last vote was taken back; judge this pair again."
            if task is None:
                task, message = audit.next_assignment(s, user, lease_s=ctx.lease_due()), "No vote to undo."
            s.commit()
        return _audit_view(ctx, s, user, task, message)


# --------------------------------------------------------------------------------------------
# Listening sessions
# --------------------------------------------------------------------------------------------


def session_id_of(value: Any) -> int:
    if not is_int(value):
        raise CuratorError("choose a listening session first")
    return int(value)


def _listen_view(ctx, s, session_id: int, user: AuthUser, message: str = "") -> ListenView:
    q = queue.next_item(s, session_id, user, ctx.audio_store)
    if q is None:
        p = queue.progress(s, session_id, user)
        return ListenView(session_id, None, None, None, p.rated + p.skipped, p.total, p.rated, p.skipped, message)
    if q.audio_error is None:
        # an opaque per-item token, never Gradio's file cache (which names a file by its sha256, so
        # a gold item would share its URL with the real item whose clip it reuses)
        ref = (session_id, q.item_id)
        clip = Clip("", ctx.media_url(s, user, "listen", ref), ctx.media_url(s, user, "listen", ref, "spectrogram"))
    else:
        clip = Clip("", None, None, q.audio_error)
    msg = " ".join(x for x in (message, q.audio_error and f"⚠ {q.audio_error}") if x)
    return ListenView(session_id, q.item_id, q.prompt, clip, q.done, q.total, None, None, msg)


def listen_next(ctx, user: AuthUser, session_id: Any, message: str = "") -> ListenView:
    """USER's next clip of the listening session (their own order), or the end of it."""
    sid = session_id_of(session_id)
    with ctx.session() as s, ctx.writing():  # the first call writes the rater's order
        view = _listen_view(ctx, s, sid, user, message)
        s.commit()
    return view


def listen_rate(ctx, user: AuthUser, session_id: Any, item_id: Any, ovl: Any, rel: Any) -> ListenView:
    """Store OVL and REL of an item of USER's queue (refused: a replay, clips not played), then the next clip."""
    sid = session_id_of(session_id)
    with ctx.session() as s, ctx.writing():
        res = queue.submit_rating(s, sid, user, item_id, ovl, rel, min_played_share=ctx.min_played_share)
        s.commit()
    return listen_next(ctx, user, sid, f"Recorded OVL {res.ovl}, REL {res.rel}.")


def listen_skip(ctx, user: AuthUser, session_id: Any, item_id: Any) -> ListenView:
    sid = session_id_of(session_id)
    with ctx.session() as s, ctx.writing():
        try:
            queue.item_audio_path(s, ctx.audio_store, sid, user, item_id)
            reason = "skipped"
        except CuratorError:
            reason = "audio missing or unreadable"
        queue.skip_item(s, sid, user, item_id, reason=reason)
        s.commit()
    return listen_next(ctx, user, sid, "Skipped.")


def listen_undo(ctx, user: AuthUser, session_id: Any) -> ListenView:
    sid = session_id_of(session_id)
    with ctx.session() as s, ctx.writing():
        item = queue.undo_last(s, sid, user)
        s.commit()
    return listen_next(ctx, user, sid, "Nothing to undo." if item is None
                       else "Your last answer was taken back; rate this clip again.")


__all__ = ["Clip", "AuditView", "ListenView", "audit_next", "audit_vote", "audit_skip", "audit_undo",
           "listen_next", "listen_rate", "listen_skip", "listen_undo", "session_id_of"]
