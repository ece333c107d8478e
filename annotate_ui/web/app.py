"""The Gradio rater app: the page (keyboard shortcuts, styles), the audit tab and the tabs put
together (`build_app`), and `launch`. The work is in annotate_ui/logic/; the context every handler
gets is annotate_ui/web/context.py, the HTTP routes and the middleware annotate_ui/web/routes.py,
the threshold tuning tab annotate_ui/web/tuning_tab.py.

What the tabs (e.g. annotate_ui/web/listening_tab.py) rely on from this app and its context
(annotate_ui/web/context.py's UIContext):

    def build_listening_tab(ctx: UIContext) -> None
        Called inside `with gr.Tab("Listening sessions"):` of this app's gr.Blocks; builds that
        tab's components and wires its events. Every handler it wires takes a `request: gr.Request`
        parameter and starts with `user = ctx.user(request)` (any active account) or
        `user = ctx.admin(request)` (admins only); both raise gr.Error for anyone else, so the
        role check happens on the server whatever the browser sends. Votes/ratings are stamped
        with `user.id` (an `annotate_ui.logic.auth.AuthUser`: id, name, role, is_admin), never with a
        name from the browser.
        `with ctx.session() as s:` is a Session on the store that commits on success and rolls
        back on error; `ctx.session_factory` is the raw sessionmaker, `ctx.db_url` the store URL.
        `ctx.audio_store` is the curator.audio.AudioStore. Audio goes to a rater only as
        `ctx.media_url(session, user, kind, ref)` (an opaque token kept in the store; the media
        route sends a per-token copy and records the bytes it sent: the playback check),
        never a path from the browser nor a file Gradio caches under its hash. `ctx.errors()` is a context manager turning CuratorError into gr.Error.
        `ctx.on_load` is a list: append `(fn, outputs)` to run fn(request) -> updates when the page
        loads (e.g. to show admin-only parts to admins only).
    Per-user state lives in the store or gr.State, never in module globals.

Security notes: every page is behind the login (`/login` checks the store's argon2 hashes on a
worker thread, never on the event loop, and locks an account or a client out after repeated
failures, shared by every process through the store; see logic/logins.py); a login idle for longer than the session timeout is logged out;
every handler re-resolves the logged-in name to an active account and checks the role; the only
ids the browser sends back are assignment ids, checked against the user. Audio goes out under
opaque per-assignment tokens as per-token copies (annotate_ui/logic/media.py, served by
annotate_ui/web/routes.py), so nothing a browser
receives tells which clip it is. Request bodies over `max_body_bytes` are refused before they
are read, and the page an anonymous visitor gets lists no endpoint.
"""

from __future__ import annotations

import dataclasses
import html

import gradio as gr

from annotate_ui.logic import audit
from annotate_ui.logic import rater_steps as steps
from annotate_ui.web.context import UIContext
from annotate_ui.web.listening_tab import build_listening_tab
from annotate_ui.web.quality_tab import build_quality_tab
from annotate_ui.web.runs_tab import build_runs_tab
from annotate_ui.web.tuning_tab import build_tuning, wire_tuning
from db.errors import CuratorError


# --------------------------------------------------------------------------------------------
# Keyboard shortcuts (1–4 vote, a/b play a side, s skip, u undo), ignored while typing
# --------------------------------------------------------------------------------------------

KEYBOARD_JS = """
<script>
(() => {
  const votes = {"1": "vote-A", "2": "vote-B", "3": "vote-both_good", "4": "vote-both_bad",
                 "s": "audit-skip", "u": "audit-undo"};
  const shown = (el) => el && el.offsetParent !== null;
  function play(id) {
    const box = document.getElementById(id);
    if (!shown(box)) return;
    const button = box.querySelector('button[aria-label="Play"], button[aria-label="Pause"], .play-pause-button');
    if (button) { button.click(); return; }
    const audio = box.querySelector("audio");
    if (audio) { audio.paused ? audio.play() : audio.pause(); }
  }
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target, tag = ((t && t.tagName) || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) return;
    const key = e.key.toLowerCase();
    if (votes[key]) {
      const button = document.getElementById(votes[key]);
      if (shown(button) && !button.disabled) { e.preventDefault(); button.click(); }
    } else if (key === "a" || key === "b") {
      e.preventDefault(); play(key === "a" ? "audio-a" : "audio-b");
    }
  });
})();
</script>
"""

CSS = """
#audit-caption .caption { font-size: 1.3em; padding: .5em 0; white-space: pre-wrap; }
#audit-players .players { display: flex; gap: 1em; flex-wrap: wrap; }
#audit-players .player { flex: 1 1 20em; }
#audit-players .side { font-weight: bold; }
#audit-players audio, #listen-audio audio { width: 100%; }
img.spectrogram { display: block; width: 100%; max-width: 640px; height: auto; image-rendering: auto;
                  border-radius: 4px; margin-top: .3em; }
html.hide-spectrograms img.spectrogram { display: none !important; }
"""

# "Show spectrograms": applied on the page only (a class on <html>), remembered in localStorage
SPECTROGRAM_TOGGLE_JS = """(show) => {
  document.documentElement.classList.toggle("hide-spectrograms", !show);
  try { localStorage.setItem("show-spectrograms", show ? "1" : "0"); } catch (e) {}
  return show;
}"""
SPECTROGRAM_RESTORE_JS = """() => {
  let show = true;
  try { show = localStorage.getItem("show-spectrograms") !== "0"; } catch (e) {}
  document.documentElement.classList.toggle("hide-spectrograms", !show);
  return show;
}"""

INSTRUCTIONS = (
    "Listen to **A** and **B** (keys **a** / **b**), then judge which clip matches the caption better: "
    "**1** A better · **2** B better · **3** both good · **4** both bad · **s** skip · **u** undo the last vote."
)


# --------------------------------------------------------------------------------------------
# The audit tab
# --------------------------------------------------------------------------------------------


def audio_tag(url: str) -> str:
    """A player that asks the media route for its clip only when the rater presses play: the bytes
    the route sends are the playback record a vote is checked against."""
    return f'<audio controls preload="none" src="{html.escape(url)}"></audio>'


def spectrogram_tag(url: str, label: str) -> str:
    """The clip's spectrogram under its player (hidden by the page's "Show spectrograms" box)."""
    return (f'<img class="spectrogram" loading="lazy" src="{html.escape(url)}" '
            f'alt="spectrogram of {html.escape(label)}" width="640" height="128">')


def _players_html(view: steps.AuditView) -> str:
    """The two players: <audio> elements whose URLs are opaque tokens of this assignment's sides (blind)."""
    if view.assignment_id is None:
        return ""
    parts = []
    for clip in view.clips:
        label = clip.side.upper()
        if clip.problem:
            inner = f"<em>{html.escape(clip.problem)}</em>"
        else:
            inner = audio_tag(clip.audio) + spectrogram_tag(clip.spectrogram, f"clip {label}")
        parts.append(f'<div id="audio-{clip.side}" class="player"><div class="side">{label}</div>{inner}</div>')
    return f"<div class='players'>{''.join(parts)}</div>"


def _audit_outputs(view: steps.AuditView):
    """(assignment id, caption html, players html, progress, message, note) of a view.

    Small text only: the audio itself is fetched by the browser from the media route, under
    tokens issued to the logged-in user.
    """
    progress = f"Done **{view.done}** · skipped {view.skipped} · remaining **{view.remaining}**"
    if view.assignment_id is None:
        why = view.empty_reason or "No pair is waiting for you. Thank you!"
        return ("", f"<div class='caption'><em>{html.escape(why)}</em></div>", "", progress, view.message, "")
    return (str(view.assignment_id), f"<div class='caption'>{html.escape(view.caption)}</div>",
            _players_html(view), progress, view.message, "")


def build_app(ctx: UIContext) -> gr.Blocks:
    """The whole app; launch it with `auth=ctx.login`."""
    with gr.Blocks(title="Audio-alpaca rater") as demo:
        with gr.Row():
            who = gr.Markdown(elem_id="who")
            show_spec = gr.Checkbox(value=True, label="Show spectrograms", scale=0, min_width=180,
                                    elem_id="show-spectrograms")
            gr.Button("Log out", link="/logout", size="sm", scale=0, elem_id="logout")
        with gr.Tabs():
            with gr.Tab("Pair audit", id="audit"):
                gr.Markdown(INSTRUCTIONS)
                progress_md = gr.Markdown(elem_id="audit-progress")
                caption = gr.HTML(elem_id="audit-caption")
                assignment = gr.Textbox(visible="hidden", elem_id="audit-assignment", label="assignment")
                players = gr.HTML(elem_id="audit-players")
                message = gr.Markdown(elem_id="audit-message")
                note = gr.Textbox(label="Note (optional)", max_lines=3, elem_id="audit-note")
                with gr.Row():
                    vote_buttons = {v: gr.Button(f"{label}  [{i + 1}]", elem_id=f"vote-{v}", variant="primary")
                                    for i, (v, label) in enumerate(audit.VERDICT_LABELS.items())}
                with gr.Row():
                    skip_btn = gr.Button("Skip  [s]", elem_id="audit-skip")
                    undo_btn = gr.Button("Undo last vote  [u]", elem_id="audit-undo")
            with gr.Tab("Threshold tuning", id="tuning", visible=False, elem_id="tab-tuning") as tuning_tab:
                tuning_parts = build_tuning(ctx)
            with gr.Tab("Listening sessions", id="listening"):
                build_listening_tab(ctx)
            build_runs_tab(ctx)
            build_quality_tab(ctx)

        audit_out = [assignment, caption, players, progress_md, message, note]

        def on_next(request: gr.Request):
            user = ctx.user(request)
            with ctx.errors():
                return _audit_outputs(steps.audit_next(ctx, user))

        def vote_handler(verdict: str):
            def on_vote(assignment_id: str, note_text: str, request: gr.Request):
                """A refused vote (clips not played yet, a replay, another rater's pair) answers with
                the reason in the page's message line and the rater's open pair, nothing recorded:
                a non-queued event's error would reach the page as a bare "Error"."""
                user = ctx.user(request)
                with ctx.errors():
                    try:
                        return _audit_outputs(steps.audit_vote(ctx, user, assignment_id, verdict, note_text))
                    except CuratorError as exc:
                        message = f"⚠ {exc}"
                    with ctx.session() as s:
                        still = audit.current_assignment(s, user)
                    if still is not None and str(still.id) == str(assignment_id):
                        # the same pair stays: its players (and what they played, under the same
                        # tokens), caption and note as they are
                        return gr.update(), gr.update(), gr.update(), gr.update(), message, gr.update()
                    return _audit_outputs(dataclasses.replace(steps.audit_next(ctx, user), message=message))
            return on_vote

        def on_skip(assignment_id: str, request: gr.Request):
            user = ctx.user(request)
            with ctx.errors():
                return _audit_outputs(steps.audit_skip(ctx, user, assignment_id))

        def on_undo(request: gr.Request):
            user = ctx.user(request)
            with ctx.errors():
                return _audit_outputs(steps.audit_undo(ctx, user))

        def on_load(request: gr.Request):
            user = ctx.user(request)
            with ctx.errors():
                pair = _audit_outputs(steps.audit_next(ctx, user))
            return (f"Signed in as **{html.escape(user.name)}** ({user.role})", gr.Tab(visible=user.is_admin), *pair)

        demo.load(on_load, outputs=[who, tuning_tab, *audit_out], api_name="load")
        # the spectrogram switch runs in the browser only (no server round trip)
        show_spec.change(None, inputs=[show_spec], outputs=[show_spec], js=SPECTROGRAM_TOGGLE_JS, queue=False,
                         show_progress="hidden")
        demo.load(None, outputs=[show_spec], js=SPECTROGRAM_RESTORE_JS)
        # The audit events skip Gradio's queue (queue=False): the page POSTs to /gradio_api/run/NAME and
        # gets the outputs in the reply, one round trip instead of a queue join plus an event stream.
        # They are short database calls (no GPU, nothing to wait in line for); API clients that join
        # the queue (gradio_client) are still served.
        fast = dict(outputs=audit_out, queue=False, show_progress="hidden")
        gr.Button("next", visible=False).click(on_next, api_name="next", **fast)
        for v, btn in vote_buttons.items():
            btn.click(vote_handler(v), inputs=[assignment, note], api_name=f"vote_{v}", **fast)
        skip_btn.click(on_skip, inputs=[assignment], api_name="skip", **fast)
        undo_btn.click(on_undo, api_name="undo", **fast)
        wire_tuning(ctx, demo, tuning_parts)
        for fn, outputs in ctx.on_load:
            demo.load(fn, outputs=outputs)
    return demo


def launch(ctx: UIContext, *, host: str = "127.0.0.1", port: int = 7860, prevent_thread_lock: bool = False,
           concurrency: int = 16):
    """Serve the app on a thread of this process (see annotate_ui/web/server.py); returns the server
    (`close()` stops it) at once when PREVENT_THREAD_LOCK, else serves until interrupted."""
    from annotate_ui.web.server import Served as Server, asgi_app

    served = Server(asgi_app(ctx, concurrency), host, port)
    if prevent_thread_lock:
        return served
    try:
        served.thread.join()
    except KeyboardInterrupt:
        served.close()
    return served


__all__ = ["build_app", "launch", "KEYBOARD_JS", "CSS"]
