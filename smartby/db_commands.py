"""``smartby db roles|size|backup|restore``: running the database for years.

Thin commands over `db.roles`, `db.storage` and `db.backup`; `register` adds them to
the ``db`` group of `smartby.cli`.  Each takes the owner's URL (SMARTBY_DATABASE_URL,
or the running ``smartby up`` stack's).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from core.errors import SmartbyError
from core.settings import Settings
from db.backup import Progress
from db.connect import connect
from smartby.locate import command_settings, database_url


def client_bindir(settings: Settings) -> Path:
    """Where pg_dump and pg_restore are: SMARTBY_PG_BINDIR, else the newest PostgreSQL's
    (Debian: /usr/lib/postgresql/<major>/bin, where the client package puts them
    too), else PATH.  They must be at least the server's major version."""
    if settings.pg_bindir is not None:
        return settings.pg_bindir
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = sorted(
            (p for p in debian.iterdir() if p.name.isdigit() and (p / "bin/pg_dump").exists()),
            key=lambda p: int(p.name),
        )
        if majors:
            return majors[-1] / "bin"
    found = shutil.which("pg_dump")
    if found:
        return Path(found).resolve().parent
    raise SmartbyError(
        "pg_dump not found: install the PostgreSQL client tools of the server's version "
        "(Debian: postgresql-client-<major>) or set SMARTBY_PG_BINDIR"
    )


def _bar(label: str) -> Progress:
    started = time.monotonic()

    def show(done: int, total: int, what: str) -> None:
        share = done / total if total else 1.0
        click.echo(
            f"\r{label} [{'#' * int(share * 30):30}] {done}/{total} "
            f"{time.monotonic() - started:5.1f} s {what[:40]:40}",
            err=True,
            nl=False,
        )

    return show


def ensure_logins(settings: Settings, url: str) -> list[str]:
    """The logins whose passwords are configured; lines saying what was done."""
    from db.roles import LOGINS, ensure_login

    configured = {
        "writer": settings.db_writer_password,
        "reader": settings.db_reader_password,
        "admin": settings.db_admin_password,
    }
    lines = []
    with connect(url, autocommit=True) as conn:
        for kind, login in LOGINS.items():
            secret = configured[kind]
            if secret is None:
                lines.append(f"{login.name:18} skipped ({login.setting} is not set)")
                continue
            created = ensure_login(conn, login, secret.get_secret_value())
            lines.append(
                f"{login.name:18} {'created' if created else 'password set'}"
                f" (member of {login.group}: {login.who})"
            )
    return lines


def register(db: click.Group) -> None:
    """Add the commands to the ``db`` group."""

    @db.command("roles")
    @click.pass_context
    def db_roles(ctx: click.Context) -> None:
        """Create the services' logins (or set their passwords) from
        SMARTBY_DB_WRITER_PASSWORD (smartby_ingest), SMARTBY_DB_READER_PASSWORD
        (smartby_read: the API, Grafana) and SMARTBY_DB_ADMIN_PASSWORD
        (smartby_registry: the API's admin routes).  Run as the owner, after migrate."""
        settings = command_settings(ctx)
        if not any(
            (settings.db_writer_password, settings.db_reader_password, settings.db_admin_password)
        ):
            raise SmartbyError(
                "no role password set: set SMARTBY_DB_WRITER_PASSWORD, "
                "SMARTBY_DB_READER_PASSWORD and SMARTBY_DB_ADMIN_PASSWORD"
            )
        for line in ensure_logins(settings, database_url(settings)):
            click.echo(line)

    @db.command("size")
    @click.pass_context
    def db_size(ctx: click.Context) -> None:
        """Size per table and per readings chunk, and the growth per year at the ingest
        rate of the last 7 days."""
        from db.storage import RATE_DAYS, human_bytes, size_report

        with connect(database_url(command_settings(ctx)), autocommit=True) as conn:
            report = size_report(conn)
        click.echo(f"{'table':28} {'size':>12} {'rows (est.)':>14}")
        for table in report.tables:
            kind = " (hypertable)" if table.hypertable else ""
            click.echo(
                f"{table.name + kind:28} {human_bytes(table.total_bytes):>12} {table.rows:>14,}"
            )
        if report.chunks:
            click.echo(f"\nreadings chunks: {len(report.chunks)}")
            for chunk in report.chunks:
                state = " compressed" if chunk.compressed else ""
                click.echo(
                    f"  {chunk.name:24} {chunk.start:%Y-%m-%d %H:%M} .. {chunk.end:%Y-%m-%d %H:%M}"
                    f" {human_bytes(chunk.total_bytes):>12}{state}"
                )
        click.echo(f"\ngrowth at the ingest rate of the last {RATE_DAYS} days:")
        per_reading = report.bytes_per_row("readings")
        raw = report.readings_growth_per_year
        rolled = report.rollups_growth_per_year
        click.echo(
            f"  readings  {report.readings_per_day:>14,.0f} a day x "
            f"{per_reading or 0:6.1f} bytes = {human_bytes(raw or 0)} a year"
        )
        click.echo(
            f"  rollups   {report.rollup_rows_per_day:>14,.0f} a day x "
            f"{report.bytes_per_row('rollups') or 0:6.1f} bytes = {human_bytes(rolled or 0)} a year"
        )
        click.echo(f"  together  {human_bytes((raw or 0) + (rolled or 0))} a year")

    @db.command("backup")
    @click.option(
        "--out",
        "folder",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder of the backups (default: SMARTBY_BACKUP_DIR, else <data_dir>/backups).",
    )
    @click.option("--keep", type=click.IntRange(1), help="Keep only the newest N backups there.")
    @click.pass_context
    def db_backup(ctx: click.Context, folder: Path | None, keep: int | None) -> None:
        """Dump the database (pg_dump custom format) into a new file."""
        from db.backup import backup
        from db.storage import human_bytes

        settings = command_settings(ctx)
        target = folder or settings.backup_dir or settings.data_dir / "backups"
        result = backup(
            database_url(settings),
            target,
            client_bindir(settings),
            keep=keep,
            progress=_bar("backup"),
        )
        click.echo("", err=True)
        click.echo(f"wrote {result.path} ({human_bytes(result.bytes)}, {result.tables} tables)")
        for path in result.removed:
            click.echo(f"removed {path} (older than the newest {keep})")

    @db.command("restore")
    @click.argument("dump", type=click.Path(dir_okay=False, path_type=Path))
    @click.pass_context
    def db_restore(ctx: click.Context, dump: Path) -> None:
        """Restore a backup into the configured database, which must be empty (see the
        README's restore runbook).  Then run `smartby db roles`."""
        from db.backup import restore

        settings = command_settings(ctx)
        result = restore(
            database_url(settings),
            dump,
            client_bindir(settings),
            progress=_bar("restore"),
        )
        click.echo("", err=True)
        edition = " with TimescaleDB" if result.timescaledb else ""
        click.echo(f"restored {dump} ({result.items} items{edition})")
        click.echo("next: `smartby db migrate --roles` (logins are not in a backup)")


def prepare_local(settings: Settings, owner_url: str, credentials: Path) -> dict[str, str]:
    """For ``smartby up``, as the owner after the migrations: the storage lifecycle
    settings, and the three logins with passwords kept (0600) in ``credentials``; the
    URL of each kind of login ("writer", "reader", "admin")."""
    import secrets

    from db.lifecycle import apply_settings
    from db.roles import LOGINS, ensure_login, login_url

    urls: dict[str, str] = {}
    with connect(owner_url, autocommit=True) as conn:
        apply_settings(conn, settings)
        for kind, login in LOGINS.items():
            path = credentials / f"db-{login.name}.password"
            if not path.exists():
                path.write_text(secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
            password = path.read_text().strip()
            ensure_login(conn, login, password)
            urls[kind] = login_url(owner_url, login, password)
    return urls
