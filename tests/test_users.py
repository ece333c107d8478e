"""Accounts: argon2 hashes, login checks, `curator users add|list|disable`."""

from __future__ import annotations

import json

import logging

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotate_ui.logic import auth
from curator.cli import app
from db.errors import CuratorError
from db.annotation import User
from db.session import open_store

SECRET = "s3cret-Passw0rd!"


def test_add_verify_disable(session):
    user = auth.add_user(session, "alice", "rater", SECRET)
    assert user.password_hash.startswith("$argon2id$") and SECRET not in user.password_hash
    assert auth.verify_login(session, "alice", SECRET) == auth.AuthUser(user.id, "alice", "rater")
    assert session.get(User, user.id).last_login_at is not None
    assert auth.verify_login(session, "alice", SECRET + "x") is None
    assert auth.verify_login(session, "bob", SECRET) is None
    assert auth.verify_login(session, "alice'; DROP TABLE users;--", SECRET) is None
    assert auth.verify_login(session, "", "") is None
    with pytest.raises(CuratorError, match="already exists"):
        auth.add_user(session, "alice", "admin", SECRET)
    auth.disable_user(session, "alice")
    assert auth.verify_login(session, "alice", SECRET) is None
    assert auth.active_user(session, "alice") is None


@pytest.mark.parametrize("name,role,password,match", [
    ("a b", "rater", SECRET, "not valid"),
    ("<script>", "rater", SECRET, "not valid"),
    ("carol", "root", SECRET, "role"),
    ("carol", "rater", "short", "shorter"),
    ("carol", "rater", " padded-password ", "white space"),
])
def test_add_refuses_bad_input(session, name, role, password, match):
    with pytest.raises(CuratorError, match=match):
        auth.add_user(session, name, role, password)
    assert session.scalar(select(User.id)) is None


def test_cli_add_list_disable(store_url, tmp_path, caplog):
    runner = CliRunner()
    pw = tmp_path / "pw.txt"
    pw.write_text(SECRET + "\nsecond line ignored\n")
    caplog.set_level(logging.DEBUG)
    r = runner.invoke(app, ["users", "add", "admin1", "--role", "admin", "--password-file", str(pw), "--db", store_url])
    assert r.exit_code == 0, r.output
    r2 = runner.invoke(app, ["users", "add", "rater1", "--role", "rater", "--db", store_url],
                       input=f"{SECRET}\n{SECRET}\n")
    assert r2.exit_code == 0, r2.output
    for out in (r.output, r2.output, caplog.text):
        assert SECRET not in out
    r = runner.invoke(app, ["users", "list", "--db", store_url])
    assert r.exit_code == 0 and "admin1\tadmin\tactive" in r.output and "rater1\trater\tactive" in r.output
    r = runner.invoke(app, ["users", "disable", "rater1", "--db", store_url])
    assert r.exit_code == 0
    assert "rater1\trater\tdisabled" in runner.invoke(app, ["users", "list", "--db", store_url]).output
    with open_store(store_url)() as s:
        assert auth.verify_login(s, "admin1", SECRET).role == "admin"
        assert auth.verify_login(s, "rater1", SECRET) is None
        assert all(SECRET not in u.password_hash for u in s.scalars(select(User)))
    users = json.loads(runner.invoke(app, ["users", "list", "--json", "--db", store_url]).output)
    assert [(u["name"], u["role"], u["active"], u["last_login_at"]) for u in users] == [
        ("admin1", "admin", True, users[0]["last_login_at"]), ("rater1", "rater", False, None)]
    assert all("password" not in k for u in users for k in u)

    # enable lets the account in again; passwd changes the password (file or hidden prompt)
    r = runner.invoke(app, ["users", "enable", "rater1", "--db", store_url])
    assert r.exit_code == 0 and "enabled user rater1" in r.output
    new = "another-long-secret"
    r = runner.invoke(app, ["users", "passwd", "rater1", "--db", store_url], input=f"{new}\n{new}\n")
    assert r.exit_code == 0 and "changed the password of rater1" in r.output and new not in r.output
    pw2 = tmp_path / "pw2.txt"
    pw2.write_text(SECRET + "-2\n")
    assert runner.invoke(app, ["users", "passwd", "admin1", "--password-file", str(pw2), "--db", store_url]).exit_code == 0
    with open_store(store_url)() as s:
        assert auth.verify_login(s, "rater1", new).role == "rater"
        assert auth.verify_login(s, "rater1", SECRET) is None
        assert auth.verify_login(s, "admin1", SECRET + "-2").role == "admin"
    r = runner.invoke(app, ["users", "passwd", "nobody", "--db", store_url])
    assert r.exit_code == 2 and "'nobody' does not exist" in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["users", "passwd", "rater1", "--db", store_url], input="short\nshort\n")
    assert r.exit_code == 2 and "shorter than" in r.output
    r = runner.invoke(app, ["users", "enable", "nobody", "--db", store_url])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_version_on_all_three_commands():
    import curator
    from annotate_ui.cli import cli
    from trainer.cli import app as trainer_app

    for command, prog in ((app, "curator"), (cli, "annotate-ui"), (trainer_app, "trainer")):
        r = CliRunner().invoke(command, ["--version"])
        assert r.exit_code == 0 and r.output == f"{prog} {curator.__version__}\n", (prog, r.output)


def test_quiet_turns_progress_off():
    from curator.cli import common

    try:
        assert CliRunner().invoke(app, ["--quiet", "db", "--help"]).exit_code == 0
        assert common.show_progress() is False
        assert CliRunner().invoke(app, ["db", "--help"]).exit_code == 0
        assert common.show_progress() is True
    finally:
        common.set_quiet(False)


def test_cli_errors_are_one_line(store_url, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["users", "add", "x1", "--role", "boss", "--password-file", str(tmp_path / "none"),
                            "--db", store_url])
    assert r.exit_code == 2 and "'boss' is not one of 'admin', 'rater'" in r.output and len(r.output.splitlines()) == 1
    r = runner.invoke(app, ["users", "add", "x1", "--role", "rater", "--password-file", str(tmp_path / "none"),
                            "--db", store_url])
    assert r.exit_code == 2 and "does not exist" in r.output
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    r = runner.invoke(app, ["users", "add", "x1", "--role", "rater", "--password-file", str(empty), "--db", store_url])
    assert r.exit_code == 2 and "first line is empty" in r.output
    r = runner.invoke(app, ["users", "add", "x1", "--role", "rater", "--db", store_url], input=f"{SECRET}\nother-one\n"
                      f"{SECRET}\nother-two\n{SECRET}\nother\n")
    assert r.exit_code != 0 and SECRET not in r.output
    r = runner.invoke(app, ["users", "disable", "nobody", "--db", store_url])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["users", "list", "--db", f"sqlite:///{tmp_path / 'unmigrated.db'}"])
    assert r.exit_code == 2 and "not migrated" in r.output


def test_annotate_ui_refuses_unmigrated_store(empty_store_url):
    from annotate_ui.cli import cli

    r = CliRunner().invoke(cli, ["--db", empty_store_url, "--port", "7999"])
    assert r.exit_code == 2 and "not migrated" in r.output and len(r.output.strip().splitlines()) == 1


def test_annotate_ui_refuses_store_without_admin(store_url):
    from annotate_ui.cli import cli

    r = CliRunner().invoke(cli, ["--db", store_url, "--port", "7999"])
    assert r.exit_code == 2 and "no active admin" in r.output
