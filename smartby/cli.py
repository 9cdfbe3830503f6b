"""The ``smartby`` command: thin subcommands over functions that work without it.

Errors a user can act on (`SmartbyError`, an unreachable database) print as one
line on stderr and exit 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys

import click
import psycopg

from core.db import connect, database_url, server_versions
from core.errors import SmartbyError
from core.migrate import applied, discover, migrate
from core.settings import Settings, load_settings


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """smartby: open sensor data for a city's climate and environment work."""
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = load_settings()


@cli.command()
@click.option("--no-simulate", is_flag=True, help="Do not start the simulated sensors.")
@click.pass_context
def up(ctx: click.Context, no_simulate: bool) -> None:
    """Run the whole platform locally: PostgreSQL, Mosquitto and the services."""
    from smartby.up import UpOptions, run_up

    code = run_up(_settings(ctx), UpOptions(simulate=not no_simulate))
    ctx.exit(code)


@cli.command()
@click.option("--client-id", help="MQTT client id (default: smartby-ingest-<claimed slot>).")
@click.pass_context
def ingest(ctx: click.Context, client_id: str | None) -> None:
    """Run an ingest worker: MQTT telemetry into the database, ack after commit."""
    import signal

    from ingest.worker import IngestWorker

    settings = _settings(ctx)
    worker = IngestWorker(settings, database_url(settings), client_id=client_id)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: worker.stop())
    worker.start()
    if not worker.wait_connected(30):
        worker.close()
        raise SmartbyError(
            f"no subscription at the broker {settings.mqtt_host}:{settings.mqtt_port} after 30 s"
        )
    click.echo(
        f"ingest worker {worker.client_id} consuming from "
        f"{settings.mqtt_host}:{settings.mqtt_port}",
        err=True,
    )
    worker.run()


@cli.group()
def db() -> None:
    """Database schema and status."""


@db.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Apply the migrations that have not run yet (safe to repeat)."""
    with connect(database_url(_settings(ctx)), autocommit=True) as conn:
        done = migrate(conn)
    if done:
        for m in done:
            click.echo(f"applied {m.filename}")
    else:
        click.echo("database is up to date")


@db.command("status")
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """Show server versions and which migrations have run."""
    with connect(database_url(_settings(ctx)), autocommit=True) as conn:
        versions = server_versions(conn)
        recorded = applied(conn)
    click.echo(f"PostgreSQL   {versions['postgresql']}")
    ts = versions["timescaledb"]
    click.echo(
        f"TimescaleDB  {ts} (licence {versions['timescaledb_license']})"
        if ts
        else "TimescaleDB  not installed in this database"
    )
    for m in discover():
        state = "applied" if m.version in recorded else "pending"
        click.echo(f"{m.filename:40s} {state}")


def main() -> None:
    """Entry point: run the CLI, turning user-actionable errors into one line."""
    try:
        # Without standalone mode click hands back ctx.exit()'s code instead of exiting.
        code = cli.main(standalone_mode=False, prog_name="smartby")
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("smartby: aborted", err=True)
        sys.exit(130)
    except SmartbyError as exc:
        click.echo(f"smartby: error: {exc}", err=True)
        sys.exit(1)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"smartby: error: database unreachable: {first}", err=True)
        sys.exit(1)
