"""The "Threshold tuning" tab (admins): the filter's thresholds as sliders over the scored pairs
(arXiv 2404.09956 §4.1.2), their histograms and counts, presets, and filling the audit queue.
Gradio components and event wiring only; the work is in annotate_ui/logic/tuning.py."""

from __future__ import annotations

import html

import gradio as gr
from sqlalchemy.orm import Session

from annotate_ui.logic import audit, tuning
from annotate_ui.web import charts
from annotate_ui.web.context import UIContext
from curator.filter import DEFAULT_PRESET, get_preset, list_presets, save_preset, thresholds_of
from db.annotation import DEFAULT_OVERLAP
from db.errors import CuratorError


SLIDERS = (  # name, label, min, max (arXiv 2404.09956 §4.1.2 defaults come from the "paper" preset)
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


def build_tuning(ctx: UIContext) -> dict:
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
    parts["counts"] = gr.Dataframe(charts.no_data(), label="Kept pairs per strategy (Table 2)", interactive=False,
                                   elem_id="tuning-counts")
    plots = {}
    with gr.Row():
        for key in HIST_KEYS[:2]:
            plots[key] = gr.BarPlot(x="score", y="pairs", color="set", label=f"α (winner score), model {key[-1]}",
                                    color_map=charts.HISTOGRAM_COLOURS, elem_id=f"hist-{key}")
    with gr.Row():
        for key in HIST_KEYS[2:]:
            plots[key] = gr.BarPlot(x="score", y="pairs", color="set", label=f"Δ (winner − loser), model {key[-1]}",
                                    color_map=charts.HISTOGRAM_COLOURS, elem_id=f"hist-{key}")
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


def wire_tuning(ctx: UIContext, demo: gr.Blocks, p: dict) -> None:
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
        return (total, prec, v.counts_frame(),
                *[charts.with_threshold_lines(v.histogram_frame(k), charts.histogram_lines(k, th)) for k in HIST_KEYS])

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
            s.commit()
            ctx.queue_changed()
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


__all__ = ["build_tuning", "wire_tuning"]
