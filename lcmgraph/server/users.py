"""Who is asking: bearer tokens mapped to users.

Without any token (a loopback server) everyone is the one admin, as before
users existed. ``--token T`` makes one admin user, ``admin``. ``--users FILE``
adds named users, each with its own token; a user who is not an admin sees
and controls only the jobs it submitted (queue, details, cancel, interrupt,
history, deletion, their files and their WebSocket events), an admin all.

The file is JSON::

    {"users": [{"name": "alice", "token": "..."},
               {"name": "ops", "token_sha256": "<64 hex digits>", "admin": true}]}

or text, one user a line (``#`` starts a comment)::

    alice:TOKEN
    ops:sha256:<64 hex digits>:admin

``token_sha256`` / ``sha256:`` store the SHA-256 of the token (hex) instead of
the token itself (``printf %s TOKEN | sha256sum``). Tokens are compared in
constant time, by their digests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path

USER_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
TOKEN_TEXT = re.compile(r"^[\x21-\x7e]{1,512}$")
ADMIN_NAME = "admin"
MAX_USERS = 10_000
MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class User:
    #: The user's name, recorded as the owner of its jobs ("" without users).
    name: str
    admin: bool


#: Everyone, when the server has no token at all (loopback only): the one admin.
ANONYMOUS = User("", True)
#: A request outside /api on a server with tokens (the editor's page): nobody in particular.
NOBODY = User("\x00nobody", False)


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the file and the line."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class UserTable:
    def __init__(self, entries: list[tuple[User, bytes]]):
        self._entries = list(entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        return [user.name for user, _ in self._entries]

    def authenticate(self, token: str) -> User | None:
        """The user whose token this is, else None (every entry is compared)."""
        given = digest(token)
        found: User | None = None
        for user, expected in self._entries:
            if hmac.compare_digest(given, expected) and found is None:
                found = user
        return found

    @classmethod
    def build(cls, token: str | None = None, users: UserTable | None = None) -> UserTable | None:
        """The table of a server: the admin token (if any) plus the users file's users."""
        entries = list(users._entries) if users is not None else []
        if token:
            names = {user.name for user, _ in entries}
            name = ADMIN_NAME if ADMIN_NAME not in names else _free_name(names)
            entries.insert(0, (User(name, True), digest(token)))
        return cls(entries) if entries else None

    @classmethod
    def from_file(cls, path: Path) -> UserTable:
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise UsersFileError(f"users file {path}: larger than {MAX_FILE_BYTES} bytes")
            text = path.read_text("utf-8")
        except UsersFileError:
            raise
        except (OSError, UnicodeDecodeError) as exc:
            raise UsersFileError(f"cannot read the users file {path}: {exc}") from None
        stripped = text.lstrip()
        entries = _from_json(path, stripped) if stripped.startswith("{") else _from_lines(path, text)
        if not entries:
            raise UsersFileError(f"users file {path}: no users in it")
        names = [user.name for user, _ in entries]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise UsersFileError(f"users file {path}: user {duplicate!r} appears twice")
        digests = [d for _, d in entries]
        if len(set(digests)) != len(digests):
            raise UsersFileError(f"users file {path}: two users have the same token; give each its own")
        if len(entries) > MAX_USERS:
            raise UsersFileError(f"users file {path}: more than {MAX_USERS} users")
        return cls(entries)


def _free_name(names: set[str]) -> str:
    counter = 1
    while f"{ADMIN_NAME}{counter}" in names:
        counter += 1
    return f"{ADMIN_NAME}{counter}"


def _entry(path: Path, where: str, name: object, token: object, hashed: object, admin: object) -> tuple[User, bytes]:
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise UsersFileError(f"users file {path}, {where}: the name must be 1-64 characters of letters, "
                             f"digits, _ . - (got {str(name)[:40]!r})")
    if not isinstance(admin, bool):
        raise UsersFileError(f"users file {path}, {where}: 'admin' must be true or false")
    if (token is None) == (hashed is None):
        raise UsersFileError(f"users file {path}, {where}: give exactly one of a token or its sha256 "
                             f"(user {name!r})")
    if token is not None:
        if not isinstance(token, str) or not TOKEN_TEXT.match(token):
            raise UsersFileError(f"users file {path}, {where}: user {name!r}: a token is 1-512 printable "
                                 f"characters without spaces")
        return User(name, admin), digest(token)
    if not isinstance(hashed, str) or not HEX_DIGEST.match(hashed):
        raise UsersFileError(f"users file {path}, {where}: user {name!r}: the sha256 must be 64 hex digits")
    return User(name, admin), bytes.fromhex(hashed)


def _from_json(path: Path, text: str) -> list[tuple[User, bytes]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsersFileError(f"users file {path}: not valid JSON: {exc}") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, list):
        raise UsersFileError(f"users file {path}: expected {{\"users\": [{{\"name\", \"token\"}}, ...]}}")
    entries = []
    for index, item in enumerate(users):
        where = f"users[{index}]"
        if not isinstance(item, dict):
            raise UsersFileError(f"users file {path}, {where}: expected an object")
        unknown = sorted(set(item) - {"name", "token", "token_sha256", "admin"})
        if unknown:
            raise UsersFileError(f"users file {path}, {where}: unknown field {unknown[0]!r} (known: name, "
                                 f"token, token_sha256, admin)")
        entries.append(_entry(path, where, item.get("name"), item.get("token"), item.get("token_sha256"),
                              item.get("admin", False)))
    return entries


def _from_lines(path: Path, text: str) -> list[tuple[User, bytes]]:
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        name, sep, rest = line.partition(":")
        if not sep or not rest:
            raise UsersFileError(f"users file {path}, {where}: expected NAME:TOKEN or NAME:sha256:HEX "
                                 f"(optionally followed by :admin)")
        admin = False
        if rest.endswith(":admin"):
            rest, admin = rest[: -len(":admin")], True
        if rest.startswith("sha256:"):
            entries.append(_entry(path, where, name.strip(), None, rest[len("sha256:"):], admin))
        else:
            entries.append(_entry(path, where, name.strip(), rest, None, admin))
    return entries
