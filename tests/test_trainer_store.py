"""Pairs from the store (preset filter + audit policy), the TrainingRun record, `trainer eval`
storing a clip set — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from db.errors import CuratorError
from trainer.synthetic import pair_waves

DUR = 0.32


def _seed_store(session, audio_store, *, scores):
    """One pair per (winner, loser) score tuple, under two CLAP models; returns pair ids and clip shas."""
    from curator.filter import ensure_default_preset
    from db.models import AudioClip, Caption, ClapModel, Pair, PairScore, text_hash

    m1 = ClapModel(name="m1", checkpoint="x", position=0)
    m2 = ClapModel(name="m2", checkpoint="y", position=1)
    session.add_all([m1, m2])
    session.flush()
    out = []
    for i, (w, l) in enumerate(scores):
        text = f"a dog barks {i}"
        cap = Caption(text=text, text_sha=text_hash(text))
        session.add(cap)
        session.flush()
        clips = []
        for slot, wave in enumerate(pair_waves(i, DUR)):
            sha, rel = audio_store.put_wave(wave, 16000)
            clip = AudioClip(sha256=sha, path=rel, sample_rate=16000, num_samples=len(wave), duration_s=DUR,
                             generator="t", checkpoint_id="c", prompt=text, caption_id=cap.id, strategy="2", slot=slot)
            session.add(clip)
            clips.append(clip)
        session.flush()
        pair = Pair(caption_id=cap.id, winner_clip_id=clips[0].id, loser_clip_id=clips[1].id, strategy="2")
        session.add(pair)
        session.flush()
        session.add_all([PairScore(pair_id=pair.id, model_id=m1.id, winner_score=w[0], loser_score=l[0]),
                         PairScore(pair_id=pair.id, model_id=m2.id, winner_score=w[1], loser_score=l[1])])
        out.append((pair.id, clips[0].sha256, clips[1].sha256))
    ensure_default_preset(session)
    session.flush()
    return out


GOOD = ((0.7, 0.8), (0.5, 0.6))  # passes every condition of the paper preset (arXiv 2404.09956 §4.1.2)
BAD = ((0.3, 0.8), (0.2, 0.6))  # winner below α1


def _vote(session, pair_id, outcomes):
    from db.annotation import AuditAssignment, User

    for k, outcome in enumerate(outcomes):
        user = User(name=f"r{pair_id}-{k}", role="rater", password_hash="x")
        session.add(user)
        session.flush()
        session.add(AuditAssignment(pair_id=pair_id, user_id=user.id, slot=k, a_is_winner=True, state="done",
                                    verdict="B" if outcome == "loser" else "A", outcome=outcome))
    session.flush()


def test_store_pairs_with_audit_policies(session, audio_store):
    from trainer.data import load_store_pairs

    rows = _seed_store(session, audio_store, scores=[GOOD, GOOD, BAD, GOOD])
    _vote(session, rows[1][0], ["loser", "loser", "winner"])  # raters overruled the automatic winner
    ps = load_store_pairs(session, audio_store, preset="paper", policy="ignore")
    assert [p.label for p in ps.pairs] == [f"pair {rows[i][0]}" for i in (0, 1, 3)]  # BAD filtered out
    assert ps.pairs[1].prompt == "a dog barks 1"
    hw = load_store_pairs(session, audio_store, preset="paper", policy="human-winner")
    assert (hw.pairs[1].chosen_sha, hw.pairs[1].rejected_sha) == (rows[1][2], rows[1][1])  # swapped
    dr = load_store_pairs(session, audio_store, preset="paper", policy="drop-rejected")
    assert [p.label for p in dr.pairs] == [f"pair {rows[i][0]}" for i in (0, 3)]
    assert load_store_pairs(session, audio_store, preset="paper", policy="majority").pairs == dr.pairs
    got = {sha for sha, _, _ in ps.clips({rows[0][1]})}
    assert got == {rows[0][1]}


def test_empty_after_filtering_is_one_line(session, audio_store):
    from trainer.data import load_store_pairs

    _seed_store(session, audio_store, scores=[BAD])
    with pytest.raises(CuratorError, match="preset 'paper' keeps none"):
        load_store_pairs(session, audio_store, preset="paper", policy="ignore")


def test_run_from_store_is_recorded(session, audio_store, tmp_path):
    from curator.models.tiny import build_tiny_tango
    from db.training import TrainingRun
    from trainer.config import TrainConfig
    from trainer.data import load_store_pairs
    from trainer.runs import StoreRecorder
    from trainer.train import run_training

    _seed_store(session, audio_store, scores=[GOOD, GOOD])
    session.commit()
    base = build_tiny_tango(tmp_path / "tiny")
    cfg = TrainConfig(model=str(base), data="store", out=str(tmp_path / "run"), duration_s=DUR, train_batch_size=2,
                      gradient_accumulation_steps=1, sft_epochs=0, dpo_epochs=1, audit_policy="ignore")
    result = run_training(cfg, lambda: load_store_pairs(session, audio_store, preset="paper", policy="ignore"),
                          recorder=StoreRecorder(session), progress=False)
    run = session.get(TrainingRun, result.run_id)
    assert run.status == "finished" and run.global_step == 1 and run.n_pairs == 2
    assert run.source == "store:paper/ignore" and run.source_hash == result.source_hash
    assert [c["step"] for c in run.checkpoints] == [1]
    assert run.config["beta"] == 2000.0 and "rewards/accuracies" in run.final_metrics

    # trainer eval on that checkpoint: clips with strategy "eval", a clip set for listening sessions
    from db.listening import ClipSet
    from db.models import AudioClip
    from trainer.evaluate import EvalSettings, evaluate

    settings = EvalSettings(steps=2, duration_s=DUR, batch_size=2)
    report = evaluate(result.checkpoints[-1], ["world-judge-a"], settings, prompts=["a dog barks", "rain falls"],
                      session=session, audio_store=audio_store)
    session.commit()
    assert len(report.rows) == 2 and "world-judge-a" in report.means()
    clip_set = session.query(ClipSet).filter_by(name=report.clip_set).one()
    assert len(clip_set.items) == 2
    assert {c.strategy for c in session.query(AudioClip).filter_by(checkpoint_id=clip_set.checkpoint_id)} == {"eval"}
    again = evaluate(result.checkpoints[-1], ["world-judge-a"], settings, prompts=["a dog barks", "rain falls"],
                     session=session, audio_store=audio_store)  # a rerun reuses the stored clips
    assert [r["clip_sha"] for r in again.rows] == [r["clip_sha"] for r in report.rows]


def test_a_run_that_fails_is_recorded_as_failed(session, audio_store, tmp_path):
    """The recorder, not the loop, owns the store's record: an error inside the loop (here raised
    while a checkpoint is recorded) rolls back what was pending and commits the run as failed."""
    from curator.models.tiny import build_tiny_tango
    from db.training import TrainingRun
    from trainer.config import TrainConfig
    from trainer.data import load_store_pairs
    from trainer.runs import StoreRecorder
    from trainer.train import run_training

    class FailingRecorder(StoreRecorder):
        def checkpoint(self, step, path):
            super().checkpoint(step, path)
            raise RuntimeError("the disk is full")

    _seed_store(session, audio_store, scores=[GOOD, GOOD])
    session.commit()
    base = build_tiny_tango(tmp_path / "tiny")
    cfg = TrainConfig(model=str(base), data="store", out=str(tmp_path / "run"), duration_s=DUR, train_batch_size=2,
                      gradient_accumulation_steps=1, sft_epochs=0, dpo_epochs=2, checkpoint_every=1,
                      audit_policy="ignore")
    recorder = FailingRecorder(session)
    with pytest.raises(RuntimeError, match="the disk is full"):
        run_training(cfg, lambda: load_store_pairs(session, audio_store, preset="paper", policy="ignore"),
                     recorder=recorder, progress=False)
    session.expire_all()
    run = session.get(TrainingRun, recorder.run.id)
    assert run.status == "failed" and run.error == "the disk is full" and run.global_step == 1
    assert [c["step"] for c in run.checkpoints] == [1] and run.finished_at is not None
