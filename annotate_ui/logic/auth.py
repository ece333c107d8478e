"""Accounts of the rater app: argon2 password hashes, roles, login checks.

Passwords only ever exist as argon2id hashes (argon2-cffi's PasswordHasher defaults); no function
here logs or returns a password, and error messages never include one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.errors import CuratorError
from db.annotation import ROLES, AuditAssignment, User
from db.models import utcnow

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
MIN_PASSWORD_LEN = 8

_hasher = PasswordHasher()  # stateless; safe to share between threads
# a hash of a random string, verified against when the user is unknown, so a wrong name costs
# as much time as a wrong password (no user enumeration by timing)
_DUMMY_HASH = _hasher.hash("not-a-password-of-anyone")


@dataclass(frozen=True)
class AuthUser:
    """The authenticated user of a request, as the handlers see it."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise CuratorError(f"user name {str(name)[:40]!r} is not valid: 1–100 characters of letters, digits, _ . @ -, "
                           "starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise CuratorError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LEN:
        raise CuratorError(f"the password is shorter than {MIN_PASSWORD_LEN} characters")
    if password != password.strip() or "\n" in password:
        raise CuratorError("the password starts or ends with white space or holds a line break")
    return password


def read_password_file(path: str | Path) -> str:
    """The first line of a file (without its line break), validated; the file is never echoed."""
    p = Path(path)
    if not p.is_file():
        raise CuratorError(f"password file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CuratorError(f"password file {p} is not UTF-8 text") from None
    first = text.splitlines()[0] if text else ""
    if not first:
        raise CuratorError(f"password file {p}: the first line is empty")
    return check_password(first)


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def add_user(session: Session, name: str, role: str, password: str) -> User:
    """A new active user; a taken name is one clear line."""
    check_name(name)
    check_role(role)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise CuratorError(f"user {name!r} already exists")
    user = User(name=name, role=role, password_hash=hash_password(password), active=True)
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, name: str, password: str) -> User:
    user = get_user(session, name)
    user.password_hash = hash_password(password)
    session.flush()
    return user


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise CuratorError(f"user {name!r} does not exist")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def disable_user(session: Session, name: str) -> User:
    """Disabled users can no longer log in, and their open sessions are refused on the next event.
    Their open audit assignments give their slots back (the pairs go to other raters)."""
    user = get_user(session, name)
    user.active = False
    session.execute(
        update(AuditAssignment).where(AuditAssignment.user_id == user.id, AuditAssignment.state == "assigned")
        .values(state="skipped", slot=None, skip_reason="account disabled", completed_at=utcnow())
        .execution_options(synchronize_session=False))
    session.flush()
    return user


def enable_user(session: Session, name: str) -> User:
    """A disabled account may log in again (with its old password unless it was changed)."""
    user = get_user(session, name)
    user.active = True
    session.flush()
    return user


def user_dict(user: User) -> dict:
    """An account as plain data (never the hash): name, role, active, created and last login."""
    return {"name": user.name, "role": user.role, "active": bool(user.active), "excluded": user.excluded_at is not None,
            "created_at": user.created_at.isoformat() if user.created_at else None,
            "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None}


def verify_login(session: Session, name: str, password: str) -> AuthUser | None:
    """The user when NAME/PASSWORD match an active account, else None (never raises on bad input)."""
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        return None
    user = session.scalar(select(User).where(User.name == name)) if NAME_RE.match(name) else None
    try:
        if user is None:
            _hasher.verify(_DUMMY_HASH, password)
            return None
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    session.flush()
    return AuthUser(user.id, user.name, user.role)


def active_user(session: Session, name: str | None) -> AuthUser | None:
    """The active account NAME (the name Gradio's login put on the request), or None."""
    if not name:
        return None
    row = session.execute(select(User.id, User.name, User.role, User.active).where(User.name == name)).first()
    if row is None or not row.active:
        return None
    return AuthUser(row.id, row.name, row.role)
