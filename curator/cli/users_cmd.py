"""`curator users add|list|disable`: accounts of the rater app (issue 4, part 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from curator.cli.common import DB_DEFAULT, DbOpt, user_errors


def register(app: typer.Typer) -> None:
    users = typer.Typer(help="Accounts of the rater app (annotate-ui).", no_args_is_help=True)
    app.add_typer(users, name="users")

    @users.command("add")
    @user_errors
    def add(
        name: str = typer.Argument(..., help="Login name."),
        role: str = typer.Option(..., "--role", help="admin or rater."),
        password_file: Optional[Path] = typer.Option(
            None, "--password-file", help="Read the password from the first line of this file (else a hidden prompt)."),
        db: DbOpt = DB_DEFAULT,
    ) -> None:
        """Add an account; the password is stored only as an argon2 hash."""
        from annotate_ui.auth import add_user, check_name, check_password, check_role, read_password_file
        from db.session import session_scope

        check_name(name)
        check_role(role)
        if password_file is not None:
            password = read_password_file(password_file)
        else:
            password = check_password(typer.prompt(f"password for {name}", hide_input=True,
                                                   confirmation_prompt=True))
        with session_scope(db) as s:
            user = add_user(s, name, role, password)
            typer.echo(f"added user {user.name} ({user.role})")

    @users.command("list")
    @user_errors
    def list_(db: DbOpt = DB_DEFAULT) -> None:
        """Accounts with role, state and last login."""
        from annotate_ui.auth import list_users
        from db.session import session_scope

        with session_scope(db) as s:
            rows = list_users(s)
            if not rows:
                typer.echo("no users; add one with `curator users add NAME --role admin`")
            for u in rows:
                last = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
                typer.echo(f"{u.name}\t{u.role}\t{'active' if u.active else 'disabled'}\tlast login {last}")

    @users.command("disable")
    @user_errors
    def disable(name: str = typer.Argument(..., help="Login name."), db: DbOpt = DB_DEFAULT) -> None:
        """Refuse this account from now on (its votes stay)."""
        from annotate_ui.auth import disable_user
        from db.session import session_scope

        with session_scope(db) as s:
            disable_user(s, name)
            typer.echo(f"disabled user {name}")
