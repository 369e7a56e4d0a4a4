"""Who is signed in, what they may do, and the CSRF tokens that prove a form came from us.

Two ways to sign in (docs/console.md):

* an authenticating reverse proxy (oauth2-proxy and its kin) in front of the console passes the
  user in ``X-Forwarded-User`` / ``X-Forwarded-Email`` and groups in ``X-Forwarded-Groups``; those
  headers are believed only when the request comes from a configured proxy address, since anyone
  else could simply send them;
* local accounts from a YAML file of argon2id hashes (``orderwatch console add-user``).

Sessions are a signed cookie (HMAC-SHA256, HttpOnly, SameSite=Strict, Secure when configured):
no server-side session table, so any replica that shares the key serves any user. The CSRF token
is an HMAC of the session id, checked server side on every state-changing request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

Role = Literal["viewer", "operator", "approver"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "approver")
SESSION_COOKIE = "ow_session"
PRE_COOKIE = "ow_pre"

_hasher = PasswordHasher()
#: verified against when the user does not exist, so a wrong name costs the same as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class User:
    """A signed-in person. ``teams`` empty means every team."""

    name: str
    role: Role
    teams: tuple[str, ...] = ()
    email: str | None = None
    session_id: str = ""
    via: Literal["local", "proxy"] = "local"

    def may_act(self, owner: str | None = None) -> bool:
        """Operators and approvers send commands; an operator limited to teams only for those."""
        if self.role == "viewer":
            return False
        return not self.teams or owner is None or owner in self.teams

    def may_decide(self, owner: str | None = None) -> bool:
        """Only approvers approve or reject remediation actions (CONTRACT 10), for their teams."""
        return self.role == "approver" and self.may_act(owner)


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    role: Role
    teams: tuple[str, ...]


def load_accounts(path: Path) -> dict[str, Account]:
    """The local accounts file; a missing file is no accounts (proxy sign-in only)."""
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    users = data.get("users") or {}
    out: dict[str, Account] = {}
    for name, spec in users.items():
        role = spec.get("role", "viewer")
        if role not in ROLES:
            raise ValueError(f"{path}: user {name}: unknown role {role!r}")
        out[str(name)] = Account(
            name=str(name),
            password_hash=str(spec["password_hash"]),
            role=role,
            teams=tuple(str(t) for t in spec.get("teams") or ()),
        )
    return out


def add_account(
    path: Path, name: str, password: str, role: Role, teams: tuple[str, ...] = ()
) -> None:
    """Create or replace one account (argon2id hash); the file is written atomically, mode 0600."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if not name or any(c in name for c in ":\n\r\t"):
        raise ValueError("a user name must be non-empty, without ':' or line breaks")
    data: dict[str, Any] = {}
    if path.exists():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    users = data.setdefault("users", {})
    entry: dict[str, Any] = {"password_hash": _hasher.hash(password), "role": role}
    if teams:
        entry["teams"] = list(teams)
    users[name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# orderwatch console accounts: `orderwatch console add-user` writes this file\n")
        yaml.safe_dump(data, out, sort_keys=True, allow_unicode=True)
    os.replace(tmp, path)


def verify_password(accounts: dict[str, Account], name: str, password: str) -> Account | None:
    account = accounts.get(name)
    try:
        _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return account


def load_or_create_secret(path: Path) -> bytes:
    """The session key: read from a 0600 file, created with a random key the first time."""
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex())
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Signer:
    """Signs session cookies and derives CSRF tokens with one key."""

    key: bytes

    def _mac(self, purpose: str, payload: str) -> str:
        return _b64(hmac.new(self.key, f"{purpose}:{payload}".encode(), hashlib.sha256).digest())

    def session_cookie(self, user: User, lifetime: float) -> str:
        payload = _b64(
            orjson.dumps(
                {
                    "u": user.name,
                    "r": user.role,
                    "t": list(user.teams),
                    "s": user.session_id,
                    "exp": time.time() + lifetime,
                }
            )
        )
        return f"{payload}.{self._mac('session', payload)}"

    def read_session(self, cookie: str | None) -> User | None:
        if not cookie or "." not in cookie:
            return None
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            data = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or float(data.get("exp", 0)) < time.time():
            return None
        if data.get("r") not in ROLES:
            return None
        return User(
            name=str(data["u"]),
            role=data["r"],
            teams=tuple(data.get("t") or ()),
            session_id=str(data["s"]),
        )

    def csrf_token(self, session_id: str) -> str:
        return self._mac("csrf", session_id)

    def check_csrf(self, session_id: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session_id))


def new_session_id() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class ProxyAuth:
    """Reads the user from a trusted authenticating proxy's headers."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    user_header: str
    email_header: str
    groups_header: str
    group_prefix: str

    def trusted(self, remote: str | None) -> bool:
        if not remote or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        return any(address in net for net in self.networks)

    def user(self, remote: str | None, headers: Any) -> User | None:
        name = headers.get(self.user_header)
        if not name or not self.trusted(remote):
            return None
        groups = [g.strip() for g in str(headers.get(self.groups_header, "")).split(",")]
        role: Role = "viewer"
        teams: list[str] = []
        for group in groups:
            if not group.startswith(self.group_prefix):
                continue
            rest = group[len(self.group_prefix) :]
            if rest.startswith("team:"):
                teams.append(rest[5:])
            else:
                for candidate in ROLES:
                    if rest == candidate and ROLES.index(candidate) > ROLES.index(role):
                        role = candidate
        return User(
            name=str(name),
            role=role,
            teams=tuple(teams),
            email=headers.get(self.email_header),
            session_id=f"proxy:{name}",
            via="proxy",
        )
