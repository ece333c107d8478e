"""`curator users add|list|disable|enable|passwd|exclude|include`: accounts of the rater app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from curator.cli.common import DB_DEFAULT, DbOpt, JsonOpt, choices, echo_json, user_errors
from db.annotation import ROLES
from db.session import session_scope

# annotate_ui.logic.auth is imported by the commands that use it: it hashes a dummy password at
# import (about a second of argon2), which every other `curator` command would pay for.

Role = choices("Role", ROLES)


def _read_password(password_file, prompt: str) -> str:
    """The password from PASSWORD_FILE, else asked twice at a hidden prompt; checked either way."""
    from annotate_ui.logic.auth import check_password, read_password_file

    if password_file is not None:
        return read_password_file(password_file)
    return check_password(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


def register(app: typer.Typer) -> None:
    users = typer.Typer(help="Accounts of the rater app (annotate-ui).", no_args_is_help=True)
    app.add_typer(users, name="users")

    @users.command("add")
    @user_errors
    def add(
        name: str = typer.Argument(..., help="Login name."),
        role: Role = typer.Option(..., "--role", help="What the account may do: admin (tuning, audits, listening "
                                                      "sessions) or rater."),
        password_file: Optional[Path] = typer.Option(
            None, "--password-file", help="Read the password from the first line of this file (else a hidden prompt)."),
        db: DbOpt = DB_DEFAULT,
    ) -> None:
        """Add an account; the password is stored only as an argon2 hash."""
        from annotate_ui.logic.auth import add_user, check_name, check_role

        check_name(name)
        role = check_role(role.value)
        password = _read_password(password_file, f"password for {name}")
        with session_scope(db) as s:
            user = add_user(s, name, role, password)
            typer.echo(f"added user {user.name} ({user.role})")

    @users.command("list")
    @user_errors
    def list_(db: DbOpt = DB_DEFAULT, as_json: JsonOpt = False) -> None:
        """Accounts with role, state and last login."""
        from annotate_ui.logic.auth import list_users, user_dict

        with session_scope(db) as s:
            rows = list_users(s)
            if as_json:
                echo_json([user_dict(u) for u in rows])
                return
            if not rows:
                typer.echo("no users; add one with `curator users add NAME --role admin`")
            for u in rows:
                last = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
                state = ("active" if u.active else "disabled") + (", excluded" if u.excluded_at else "")
                typer.echo(f"{u.name}\t{u.role}\t{state}\tlast login {last}")

    def _set_active(name: str, active: bool, db: str) -> None:
        from annotate_ui.logic.auth import disable_user, enable_user

        with session_scope(db) as s:
            (enable_user if active else disable_user)(s, name)
            typer.echo(f"{'enabled' if active else 'disabled'} user {name}")

    @users.command("disable")
    @user_errors
    def disable(name: str = typer.Argument(..., help="Login name."), db: DbOpt = DB_DEFAULT) -> None:
        """Refuse this account from now on (its votes stay)."""
        _set_active(name, False, db)

    @users.command("enable")
    @user_errors
    def enable(name: str = typer.Argument(..., help="Login name."), db: DbOpt = DB_DEFAULT) -> None:
        """Let a disabled account log in again."""
        _set_active(name, True, db)

    @users.command("exclude")
    @user_errors
    def exclude(name: str = typer.Argument(..., help="Login name."),
                by: str = typer.Option("cli", "--by", help="Who decided (shown in the admin view)."),
                db: DbOpt = DB_DEFAULT) -> None:
        """Leave this rater's votes and ratings out of statistics, exports and training; refuse new ones."""
        from annotate_ui.logic.quality import exclude_rater
        from db.session import session_scope

        with session_scope(db) as s:
            exclude_rater(s, name, by=by)
            typer.echo(f"excluded rater {name}: their votes and ratings no longer count")

    @users.command("include")
    @user_errors
    def include(name: str = typer.Argument(..., help="Login name."), db: DbOpt = DB_DEFAULT) -> None:
        """Count an excluded rater's votes and ratings again."""
        from annotate_ui.logic.quality import include_rater
        from db.session import session_scope

        with session_scope(db) as s:
            include_rater(s, name)
            typer.echo(f"rater {name} counts again")

    @users.command("passwd")
    @user_errors
    def passwd(
        name: str = typer.Argument(..., help="Login name."),
        password_file: Optional[Path] = typer.Option(
            None, "--password-file", help="Read the new password from the first line of this file (else a hidden prompt)."),
        db: DbOpt = DB_DEFAULT,
    ) -> None:
        """Set a new password (stored only as an argon2 hash)."""
        from annotate_ui.logic.auth import get_user, set_password

        with session_scope(db) as s:
            get_user(s, name)  # an unknown name fails before the prompt
        password = _read_password(password_file, f"new password for {name}")
        with session_scope(db) as s:
            set_password(s, name, password)
            typer.echo(f"changed the password of {name}")
