"""The `alo116` command: serve, migrate, create-user, purge, demo."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn

from chat_server import accounts, audit_log, directory_io, library, logs, taxonomy
from chat_server.errors import Refused
from chat_server.settings import InsecureSettings, Settings
from db.engine import create_engine, session_factory
from db.migrate import upgrade

DEMO_ACCOUNTS = (
    # username, display name, role
    ("ana", "Ana", "counsellor"),
    ("besnik", "Besnik", "counsellor"),
    ("drita", "Drita", "supervisor"),
    ("admin", "Administratori", "admin"),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alo116", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the app with settings from ALO116_*")
    serve.add_argument("--host", default=os.environ.get("ALO116_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("ALO116_PORT", "8000")))

    commands.add_parser("migrate", help="apply the database migrations")

    create = commands.add_parser("create-user", help="add a staff account (password on stdin)")
    create.add_argument("username")
    create.add_argument("--role", required=True, choices=accounts.ROLES)
    create.add_argument("--name", help="the name shown to children and colleagues")
    create.add_argument("--max-chats", type=int, default=3)

    purge = commands.add_parser(
        "purge", help="remove what retention says must go (docs/security.md); daily by itself"
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="only count what would be removed; change nothing"
    )

    audit = commands.add_parser("audit", help="read the audit log (the reading is audited too)")
    audit.add_argument("--since", help="a day (YYYY-MM-DD, helpline time) or an ISO time")
    audit.add_argument("--until", help="the same; a day includes the whole day")
    audit.add_argument("--actor", help="a staff username")
    audit.add_argument("--action", help="an action or its start, e.g. monitor or auth.login")
    audit.add_argument("--limit", type=int, default=100)

    demo = commands.add_parser("demo", help="SQLite, demo accounts, serve: all in one")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=int(os.environ.get("ALO116_PORT", "8000")))

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            settings = Settings(demo=True, public_url=f"http://{args.host}:{args.port}")
        else:
            settings = Settings()
        if args.command == "serve":
            settings.check_production_ready()
            serve_app(settings, args.host, args.port, _log_config(settings.log_format))
        elif args.command == "migrate":
            upgrade(settings.database_url)
            print(f"migrated {_redacted(settings.database_url)}")
        elif args.command == "create-user":
            password = _read_password()
            asyncio.run(_create_user(settings, args, password))
            print(f"created {args.role} {args.username!r}")
        elif args.command == "purge":
            counts = asyncio.run(_purge(settings, dry_run=args.dry_run))
            _print_purge(counts, dry_run=args.dry_run)
        elif args.command == "audit":
            print(asyncio.run(_audit(settings, args)))
        elif args.command == "demo":
            # A person reads the demo at a terminal: text, unless ALO116_LOG_FORMAT says.
            given = "log_format" in settings.model_fields_set
            log_config = _log_config(settings.log_format if given else "text")
            upgrade(settings.database_url)
            passwords = asyncio.run(_demo_accounts(settings))
            _print_demo(settings, args.host, args.port, passwords)
            serve_app(settings, args.host, args.port, log_config)
    except (InsecureSettings, Refused) as exc:
        print(f"alo116: {exc}", file=sys.stderr)
        return 2
    return 0


def serve_app(settings: Settings, host: str, port: int, log_config: dict[str, Any]) -> None:
    from chat_server.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        ws="chat_server.ws_protocol:LeanWebSocketsSansIOProtocol",
        ws_max_size=settings.max_frame_bytes,
        # Compression costs memory per connection and can leak secrets (CRIME/BREACH).
        ws_per_message_deflate=False,
        # Access logs would record children's addresses: never write them.
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        # Every logger, uvicorn's included, in one format on stderr (chat_server/logs.py);
        # log_privacy.install() then holds back addresses and statements at startup.
        log_config=log_config,
    )


def _log_config(log_format: logs.LogFormat) -> dict[str, Any]:
    try:
        return logs.logging_config(log_format, os.environ.get("ALO116_LOG_LEVEL", "info"))
    except ValueError as exc:
        raise Refused("bad_request", str(exc)) from None


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise Refused("bad_request", "the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


async def _create_user(settings: Settings, args: argparse.Namespace, password: str) -> None:
    engine = create_engine(settings.database_url)
    try:
        await accounts.create_user(
            session_factory(engine),
            username=args.username,
            password=password,
            role=args.role,
            display_name=args.name,
            max_chats=args.max_chats,
        )
    finally:
        await engine.dispose()


async def _demo_accounts(settings: Settings) -> dict[str, str]:
    """Fresh random passwords for the demo accounts on every run, printed once."""
    engine = create_engine(settings.database_url)
    db = session_factory(engine)
    passwords: dict[str, str] = {}
    try:
        for username, name, role in DEMO_ACCOUNTS:
            password = secrets.token_urlsafe(9)
            await accounts.set_password_or_create(
                db, username=username, password=password, role=role, display_name=name
            )
            passwords[username] = password
        # Example referral services and library items, clearly marked as examples to verify.
        await directory_io.load_examples(db, await taxonomy.load(db), None)
        await library.load_examples(db, None)
    finally:
        await engine.dispose()
    return passwords


def _print_demo(settings: Settings, host: str, port: int, passwords: dict[str, str]) -> None:
    base = f"http://{host}:{port}"
    print("\nALO 116 111 chat: demo on the embedded SQLite database", settings.database_url)
    print(f"  child page:   {base}/chat        (English: {base}/chat?lang=en)")
    print(f"  console:      {base}/console")
    print("  demo accounts (new passwords on every run):")
    for username, _name, role in DEMO_ACCOUNTS:
        print(f"    {role:<11} {username:<8} {passwords[username]}")
    print(flush=True)


async def _purge(settings: Settings, *, dry_run: bool) -> dict[str, int]:
    from chat_server import retention

    engine = create_engine(settings.database_url)
    try:
        db = session_factory(engine)
        counts = await (retention.plan if dry_run else retention.purge)(db, settings)
        return counts.as_dict()
    finally:
        await engine.dispose()


def _print_purge(counts: dict[str, int], *, dry_run: bool) -> None:
    print("would remove (dry run, nothing changed):" if dry_run else "removed:")
    for name, count in counts.items():
        print(f"  {name:<18} {count}")


async def _audit(settings: Settings, args: argparse.Namespace) -> str:
    zone = ZoneInfo(settings.timezone)
    try:
        since = audit_log.parse_moment(args.since, zone)
        until = audit_log.parse_moment(args.until, zone, end=True)
    except ValueError as exc:
        raise Refused("bad_request", str(exc)) from None
    if not 1 <= args.limit <= 10_000:
        raise Refused("bad_request", f"--limit must be 1 to 10000, not {args.limit!r}")
    engine = create_engine(settings.database_url)
    db = session_factory(engine)
    try:
        rows = await audit_log.query(
            db, since=since, until=until, actor=args.actor, action=args.action, limit=args.limit
        )
        filters = {
            "since": args.since,
            "until": args.until,
            "actor": args.actor,
            "action": args.action,
        }
        await audit_log.viewed(db, actor_user_id=None, via="cli", filters=filters)
    finally:
        await engine.dispose()
    return audit_log.format_rows(rows)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    raise SystemExit(main())
