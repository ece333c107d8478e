"""The Gradio rater app: builds components and wires events; the work is in audit.py/tuning.py.

CONTRACT with annotate_ui/listening_tab.py (H-listen), agreed at the start of issue 4:

    def build_listening_tab(ctx: UIContext) -> None
        Called inside `with gr.Tab("Listening sessions"):` of this app's gr.Blocks; builds that
        tab's components and wires its events. Every handler it wires takes a `request: gr.Request`
        parameter and starts with `user = ctx.user(request)` (any active account) or
        `user = ctx.admin(request)` (admins only); both raise gr.Error for anyone else, so the
        role check happens on the server whatever the browser sends. Votes/ratings are stamped
        with `user.id` (an `annotate_ui.auth.AuthUser`: id, name, role, is_admin), never with a
        name from the browser.
        `with ctx.session() as s:` is a Session on the store that commits on success and rolls
        back on error; `ctx.session_factory` is the raw sessionmaker, `ctx.db_url` the store URL.
        `ctx.audio_store` is the curator.audio.AudioStore: serve audio only through
        `ctx.audio_store.read(clip.path)` (or `ctx.clip_audio(session, clip_id, side)`), never a
        path from the browser. `ctx.errors()` is a context manager turning CuratorError into gr.Error.
        `ctx.on_load` is a list: append `(fn, outputs)` to run fn(request) -> updates when the page
        loads (e.g. to show admin-only parts to admins only).
    Per-user state lives in the store or gr.State, never in module globals.

Security notes: every page is behind Gradio's login (`auth=` checks the store's argon2 hashes);
every handler re-resolves the logged-in name to an active account and checks the role; the only
ids the browser sends back are assignment ids, checked against the user.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import fastapi
import gradio as gr
from fastapi.responses import FileResponse, PlainTextResponse
from sqlalchemy.orm import Session, sessionmaker

from annotate_ui import audit, tuning
from annotate_ui.auth import AuthUser, active_user, verify_login
from curator.audio import AudioStore
from curator.errors import CuratorError
from curator.filter import DEFAULT_PRESET, get_preset, list_presets, save_preset, thresholds_of
from db.annotation import DEFAULT_OVERLAP

log = logging.getLogger(__name__)

try:  # H-listen's tab (part 6); the app works without it
    from annotate_ui.listening_tab import LISTENING_KEYBOARD_JS, build_listening_tab
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the checkout
    if _exc.name != "annotate_ui.listening_tab":
        raise
    build_listening_tab, LISTENING_KEYBOARD_JS = None, ""


@dataclass
class UIContext:
    """What every handler needs: the store, the audio store, and who is asking."""

    db_url: str
    session_factory: sessionmaker
    audio_store: AudioStore
    on_load: list = field(default_factory=list)
    _tuning: dict = field(default_factory=dict, repr=False)  # (model1, model2) → TuningData (store data, not user state)
    _tuning_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _write_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold around the audit's write transactions. On SQLite it queues this process's writers on a
        lock, which wakes the next one as soon as the store is free; without it, 20 raters' threads
        meet on SQLite's own lock, whose busy handler sleeps up to 100 ms between tries (the
        seconds-long tail of the load benchmark). Other processes still wait on busy_timeout.
        PostgreSQL locks rows, so nothing is held there."""
        if self.session_factory.kw["bind"].dialect.name != "sqlite":
            yield
            return
        with self._write_lock:
            yield

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.session_factory() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except CuratorError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def user(self, request: gr.Request | None) -> AuthUser:
        """The active account behind REQUEST (Gradio's login), else gr.Error."""
        name = getattr(request, "username", None) if request is not None else None
        with self.session() as s:
            user = active_user(s, name)
        if user is None:
            raise gr.Error("you are not logged in, or your account is disabled; log in again", print_exception=False)
        return user

    def admin(self, request: gr.Request | None) -> AuthUser:
        user = self.user(request)
        if not user.is_admin:
            log.warning("user %s (role %s) was refused an admin action", user.name, user.role)
            raise gr.Error("this action is for admins only", print_exception=False)
        return user

    def login(self, username: str, password: str) -> bool:
        """Gradio's `auth=` callable: the store's argon2 hashes decide (the password is never logged)."""
        with self.session() as s:
            ok = verify_login(s, username, password) is not None
        log.info("login %s for user %r", "succeeded" if ok else "refused", username[:100] if isinstance(username, str) else "?")
        return ok

    def clip_audio(self, session: Session, clip_id: int, side: str):
        return audit.clip_audio(session, self.audio_store, clip_id, side)

    def tuning_data(self, session: Session, models: tuple[str | None, str | None], *, reload: bool = False) -> tuning.TuningData:
        with self._tuning_lock:
            if reload or models not in self._tuning:
                self._tuning[models] = tuning.TuningData.load(session, models)
            return self._tuning[models]


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
#audit-players audio { width: 100%; }
"""

INSTRUCTIONS = (
    "Listen to **A** and **B** (keys **a** / **b**), then judge which clip matches the caption better: "
    "**1** A better · **2** B better · **3** both good · **4** both bad · **s** skip · **u** undo the last vote."
)


# --------------------------------------------------------------------------------------------
# The audit tab
# --------------------------------------------------------------------------------------------


AUDIO_ROUTE = "audit/audio"  # + /{assignment id}/{a|b}: relative, so the app also works under a proxy's prefix


def _players_html(assignment_id: int | None, problems: dict[str, str]) -> str:
    """The two players: <audio> elements whose URLs name only the assignment and the side (blind)."""
    if assignment_id is None:
        return ""
    parts = []
    for side in audit.AUDIO_SIDES:
        label = side.upper()
        if side in problems:
            inner = f"<em>{html.escape(problems[side])}</em>"
        else:
            inner = f'<audio controls preload="auto" src="{AUDIO_ROUTE}/{int(assignment_id)}/{side}"></audio>'
        parts.append(f'<div id="audio-{side}" class="player"><div class="side">{label}</div>{inner}</div>')
    return f"<div class='players'>{''.join(parts)}</div>"


def _audit_outputs(ctx: UIContext, s: Session, task: audit.AuditTask | None, user: AuthUser, message: str = ""):
    """(assignment id, caption html, players html, progress, message, note) for a task.

    Small text only: the audio itself is fetched by the browser from AUDIO_ROUTE, which checks
    that the logged-in user owns the assignment.
    """
    if task is None:
        p = audit.progress(s, user)
        return ("", "<div class='caption'><em>No pair is waiting for you. Thank you!</em></div>", "",
                f"Done **{p.done}** · skipped {p.skipped} · remaining **{p.remaining}**", message, "")
    problems = audit.audio_problems(s, ctx.audio_store, task)
    p = task.progress
    msg = " ".join(x for x in (message, *problems.values()) if x)
    return (str(task.assignment_id), f"<div class='caption'>{html.escape(task.caption)}</div>",
            _players_html(task.assignment_id, problems),
            f"Done **{p.done}** · skipped {p.skipped} · remaining **{p.remaining}**", msg, "")


def _login_name(request: fastapi.Request) -> str | None:
    """The name Gradio's login attached to REQUEST's cookie (the same lookup as Gradio's own /user route)."""
    app = request.app
    cookie_id, tokens = getattr(app, "cookie_id", None), getattr(app, "tokens", None)
    if cookie_id is None or tokens is None:
        return None
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(f"access-token-unsecure-{cookie_id}")
    return tokens.get(token) if token else None


def audio_routes(ctx: UIContext) -> list:
    """The audio route: GET audit/audio/{assignment id}/{a|b} streams that side's stored file.

    Logged-in, active users only, and only for their own open assignments; the file is resolved
    from the store by the server (the browser sends two ids, never a path).
    """
    router = fastapi.APIRouter()

    @router.get("/" + AUDIO_ROUTE + "/{assignment_id:int}/{side}", include_in_schema=False)
    def audit_audio(assignment_id: int, side: str, request: fastapi.Request):
        name = _login_name(request)
        with ctx.session() as s:
            user = active_user(s, name)
            if user is None:
                return PlainTextResponse("you are not logged in, or your account is disabled; log in again", 401)
            try:
                path, media_type = audit.assignment_audio(s, ctx.audio_store, user, assignment_id, side)
            except CuratorError as exc:
                return PlainTextResponse(str(exc), 404)
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})

    return router.routes


def build_app(ctx: UIContext) -> gr.Blocks:
    """The whole app; launch it with `auth=ctx.login`."""
    with gr.Blocks(title="Audio-alpaca rater") as demo:
        with gr.Row():
            who = gr.Markdown(elem_id="who")
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
                tuning_parts = _build_tuning(ctx)
            if build_listening_tab is not None:
                with gr.Tab("Listening sessions", id="listening"):
                    build_listening_tab(ctx)

        audit_out = [assignment, caption, players, progress_md, message, note]

        def on_next(request: gr.Request):
            user = ctx.user(request)
            with ctx.errors(), ctx.session() as s:
                with ctx.writing():
                    task = audit.next_assignment(s, user)
                    s.commit()
                return _audit_outputs(ctx, s, task, user)

        def vote_handler(verdict: str):
            def on_vote(assignment_id: str, note_text: str, request: gr.Request):
                user = ctx.user(request)
                with ctx.errors(), ctx.session() as s:
                    with ctx.writing():
                        audit.vote(s, user, assignment_id, verdict, note_text)
                        s.commit()
                        task = audit.next_assignment(s, user)
                        s.commit()
                    return _audit_outputs(ctx, s, task, user, f"Recorded: {audit.VERDICT_LABELS[verdict]}.")
            return on_vote

        def on_skip(assignment_id: str, request: gr.Request):
            user = ctx.user(request)
            with ctx.errors(), ctx.session() as s:
                with ctx.writing():
                    audit.skip(s, user, assignment_id)
                    s.commit()
                    task = audit.next_assignment(s, user)
                    s.commit()
                return _audit_outputs(ctx, s, task, user, "Skipped.")

        def on_undo(request: gr.Request):
            user = ctx.user(request)
            with ctx.errors(), ctx.session() as s:
                with ctx.writing():
                    task = audit.undo_last(s, user)
                    message = "Your last vote was taken back; judge this pair again."
                    if task is None:
                        task, message = audit.next_assignment(s, user), "No vote to undo."
                    s.commit()
                return _audit_outputs(ctx, s, task, user, message)

        def on_load(request: gr.Request):
            user = ctx.user(request)
            with ctx.errors(), ctx.session() as s:
                with ctx.writing():
                    task = audit.next_assignment(s, user)
                    s.commit()
                pair = _audit_outputs(ctx, s, task, user)
            return (f"Signed in as **{html.escape(user.name)}** ({user.role})", gr.Tab(visible=user.is_admin), *pair)

        demo.load(on_load, outputs=[who, tuning_tab, *audit_out], api_name="load")
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
        _wire_tuning(ctx, demo, tuning_parts)
        for fn, outputs in ctx.on_load:
            demo.load(fn, outputs=outputs)
    return demo


# --------------------------------------------------------------------------------------------
# The threshold tuning tab (admins)
# --------------------------------------------------------------------------------------------

SLIDERS = (  # name, label, min, max (PAPER.md §4.1.2 defaults come from the "paper" preset)
    ("alpha1", "α1: winner score ≥ (model 1)", -1.0, 1.0),
    ("alpha2", "α2: winner score ≥ (model 2)", -1.0, 1.0),
    ("beta1", "β1: loser score ≥ (model 1)", -1.0, 1.0),
    ("beta2", "β2: loser score ≥ (model 2)", -1.0, 1.0),
    ("delta1_min", "Δ1 min (model 1)", -1.0, 2.0),
    ("delta1_max", "Δ1 max (model 1)", -1.0, 2.0),
    ("delta2_min", "Δ2 min (model 2)", -1.0, 2.0),
    ("delta2_max", "Δ2 max (model 2)", -1.0, 2.0),
)
HIST_KEYS = ("alpha1", "alpha2", "delta1", "delta2")


def _build_tuning(ctx: UIContext) -> dict:
    parts: dict = {}
    with gr.Row():
        parts["preset"] = gr.Dropdown(label="Preset", choices=[DEFAULT_PRESET], value=DEFAULT_PRESET,
                                      allow_custom_value=False, elem_id="tuning-preset")
        parts["load_preset"] = gr.Button("Load preset", elem_id="tuning-load")
        parts["reload"] = gr.Button("Reload pairs and votes", elem_id="tuning-reload")
    parts["models"] = gr.Markdown(elem_id="tuning-models")
    sliders = {}
    with gr.Row():
        for name, label, lo, hi in SLIDERS[:4]:
            sliders[name] = gr.Slider(lo, hi, step=0.01, label=label, elem_id=f"slider-{name}")
    with gr.Row():
        for name, label, lo, hi in SLIDERS[4:]:
            sliders[name] = gr.Slider(lo, hi, step=0.01, label=label, elem_id=f"slider-{name}")
    parts["sliders"] = sliders
    parts["total"] = gr.Markdown(elem_id="tuning-total")
    parts["precision"] = gr.Markdown(elem_id="tuning-precision")
    parts["counts"] = gr.Dataframe(label="Kept pairs per strategy (Table 2)", interactive=False, elem_id="tuning-counts")
    plots = {}
    with gr.Row():
        for key in HIST_KEYS[:2]:
            plots[key] = gr.BarPlot(x="score", y="pairs", color="set", label=f"α (winner score), model {key[-1]}",
                                    color_map={"kept": "#2b8a3e", "dropped": "#c92a2a"}, elem_id=f"hist-{key}")
    with gr.Row():
        for key in HIST_KEYS[2:]:
            plots[key] = gr.BarPlot(x="score", y="pairs", color="set", label=f"Δ (winner − loser), model {key[-1]}",
                                    color_map={"kept": "#2b8a3e", "dropped": "#c92a2a"}, elem_id=f"hist-{key}")
    parts["plots"] = plots
    with gr.Row():
        parts["save_name"] = gr.Textbox(label="Save these thresholds as preset", elem_id="tuning-save-name")
        parts["save"] = gr.Button("Save preset", elem_id="tuning-save")
    parts["save_msg"] = gr.Markdown(elem_id="tuning-save-msg")
    gr.Markdown("### Where to spend human effort")
    with gr.Row():
        parts["fill_mode"] = gr.Radio(["uncertain", "random"], value="uncertain", label="Pairs to audit",
                                      info="uncertain: closest to a threshold, or the two CLAP models disagree",
                                      elem_id="fill-mode")
        parts["fill_n"] = gr.Number(value=100, precision=0, label="How many", elem_id="fill-n")
        parts["fill_overlap"] = gr.Number(value=DEFAULT_OVERLAP, precision=0, label="Raters per pair", elem_id="fill-overlap")
        parts["fill"] = gr.Button("Fill the audit queue", elem_id="fill-queue")
    parts["queue"] = gr.Markdown(elem_id="queue-status")
    return parts


def _queue_text(st: audit.QueueStatus) -> str:
    return (f"Audit queue: **{st.items}** pairs ({st.slots} rater slots) · {st.votes} votes · {st.skipped} skipped · "
            f"{st.open_assignments} open · {st.complete_pairs} pairs fully audited")


def _wire_tuning(ctx: UIContext, demo: gr.Blocks, p: dict) -> None:
    sliders = p["sliders"]
    slider_list = [sliders[name] for name, *_ in SLIDERS]
    view_out = [p["total"], p["precision"], p["counts"], *[p["plots"][k] for k in HIST_KEYS]]

    def _view(s: Session, preset_name: str, values, reload: bool = False):
        preset = get_preset(s, preset_name or DEFAULT_PRESET)
        data = ctx.tuning_data(s, (preset.model1, preset.model2), reload=reload)
        th = tuning.thresholds_from_sliders(*values)
        v = tuning.view(data, th, audit.vote_arrays(s))
        total = (f"Kept **{v.counts['total']}** of {v.pool['total']} candidate pairs "
                 f"(models: {html.escape(data.table.model_names[0])} = 1, {html.escape(data.table.model_names[1])} = 2"
                 + (f"; {data.table.n_unscored} pairs without both scores left out" if data.table.n_unscored else "") + ")")
        prec = (v.kept_precision.describe("Kept pairs") + "  \n" + v.dropped_precision.describe("Dropped pairs"))
        return (total, prec, v.counts_frame(), *[v.histogram_frame(k) for k in HIST_KEYS])

    def on_refresh(preset_name, a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi, request: gr.Request):
        ctx.admin(request)
        values = (a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi)
        with ctx.errors(), ctx.session() as s:
            return _view(s, preset_name, values)

    def on_reload(preset_name, a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi, request: gr.Request):
        ctx.admin(request)
        values = (a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi)
        with ctx.errors(), ctx.session() as s:
            return _view(s, preset_name, values, reload=True)

    def on_load_preset(preset_name, request: gr.Request):
        ctx.admin(request)
        with ctx.errors(), ctx.session() as s:
            preset = get_preset(s, preset_name or DEFAULT_PRESET)
            th = thresholds_of(preset)
            values = [getattr(th, name) for name, *_ in SLIDERS]
            names = [x.name for x in list_presets(s)]
            return (gr.Dropdown(choices=names, value=preset.name), *values, *_view(s, preset.name, values),
                    _queue_text(audit.queue_status(s)))

    def on_save(save_name, preset_name, a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi, request: gr.Request):
        user = ctx.admin(request)
        values = (a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi)
        with ctx.errors(), ctx.session() as s:
            base = get_preset(s, preset_name or DEFAULT_PRESET)
            th = tuning.thresholds_from_sliders(*values)
            saved = save_preset(s, save_name, th, author=user.name, model1=base.model1, model2=base.model2)
            names = [x.name for x in list_presets(s)]
            return gr.Dropdown(choices=names, value=saved.name), f"Saved preset **{html.escape(saved.name)}**."

    def on_fill(mode, n, overlap, preset_name, a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi, request: gr.Request):
        user = ctx.admin(request)
        values = (a1, a2, b1, b2, d1lo, d1hi, d2lo, d2hi)
        with ctx.errors(), ctx.session() as s:
            preset = get_preset(s, preset_name or DEFAULT_PRESET)
            data = ctx.tuning_data(s, (preset.model1, preset.model2))
            th = tuning.thresholds_from_sliders(*values)
            if not isinstance(overlap, (int, float)) or overlap != int(overlap):
                raise CuratorError(f"raters per pair {overlap!r} must be a whole number")
            added = tuning.fill_queue(s, data.table, th, n=n, mode=mode, added_by=user.name, overlap=int(overlap))
            return f"Added **{added}** pairs ({html.escape(str(mode))}). " + _queue_text(audit.queue_status(s))

    def on_admin_load(request: gr.Request):
        user = ctx.user(request)
        if not user.is_admin:  # raters get nothing of the tab's data
            return (gr.Dropdown(), *[gr.Slider() for _ in SLIDERS], *[gr.update() for _ in view_out], "")
        return on_load_preset(DEFAULT_PRESET, request)

    admin_out = [p["preset"], *slider_list, *view_out, p["queue"]]
    demo.load(on_admin_load, outputs=admin_out, api_name="tuning_load")
    # live: every drag step and typed value (only the latest pending one runs), and the release
    gr.on([t for sl in slider_list for t in (sl.input, sl.release)], on_refresh, inputs=[p["preset"], *slider_list],
          outputs=view_out, api_name="tuning_refresh", concurrency_limit=None, trigger_mode="always_last",
          show_progress="hidden")
    p["reload"].click(on_reload, inputs=[p["preset"], *slider_list], outputs=view_out, api_name="tuning_reload")
    p["load_preset"].click(on_load_preset, inputs=[p["preset"]], outputs=admin_out, api_name="tuning_load_preset")
    p["save"].click(on_save, inputs=[p["save_name"], p["preset"], *slider_list], outputs=[p["preset"], p["save_msg"]],
                    api_name="tuning_save_preset")
    p["fill"].click(on_fill, inputs=[p["fill_mode"], p["fill_n"], p["fill_overlap"], p["preset"], *slider_list],
                    outputs=[p["queue"]], api_name="fill_queue")


def launch(ctx: UIContext, *, host: str = "127.0.0.1", port: int = 7860, prevent_thread_lock: bool = False,
           concurrency: int = 16) -> gr.Blocks:
    """Build and launch the app behind the store's login (plus the audio route, same login)."""
    # Gradio rebuilds a pandas summary of its last GRADIO_ANALYTICS_MAX_EVENTS (10 000) events after
    # every event (only its monitoring page reads it): O(events) CPU per vote under load. Summarise
    # every 500 events over the last 2 000 instead, unless the operator set these.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "500")
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "2000")
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=concurrency)
    demo.launch(server_name=host, server_port=port, auth=ctx.login, auth_message="Audio-alpaca rater: log in",
                prevent_thread_lock=prevent_thread_lock, show_error=True, css=CSS, head=KEYBOARD_JS + LISTENING_KEYBOARD_JS,
                quiet=True, ssr_mode=False, max_threads=max(40, concurrency + 8),
                app_kwargs={"routes": audio_routes(ctx)})
    return demo


def make_context(db_url: str, audio_store: AudioStore) -> UIContext:
    from db.session import open_store

    return UIContext(db_url=db_url, session_factory=open_store(db_url), audio_store=audio_store)


__all__ = ["UIContext", "build_app", "launch", "make_context", "audio_routes", "KEYBOARD_JS"]
