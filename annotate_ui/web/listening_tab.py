"""The "Listening sessions" tab: Gradio components and event wiring only.

The work is in `annotate_ui.logic.listening`. `build_listening_tab(ctx)` follows the contract at the
top of `annotate_ui/web/app.py`: every handler takes `request: gr.Request` and starts with
`ctx.user(request)` or `ctx.admin(request)` (server-side role check); ratings are stamped with
that user's id. The rater's current session and item live in a `gr.State`; the logic re-checks
that the item is in that user's queue, so nothing the browser sends can rate someone else's item.
The handlers are methods of `ListeningHandlers`, callable without a browser (tests).
"""

from __future__ import annotations

import html
import tempfile
from typing import Any, Optional

import gradio as gr

from annotate_ui.logic import rater_steps as steps
from annotate_ui.logic.listening import clipsets, design, queue, results
from annotate_ui.web import charts
from curator.stats import MeanCI
from curator.validate import is_number
from db.errors import CuratorError
from db.listening import DEFAULT_GOLD_REL_THRESHOLD, DEFAULT_MIN_RATERS, DEFAULT_N_PROMPTS

DEFINITIONS_MD = (
    "Rate each clip on two scales (arXiv 2404.09956 §5.3), from **1** (worst) to **5** (best):\n\n"
    f"* {queue.OVL_DEFINITION}\n* {queue.REL_DEFINITION}\n\n"
    "Listen to the whole clip before rating (a rating is accepted once the clip has played). "
    "You do not see which system made a clip."
)


# Keyboard shortcuts of the rater part (ignored while typing in a text field; only while the
# tab is shown, so the audit tab's 1–4/s/u keep working there). app.launch() puts this in `head=`.
KEYS_MD = ("Keys: **p** play / pause · **1–5** OVL · **Shift+1–5** or **q w e r t** REL (1–5) · "
           "**Enter** submit · **s** skip · **u** undo the last answer.")

LISTENING_KEYBOARD_JS = """
<script>
(() => {
  const REL_LETTERS = {q: "1", w: "2", e: "3", r: "4", t: "5"};
  const BUTTONS = {s: "listen-skip", u: "listen-undo"};
  const shown = (el) => el && el.offsetParent !== null;
  const typing = (t) => {
    const tag = ((t && t.tagName) || "").toLowerCase();
    if (tag === "textarea" || tag === "select" || (t && t.isContentEditable)) return true;
    return tag === "input" && !["radio", "checkbox", "button", "submit", "range"].includes((t.type || "").toLowerCase());
  };
  function click(id) {
    const button = document.getElementById(id);
    if (!shown(button) || button.disabled) return false;
    button.click();
    return true;
  }
  function choose(boxId, value) {
    const box = document.getElementById(boxId);
    if (!shown(box)) return false;
    const radio = Array.from(box.querySelectorAll('input[type="radio"]')).find((r) => r.value === value);
    if (!radio) return false;
    radio.click();
    return true;
  }
  function play() {
    const box = document.getElementById("listen-audio");
    if (!shown(box)) return false;
    const button = box.querySelector('button[aria-label="Play"], button[aria-label="Pause"], .play-pause-button');
    if (button) { button.click(); return true; }
    const audio = box.querySelector("audio");
    if (!audio) return false;
    audio.paused ? audio.play() : audio.pause();
    return true;
  }
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || typing(e.target)) return;
    if (!shown(document.getElementById("listen-ovl"))) return;  // another tab is open
    const key = (e.key || "").toLowerCase();
    const digit = /^(Digit|Numpad)[1-5]$/.test(e.code || "") ? e.code.slice(-1) : null;
    let done = false;
    if (digit && e.shiftKey) done = choose("listen-rel", digit);
    else if (digit) done = choose("listen-ovl", digit);
    else if (REL_LETTERS[key]) done = choose("listen-rel", REL_LETTERS[key]);
    else if (key === "enter") {
      const tag = ((e.target && e.target.tagName) || "").toLowerCase();
      if (tag === "button" || tag === "a") return;  // Enter on a focused button presses that button
      done = click("listen-submit");
    } else if (BUTTONS[key]) done = click(BUTTONS[key]);
    else if (key === "p") done = play();
    if (done) e.preventDefault();
  });
})();
</script>
"""


def audio_player(url: str, spectrogram_url: Optional[str] = None) -> str:
    """The clip's player: an <audio> element on the opaque media URL (the page keys play it), and
    the clip's spectrogram under it (its own opaque URL)."""
    image = ""
    if spectrogram_url is not None:
        image = (f'<img class="spectrogram" loading="lazy" src="{html.escape(spectrogram_url)}" '
                 'alt="spectrogram of the clip" width="640" height="128">')
    # preload="none": the clip is asked for when the rater presses play (the playback record, see playback.py)
    return f'<div class="listen-player"><audio controls preload="none" src="{html.escape(url)}"></audio>{image}</div>'


def prompt_html(text: Optional[str]) -> str:
    """The prompt as HTML, escaped (a prompt is data, never markup)."""
    if text is None:
        return "<div class='listen-prompt'><em>No clip is waiting for you in this session. Thank you!</em></div>"
    return f"<div class='listen-prompt'>Prompt: <strong>{html.escape(text)}</strong></div>"


def parse_score(value: Any, what: str) -> Any:
    """A radio value (int, or its digit string over the HTTP API) → int; anything else is left for
    the logic to refuse with its message."""
    if value is None or value == "":
        raise CuratorError(f"choose an {what} rating (1–5) before submitting")
    if isinstance(value, str) and value.strip() in {str(v) for v in queue.SCALE}:
        return int(value.strip())
    return value


def _ci(ci: Optional[MeanCI]) -> str:
    """`mean [low, high]` (bootstrap intervals need not be symmetric)."""
    if ci is None or ci.mean is None:
        return "—"
    if ci.half_width is None:
        return f"{ci.mean:.2f}"
    return f"{ci.mean:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def _num(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:.2f}"


def _whole(value: Any, what: str, *, minimum: int = 0, allow_blank: bool = False) -> Optional[int]:
    if isinstance(value, str):
        text = value.strip()
        if allow_blank and not text:
            return None
        if not text.isdigit():
            raise CuratorError(f"{what} must be a whole number ≥ {minimum}" + (" or blank" if allow_blank else "")
                               + f", got {value!r}")
        value = int(text)
    if allow_blank and value is None:
        return None
    if not is_number(value) or value != int(value) or value < minimum:
        raise CuratorError(f"{what} must be a whole number ≥ {minimum}, got {value!r}")
    return int(value)


class ListeningHandlers:
    """The tab's event handlers over a UIContext (annotate_ui/web/context.py)."""

    def __init__(self, ctx):
        self.ctx = ctx

    # -- raters ---------------------------------------------------------------------------------

    def session_choices(self, request: gr.Request):
        self.ctx.user(request)
        with self.ctx.errors(), self.ctx.session() as s:
            rows = design.list_sessions(s, open_only=True)
        return gr.Dropdown(choices=[(r["name"], r["id"]) for r in rows], value=None)

    @staticmethod
    def _outputs(v: steps.ListenView):
        """The rater outputs (state, progress, prompt, audio, message, ovl, rel) of a view."""
        state = {"session_id": v.session_id, "item_id": v.item_id}
        if v.item_id is None:
            return (state, f"Rated **{v.rated}** · skipped {v.skipped} · remaining **{v.total - v.done}**",
                    prompt_html(None), "", v.message, None, None)
        audio = audio_player(v.clip.audio, v.clip.spectrogram) if v.clip.audio else ""
        return (state, f"Clip **{v.done + 1}** of {v.total} · remaining **{v.total - v.done}**",
                prompt_html(v.prompt), audio, v.message, None, None)

    def open_session(self, session_id: Any, request: gr.Request):
        user = self.ctx.user(request)
        with self.ctx.errors():
            return self._outputs(steps.listen_next(self.ctx, user, session_id))

    def _current(self, state: Any) -> tuple[int, int]:
        if not isinstance(state, dict) or state.get("item_id") is None:
            raise CuratorError("no clip is open: choose a listening session")
        return steps.session_id_of(state.get("session_id")), state["item_id"]

    def submit(self, state: Any, ovl: Any, rel: Any, request: gr.Request):
        user = self.ctx.user(request)
        with self.ctx.errors():
            sid, item = self._current(state)
            ovl, rel = parse_score(ovl, "OVL"), parse_score(rel, "REL")
            return self._outputs(steps.listen_rate(self.ctx, user, sid, item, ovl, rel))

    def skip(self, state: Any, request: gr.Request):
        user = self.ctx.user(request)
        with self.ctx.errors():
            sid, item = self._current(state)
            return self._outputs(steps.listen_skip(self.ctx, user, sid, item))

    def undo(self, state: Any, request: gr.Request):
        user = self.ctx.user(request)
        with self.ctx.errors():
            sid = steps.session_id_of(state.get("session_id") if isinstance(state, dict) else None)
            return self._outputs(steps.listen_undo(self.ctx, user, sid))

    # -- admins ---------------------------------------------------------------------------------

    def admin_overview(self, request: gr.Request):
        """(clip set table, clip set choices, session choices) for admins; nothing for raters."""
        user = self.ctx.user(request)
        if not user.is_admin:
            return gr.update(visible=False), gr.update(), gr.update(), gr.update()
        with self.ctx.errors(), self.ctx.session() as s:
            sets, sessions = clipsets.list_clip_sets(s), design.list_sessions(s)
        return (gr.update(visible=True), charts.frame(sets, ["id", "name", "generator", "checkpoint_id", "n_clips", "created_at"]),
                gr.Dropdown(choices=[r["name"] for r in sets], value=None),
                gr.Dropdown(choices=[(r["name"], r["id"]) for r in sessions], value=None))

    def create_clip_set(self, name: str, generator: str, checkpoint: str, strategy: str, request: gr.Request):
        self.ctx.admin(request)
        with self.ctx.errors(), self.ctx.session() as s:
            cs = clipsets.clip_set_from_generator(s, name, generator=(generator or "").strip(),
                                                  checkpoint_id=(checkpoint or "").strip() or None,
                                                  strategy=(strategy or "eval").strip())
            msg = f"Clip set **{html.escape(cs.name)}**: {len(cs.items)} clips of {html.escape(cs.generator)}."
        return (msg, *self.admin_overview(request)[1:3])

    def create_session(self, name: str, sets: list, n_prompts: Any, seed: Any, n_gold: Any, min_raters: Any,
                       gold_threshold: Any, split: str, request: gr.Request):
        user = self.ctx.admin(request)
        with self.ctx.errors():
            if not is_number(gold_threshold):
                raise CuratorError(f"gold REL threshold must be a number from 1 to 5, got {gold_threshold!r}")
            with self.ctx.session() as s:
                listening = design.create_listening_session(
                    s, name, list(sets or []), n_prompts=_whole(n_prompts, "prompts", minimum=1),
                    seed=_whole(seed, "seed"), n_gold=_whole(n_gold, "gold items", allow_blank=True),
                    min_raters=_whole(min_raters, "raters per clip", minimum=1),
                    gold_rel_threshold=float(gold_threshold), split=(split or "").strip() or None,
                    created_by=user.id)
                n_gold_items = sum(it.is_gold for it in listening.items)
                msg = (f"Session **{html.escape(listening.name)}**: {len(listening.items) - n_gold_items} clips "
                       f"({len(listening.systems)} systems) + {n_gold_items} gold items.")
            self.ctx.queue_changed()
        return (msg, *self.admin_overview(request)[3:])

    def set_open(self, session_id: Any, is_open: bool, request: gr.Request):
        self.ctx.admin(request)
        with self.ctx.errors():
            sid = steps.session_id_of(session_id)
            with self.ctx.session() as s:
                listening = design.set_session_open(s, sid, is_open)
                return f"Session **{html.escape(listening.name)}** is now {'open' if listening.is_open else 'closed'}."

    def close_session(self, session_id: Any, request: gr.Request):
        return self.set_open(session_id, False, request)

    def reopen_session(self, session_id: Any, request: gr.Request):
        return self.set_open(session_id, True, request)

    def results(self, session_id: Any, request: gr.Request):
        self.ctx.admin(request)
        with self.ctx.errors():
            sid = steps.session_id_of(session_id)
            with self.ctx.session() as s:
                res = results.session_results(s, sid)
        summary = [
            f"**{html.escape(res.session_name)}**: {res.n_prompts} prompts × {len(res.systems)} systems = "
            f"{res.n_items} clips, {res.n_gold_items} gold items; {res.n_items_covered} clips have ≥ "
            f"{res.min_raters} ratings from kept raters.",
            f"Krippendorff's α (ordinal): OVL **{_ci(res.alpha_ovl_ci)}**, REL **{_ci(res.alpha_rel_ci)}** "
            "(95 % CI: bootstrap over clips).",
            f"Intervals: {html.escape(res.ci_method)}.",
            f"Gold rule: {html.escape(res.gold_rule)} Excluded: "
            + (", ".join(html.escape(n) for n in res.excluded_raters) or "nobody") + ".",
            *[f"⚠ {html.escape(w)}" for w in res.warnings],
        ]
        systems = charts.frame([{
            "system": x.name, "generator": x.generator, "checkpoint": x.checkpoint_id, "clips": x.n_clips,
            "ratings": x.n_ratings, "OVL mean [95% CI]": _ci(x.ovl), "REL mean [95% CI]": _ci(x.rel)}
            for x in res.systems if x.n_ratings])
        differences = charts.frame([{
            "systems": f"{d.system_a} − {d.system_b}", "prompts": d.n_prompts,
            "OVL difference [95% CI]": _ci(d.ovl), "REL difference [95% CI]": _ci(d.rel)}
            for d in res.differences if d.n_prompts])
        raters = charts.frame([{
            "rater": r.name, "rated": r.n_rated, "skipped": r.n_skipped, "of": r.n_assigned,
            "mean OVL": _num(r.mean_ovl), "mean REL": _num(r.mean_rel), "agreement OVL (r)": _num(r.agreement_ovl),
            "agreement REL (r)": _num(r.agreement_rel), "gold rated": r.n_gold,
            "gold mean REL": _num(r.gold_mean_rel), "excluded": "yes" if r.excluded else ("" if r.screened else "unscreened")}
            for r in res.raters])
        return ("  \n".join(summary), systems, differences, raters, charts.systems_chart(res.systems),
                charts.agreement_chart(res.raters))

    def export(self, session_id: Any, request: gr.Request):
        self.ctx.admin(request)
        with self.ctx.errors():
            sid = steps.session_id_of(session_id)
            out = tempfile.mkdtemp(prefix=f"listening-{sid}-")
            with self.ctx.session() as s:
                paths = results.export_results(s, sid, out)
        return [str(p) for p in paths.values()]


def build_listening_tab(ctx) -> ListeningHandlers:
    """The tab's components and events (inside the app's `with gr.Tab(...)`)."""
    h = ListeningHandlers(ctx)
    gr.Markdown(DEFINITIONS_MD, elem_id="listen-definitions")
    with gr.Row():
        session_dd = gr.Dropdown(label="Listening session", choices=[], elem_id="listen-session")
        refresh = gr.Button("Refresh list", size="sm", scale=0, elem_id="listen-refresh")
        start = gr.Button("Start / continue", variant="primary", scale=0, elem_id="listen-start")
    state = gr.State(None)
    progress_md = gr.Markdown(elem_id="listen-progress")
    prompt = gr.HTML(elem_id="listen-prompt")
    audio = gr.HTML(elem_id="listen-audio")
    message = gr.Markdown(elem_id="listen-message")
    gr.Markdown(KEYS_MD, elem_id="listen-keys")
    with gr.Row():
        ovl = gr.Radio(list(queue.SCALE), label="OVL — overall quality, regardless of the text  [1–5]", elem_id="listen-ovl")
        rel = gr.Radio(list(queue.SCALE), label="REL — relevance to the text  [Shift+1–5 or q w e r t]", elem_id="listen-rel")
    with gr.Row():
        submit = gr.Button("Submit rating  [Enter]", variant="primary", elem_id="listen-submit")
        skip = gr.Button("Skip (e.g. no audio)  [s]", elem_id="listen-skip")
        undo = gr.Button("Undo last  [u]", elem_id="listen-undo")
    rater_out = [state, progress_md, prompt, audio, message, ovl, rel]

    with gr.Group(visible=False, elem_id="listen-admin") as admin_box:
        gr.Markdown("### Admin: clip sets and listening sessions")
        with gr.Row():
            cs_name = gr.Textbox(label="New clip set name", elem_id="cs-name")
            cs_gen = gr.Textbox(label="Generator (AudioClip.generator)", elem_id="cs-generator")
            cs_ckpt = gr.Textbox(label="Checkpoint id (blank: the only one)", elem_id="cs-checkpoint")
            cs_strategy = gr.Textbox(value="eval", label="Strategy", elem_id="cs-strategy")
            cs_create = gr.Button("Create clip set", elem_id="cs-create")
        cs_msg = gr.Markdown(elem_id="cs-msg")
        cs_table = gr.Dataframe(charts.no_data(), label="Clip sets (systems)", interactive=False, elem_id="cs-table")
        with gr.Row():
            ls_name = gr.Textbox(label="New session name", elem_id="ls-name")
            ls_sets = gr.Dropdown(label="Systems (clip sets)", multiselect=True, choices=[], elem_id="ls-sets")
            ls_split = gr.Textbox(label="Caption split (blank: any)", elem_id="ls-split")
        with gr.Row():
            ls_n = gr.Number(value=DEFAULT_N_PROMPTS, precision=0, label="Prompts (arXiv 2404.09956 §5.3: 50)", elem_id="ls-n")
            ls_seed = gr.Number(value=0, precision=0, label="Seed", elem_id="ls-seed")
            ls_gold = gr.Textbox(value="", label="Gold items (blank: 10 %, 0: none)", elem_id="ls-gold")
            ls_min = gr.Number(value=DEFAULT_MIN_RATERS, precision=0, label="Raters per clip (≥ 4)", elem_id="ls-min")
            ls_thr = gr.Number(value=DEFAULT_GOLD_REL_THRESHOLD, label="Exclude if gold mean REL ≥", elem_id="ls-thr")
            ls_create = gr.Button("Create session", elem_id="ls-create")
        ls_msg = gr.Markdown(elem_id="ls-msg")
        with gr.Row():
            res_dd = gr.Dropdown(label="Session", choices=[], elem_id="res-session")
            res_show = gr.Button("Show results", elem_id="res-show")
            res_export = gr.Button("Export CSV + JSON", elem_id="res-export")
            res_close = gr.Button("Close session", elem_id="res-close")
            res_open = gr.Button("Reopen session", elem_id="res-open")
        res_md = gr.Markdown(elem_id="res-summary")
        res_systems = gr.Dataframe(charts.no_data(), label="Per system", interactive=False, elem_id="res-systems")
        res_diffs = gr.Dataframe(charts.no_data(), label="Paired differences (same prompts)", interactive=False,
                                 elem_id="res-differences")
        with gr.Row():
            res_chart = gr.Plot(label="OVL and REL: mean and 95 % CI per system", elem_id="res-chart")
            res_agree = gr.Plot(label="Per-rater agreement", elem_id="res-agreement")
        res_raters = gr.Dataframe(charts.no_data(), label="Per rater", interactive=False, elem_id="res-raters")
        res_files = gr.File(label="Export", file_count="multiple", interactive=False, elem_id="res-files")

    refresh.click(h.session_choices, outputs=[session_dd], api_name="listen_sessions")
    start.click(h.open_session, inputs=[session_dd], outputs=rater_out, api_name="listen_open")
    submit.click(h.submit, inputs=[state, ovl, rel], outputs=rater_out, api_name="listen_submit",
                 concurrency_limit=None)
    skip.click(h.skip, inputs=[state], outputs=rater_out, api_name="listen_skip", concurrency_limit=None)
    undo.click(h.undo, inputs=[state], outputs=rater_out, api_name="listen_undo", concurrency_limit=None)

    overview_out = [admin_box, cs_table, ls_sets, res_dd]
    cs_create.click(h.create_clip_set, inputs=[cs_name, cs_gen, cs_ckpt, cs_strategy],
                    outputs=[cs_msg, cs_table, ls_sets], api_name="listen_create_clip_set")
    ls_create.click(h.create_session, inputs=[ls_name, ls_sets, ls_n, ls_seed, ls_gold, ls_min, ls_thr, ls_split],
                    outputs=[ls_msg, res_dd], api_name="listen_create_session")
    res_show.click(h.results, inputs=[res_dd], outputs=[res_md, res_systems, res_diffs, res_raters, res_chart, res_agree],
                   api_name="listen_results")
    res_export.click(h.export, inputs=[res_dd], outputs=[res_files], api_name="listen_export")
    res_close.click(h.close_session, inputs=[res_dd], outputs=[res_md], api_name="listen_close")
    res_open.click(h.reopen_session, inputs=[res_dd], outputs=[res_md], api_name="listen_reopen")
    ctx.on_load.append((h.session_choices, [session_dd]))
    ctx.on_load.append((h.admin_overview, overview_out))
    return h
