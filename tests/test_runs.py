"""The admin "Training runs" view: runs from the store, curves from metrics.jsonl, eval scores of checkpoints."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr
import pytest

from annotate_ui.logic import runs
from annotate_ui.web.context import make_context
from annotate_ui.web.runs_tab import RunsHandlers
from db.annotation import User
from db.listening import ClipSet, ClipSetItem
from db.models import AudioClip, Caption, text_hash
from db.training import TrainingRun


def req(name):
    return SimpleNamespace(username=name)


def _run(session, tmp_path, name="dpo", status="finished", lines=3, final=True):
    out = tmp_path / name
    (out / "step-2").mkdir(parents=True)
    (out / "step-4").mkdir()
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for k in range(1, lines + 1):
            fh.write(json.dumps({"step": 2 * k, "loss": 0.7 - 0.1 * k, "rewards/accuracies": 0.5 + 0.1 * k,
                                 "rewards/margins": 0.05 * k, "lr": 1e-5, "phase": "train"}) + "\n")
        fh.write('{"step": 8, "loss": 0.')  # a run still writing its next line
    run = TrainingRun(out_dir=str(out.resolve()), base_model="tiny", source="store:paper/majority", source_hash="0" * 64,
                      n_pairs=12, config={}, status=status, global_step=2 * lines,
                      checkpoints=[{"step": 2, "path": str((out / "step-2").resolve())},
                                   {"step": 4, "path": str((out / "step-4").resolve())}],
                      final_metrics={"loss": 0.4, "rewards/accuracies": 0.8, "rewards/margins": 0.15} if final else None)
    session.add(run)
    session.flush()
    return run


def _eval_set(session, checkpoint_id, name, means):
    text = f"a bell rings ({name})"
    cap = Caption(text=text, text_sha=text_hash(text), split="test")
    session.add(cap)
    session.flush()
    clip = AudioClip(sha256="a" * 64, path="aa/x.wav", sample_rate=16000, num_samples=16000, duration_s=1.0,
                     generator="tiny", checkpoint_id=checkpoint_id, prompt=text, caption_id=cap.id, strategy="eval")
    session.add(clip)
    session.flush()
    cs = ClipSet(name=name, generator="tiny", checkpoint_id=checkpoint_id, note=json.dumps({"mean": means, "steps": 10}))
    cs.items.append(ClipSetItem(caption_id=cap.id, clip_id=clip.id))
    session.add(cs)
    session.flush()


def test_runs_curves_and_checkpoint_evals(session, tmp_path):
    run = _run(session, tmp_path)
    live = _run(session, tmp_path, name="live", status="running", lines=2, final=False)
    _eval_set(session, run.checkpoints[1]["path"], "eval:step-4", {"judge-a": 0.61, "judge-b": 0.42})
    _eval_set(session, "tiny", "eval:base", {"judge-a": 0.5})
    _eval_set(session, "/elsewhere/step-9", "eval:other", {"judge-a": 0.9})
    rows = runs.list_runs(session)
    assert [r.id for r in rows] == [live.id, run.id]  # newest first
    assert (rows[1].loss, rows[1].implicit_accuracy, rows[1].reward_margin, rows[1].checkpoints) == (0.4, 0.8, 0.15, 2)
    assert rows[0].loss == pytest.approx(0.5) and rows[0].status == "running"  # last metrics line of a live run
    curves = runs.run_curves(run)
    assert list(curves["metric"].unique()) == ["loss", "implicit accuracy", "reward margin"]
    loss = curves[curves["metric"] == "loss"]
    assert list(loss["step"]) == [2, 4, 6] and loss["value"].tolist() == pytest.approx([0.6, 0.5, 0.4])
    evals = runs.checkpoint_evals(session, run)
    assert evals == [{"step": "base", "clip set": "eval:base", "prompts": 1, "mean judge-a": 0.5},
                     {"step": 4, "clip set": "eval:step-4", "prompts": 1, "mean judge-a": 0.61, "mean judge-b": 0.42}]
    gone = TrainingRun(out_dir=str(tmp_path / "missing"), base_model="x", source="s", source_hash="0" * 64, n_pairs=1,
                       config={}, checkpoints=[])
    session.add(gone)
    session.flush()
    assert runs.run_curves(gone).empty and runs.checkpoint_evals(session, gone) == []


def test_runs_tab_for_admins_only(store_url, audio_store, tmp_path):
    ctx = make_context(store_url, audio_store)
    with ctx.session() as s:
        s.add_all([User(name="boss", role="admin", password_hash="x"), User(name="rater0", role="rater", password_hash="x")])
        s.flush()
    h = RunsHandlers(ctx)
    tab, table, choice = h.overview(req("boss"))
    assert tab.visible is True and list(table.iloc[:, 0]) == ["no data yet"] and choice.choices == []
    with ctx.session() as s:
        run_id = _run(s, tmp_path).id
    tab, table, choice = h.overview(req("boss"))
    assert list(table["run"]) == [run_id] and list(table["implicit accuracy"]) == [0.8]
    assert choice.value == run_id
    title, chart, evals = h.show(run_id, req("boss"))
    assert f"Run {run_id}" in title and list(evals.iloc[:, 0]) == ["no data yet"]
    spec = json.loads(chart.to_json())
    assert [c["title"] for c in spec["vconcat"]] == ["loss", "implicit accuracy", "reward margin"]
    hidden, *_ = h.overview(req("rater0"))
    assert hidden.visible is False
    for fn, args in ((h.show, (run_id,)), (h.refresh, ())):
        with pytest.raises(gr.Error):
            fn(*args, req("rater0"))
    with pytest.raises(gr.Error, match="does not exist"):
        h.show(run_id + 99, req("boss"))
