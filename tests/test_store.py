"""The store: migrations on both back ends, the un-migrated refusal, one-line CLI errors."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from curator.cli import app
from db.errors import CuratorError
from db.models import Caption, text_hash
from db.session import check_migrated, downgrade, make_engine, open_store, table_names, upgrade

runner = CliRunner()


def test_upgrade_creates_every_table(empty_store_url):
    upgrade(empty_store_url)
    names = table_names(make_engine(empty_store_url))
    for table in ("captions", "selection_runs", "perturbations", "audio_clips", "clap_models",
                  "scores", "pairs", "pair_scores", "presets", "exports"):
        assert table in names


def test_unmigrated_store_is_refused_in_one_line(empty_store_url):
    with pytest.raises(CuratorError, match="not migrated.*curator db upgrade"):
        check_migrated(make_engine(empty_store_url))


def test_downgrade_to_base_and_back(empty_store_url):
    upgrade(empty_store_url)
    downgrade(empty_store_url, "base")
    assert "captions" not in table_names(make_engine(empty_store_url))
    upgrade(empty_store_url)
    assert "captions" in table_names(make_engine(empty_store_url))


def test_caption_text_is_unique(store_url):
    factory = open_store(store_url)
    with factory() as s:
        s.add(Caption(text="a dog barks", text_sha=text_hash("a dog barks")))
        s.commit()
        s.add(Caption(text="a dog barks", text_sha=text_hash("a dog barks")))
        with pytest.raises(Exception):
            s.commit()
        s.rollback()
        assert len(s.scalars(select(Caption)).all()) == 1


def test_sqlite_pragmas(sqlite_store_url):
    with make_engine(sqlite_store_url).connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_cli_upgrade_and_unreachable_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    res = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["db", "current", "--db", "postgresql://postgres@127.0.0.1:1/none"])
    assert res.exit_code == 2
    assert "cannot reach store" in res.output
    assert "Traceback" not in res.output
