"""``lcmgraph serve`` options for access and retention: tokens from a file or
the environment, the users file, the history's limits, connection limits."""

from __future__ import annotations

import argparse
import dataclasses
import os
import stat
from pathlib import Path

from ..argtypes import number
from .config import Limits, Retention, ServerConfig

_COUNT = number(int, "a whole number of at least 1", low=1)
_DAYS = number(float, "a number of days from 0 to 100000", low=0, high=100_000)
_SECONDS = number(float, "seconds from 0.1 to 86400", low=0.1, high=86400)

TOKEN_ENV = "LCMGRAPH_TOKEN"
DAY = 86400.0


class ServeOptionError(ValueError):
    """An option's value cannot be used (exit code 2); the message says which and why."""


def add_access_arguments(p: argparse.ArgumentParser) -> None:
    limits, retention = Limits(), Retention()
    p.add_argument("--token-file", metavar="PATH",
                   help=f"read the admin token from this file (first line); unlike --token it does not "
                        f"show in `ps`; ${TOKEN_ENV} works too")
    p.add_argument("--users", metavar="FILE",
                   help="per-user tokens: JSON {\"users\": [{\"name\", \"token\" | \"token_sha256\", \"admin\"}]} "
                        "or NAME:TOKEN lines; a user sees and controls only its own jobs (see docs/api.md)")
    p.add_argument("--keep-history", type=_COUNT, default=retention.keep_history, metavar="N",
                   help=f"finished jobs kept in the history, newest first (default {retention.keep_history})")
    p.add_argument("--keep-cancelled", type=_COUNT, default=retention.keep_cancelled, metavar="N",
                   help=f"cancelled jobs kept (default {retention.keep_cancelled})")
    p.add_argument("--keep-days", type=_DAYS, default=retention.max_age / DAY, metavar="D",
                   help=f"remove finished jobs older than D days; 0 keeps them regardless of age "
                        f"(default {retention.max_age / DAY:g})")
    p.add_argument("--header-timeout", type=_SECONDS, default=limits.header_timeout, metavar="S",
                   help=f"close a connection that has not sent a complete request head S seconds after "
                        f"opening or after its last response (default {limits.header_timeout:g})")
    p.add_argument("--max-connections", type=_COUNT, default=limits.max_connections, metavar="N",
                   help=f"open connections at most; more are closed at once (default {limits.max_connections})")


def apply_access_options(args: argparse.Namespace, config: ServerConfig) -> ServerConfig:
    """The config with the access and retention options applied (reads the token and users files)."""
    from .users import UsersFileError, UserTable

    token = getattr(args, "token", None)
    token_file = getattr(args, "token_file", None)
    if token and token_file:
        raise ServeOptionError("give --token or --token-file, not both")
    if token_file:
        token = read_token_file(Path(token_file))
    config.token = token or os.environ.get(TOKEN_ENV) or None
    users_file = getattr(args, "users", None)
    if users_file:
        try:
            config.users = UserTable.from_file(Path(users_file))
        except UsersFileError as exc:
            raise ServeOptionError(str(exc)) from None
    keep_days = getattr(args, "keep_days", None)
    config.retention = Retention(
        keep_history=getattr(args, "keep_history", config.retention.keep_history),
        keep_cancelled=getattr(args, "keep_cancelled", config.retention.keep_cancelled),
        max_age=config.retention.max_age if keep_days is None else keep_days * DAY)
    limits = config.limits
    config.limits = dataclasses.replace(
        limits, header_timeout=getattr(args, "header_timeout", limits.header_timeout),
        max_connections=getattr(args, "max_connections", limits.max_connections))
    return config


def read_token_file(path: Path) -> str:
    try:
        info = path.stat()
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeOptionError(f"cannot read the token file {path}: {exc}") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise ServeOptionError(f"the token file {path} is empty; write a long random token on its first line")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        import sys

        print(f"warning: the token file {path} is readable by other users; chmod 600 it", file=sys.stderr)
    return token



