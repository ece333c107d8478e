"""The "Training runs" tab (admins): Gradio components and event wiring only; the work is in
annotate_ui/logic/runs.py. Raters never see the tab, and every handler checks the admin role."""

from __future__ import annotations

import html
from dataclasses import asdict
from typing import Any

import gradio as gr

from annotate_ui.logic import runs
from annotate_ui.web import charts

RUN_COLUMNS = {"id": "run", "status": "status", "base_model": "base model", "source": "source", "n_pairs": "pairs",
               "global_step": "step", "checkpoints": "checkpoints", "loss": "loss",
               "implicit_accuracy": "implicit accuracy", "reward_margin": "reward margin", "out_dir": "folder",
               "started_at": "started", "finished_at": "finished"}


class RunsHandlers:
    def __init__(self, ctx):
        self.ctx = ctx

    def overview(self, request: gr.Request):
        """(tab visibility, runs table, run choices): the tab for admins only."""
        user = self.ctx.user(request)
        if not user.is_admin:
            return gr.Tab(visible=False), gr.update(), gr.update()
        with self.ctx.errors(), self.ctx.session() as s:
            rows = runs.list_runs(s)
        table = charts.frame([{RUN_COLUMNS[k]: v for k, v in asdict(r).items()} for r in rows])
        choices = [(f"run {r.id}: {r.status}, step {r.global_step} ({r.base_model})", r.id) for r in rows]
        return gr.Tab(visible=True), table, gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    def refresh(self, request: gr.Request):
        self.ctx.admin(request)
        return self.overview(request)[1:]

    def show(self, run_id: Any, request: gr.Request):
        self.ctx.admin(request)
        with self.ctx.errors(), self.ctx.session() as s:
            run = runs.get_run(s, run_id)
            curves = runs.run_curves(run)
            evals = runs.checkpoint_evals(s, run)
            title = (f"**Run {run.id}** · {html.escape(run.status)} · step {run.global_step} · "
                     f"{run.n_pairs} pairs from {html.escape(run.source)} · {html.escape(run.out_dir)}")
            if run.error:
                title += f"  \n⚠ {html.escape(run.error[:300])}"
        if curves.empty:
            title += f"  \nNo metrics yet in {html.escape(runs.METRICS_FILE)}."
        return title, charts.curves_chart(curves, f"Run {run.id}"), charts.frame(evals)


def build_runs_tab(ctx) -> RunsHandlers:
    """Inside the app's gr.Tabs: the tab, its components and events; shown to admins on page load."""
    h = RunsHandlers(ctx)
    with gr.Tab("Training runs", id="runs", visible=False, elem_id="tab-runs") as tab:
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm", scale=0, elem_id="runs-refresh")
        table = gr.Dataframe(charts.no_data(), label="Training runs (trainer run)", interactive=False,
                             elem_id="runs-table")
        with gr.Row():
            choice = gr.Dropdown(label="Run", choices=[], elem_id="runs-choice")
            show = gr.Button("Show curves and evals", elem_id="runs-show")
        title = gr.Markdown(elem_id="runs-title")
        curves = gr.Plot(label="Loss, implicit accuracy and reward margin", elem_id="runs-curves")
        evals = gr.Dataframe(charts.no_data(), label="Eval scores of the checkpoints (trainer eval)",
                             interactive=False, elem_id="runs-evals")
    refresh.click(h.refresh, outputs=[table, choice], api_name="runs_refresh")
    show.click(h.show, inputs=[choice], outputs=[title, curves, evals], api_name="runs_show")
    ctx.on_load.append((h.overview, [tab, table, choice]))
    return h
