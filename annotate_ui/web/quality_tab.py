"""The "Raters" tab (admins): the quality flags of every rater and the exclude / include control.

Components and event wiring only; the work is in annotate_ui/logic/quality.py. Raters never see the
tab, and every handler checks the admin role on the server.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from annotate_ui.logic import quality
from annotate_ui.web import charts
from db.errors import CuratorError


def _secs(x) -> str:
    return "—" if x is None else f"{x:.1f}"


class QualityHandlers:
    def __init__(self, ctx):
        self.ctx = ctx

    def _table(self, s):
        rows = quality.rater_quality(s, min_played_share=self.ctx.min_played_share)
        table = charts.frame([{
            "rater": r.name, "role": r.role, "votes": r.votes, "ratings": r.ratings,
            "median s / vote": _secs(r.median_vote_s), "median s / rating": _secs(r.median_rating_s),
            "faster than the clips": f"{r.fast} of {r.timed}", "gold rated": r.gold_rated,
            "flags": "; ".join(r.flags) or "—",
            "excluded": f"yes (by {r.excluded_by})" if r.excluded else ""} for r in rows])
        names = [r.name for r in rows]
        return table, gr.Dropdown(choices=names, value=None)

    def overview(self, request: gr.Request):
        """(tab visibility, table, rater choices): the tab for admins only."""
        user = self.ctx.user(request)
        if not user.is_admin:
            return gr.Tab(visible=False), gr.update(), gr.update()
        with self.ctx.errors(), self.ctx.session() as s:
            return (gr.Tab(visible=True), *self._table(s))

    def refresh(self, request: gr.Request):
        self.ctx.admin(request)
        with self.ctx.errors(), self.ctx.session() as s:
            return ("", *self._table(s))

    def _set(self, name: Any, exclude: bool, request: gr.Request):
        admin = self.ctx.admin(request)
        with self.ctx.errors():
            if not isinstance(name, str) or not name.strip():
                raise CuratorError("choose a rater first")
            with self.ctx.session() as s:
                if exclude:
                    quality.exclude_rater(s, name.strip(), by=admin.name)
                    msg = (f"Excluded **{html.escape(name)}**: their votes and ratings no longer count, "
                           "and new ones are refused.")
                else:
                    quality.include_rater(s, name.strip())
                    msg = f"**{html.escape(name)}** counts again."
            with self.ctx.session() as s:
                return (msg, *self._table(s))

    def exclude(self, name: Any, request: gr.Request):
        return self._set(name, True, request)

    def include(self, name: Any, request: gr.Request):
        return self._set(name, False, request)


def build_quality_tab(ctx) -> QualityHandlers:
    """Inside the app's gr.Tabs: the tab, its components and events; shown to admins on page load."""
    h = QualityHandlers(ctx)
    with gr.Tab("Raters", id="raters", visible=False, elem_id="tab-raters") as tab:
        gr.Markdown(
            "Flags: answers faster than their clips last (time on task on the server's clock, for at least "
            f"{quality.FAST_FLAG_SHARE:.0%} of a rater's answers), or a listening session's gold rule failed. "
            "An excluded rater's votes and ratings are left out of the verdicts, the statistics and the "
            "exports, and new ones are refused; including them again brings them back.")
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm", scale=0, elem_id="raters-refresh")
        table = gr.Dataframe(charts.no_data(), label="Raters", interactive=False, elem_id="raters-table")
        with gr.Row():
            choice = gr.Dropdown(label="Rater", choices=[], elem_id="raters-choice")
            exclude = gr.Button("Exclude rater", variant="stop", elem_id="raters-exclude")
            include = gr.Button("Include again", elem_id="raters-include")
        message = gr.Markdown(elem_id="raters-message")
    out = [message, table, choice]
    refresh.click(h.refresh, outputs=out, api_name="raters_refresh")
    exclude.click(h.exclude, inputs=[choice], outputs=out, api_name="raters_exclude")
    include.click(h.include, inputs=[choice], outputs=out, api_name="raters_include")
    ctx.on_load.append((h.overview, [tab, table, choice]))
    return h
