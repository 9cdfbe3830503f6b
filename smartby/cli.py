"""The ``smartby`` command: thin subcommands over functions that work without it.

Errors a user can act on (`SmartbyError`, an unreachable database) print as one
line on stderr and exit 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click
import psycopg

from core.errors import SmartbyError
from core.settings import load_settings
from db.connect import connect, server_versions
from db.migrate import applied, discover, migrate
from smartby.broker_commands import broker
from smartby.db_commands import register as register_db_commands
from smartby.imports import import_group
from smartby.locate import command_database, command_settings, database_url, with_running_stack
from smartby.metrics import metrics

if TYPE_CHECKING:
    from datetime import datetime

    from devices.catalogue import Catalogue, DeviceSpec


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

    code = run_up(command_settings(ctx), UpOptions(simulate=not no_simulate))
    ctx.exit(code)


@cli.command()
@click.option("--client-id", help="MQTT client id (default: smartby-ingest-<claimed slot>).")
@click.pass_context
def ingest(ctx: click.Context, client_id: str | None) -> None:
    """Run an ingest worker: MQTT telemetry into the database, ack after commit (and from
    every external source in SMARTBY_INGEST_SOURCES, such as a LoRaWAN network server)."""
    import signal
    import threading

    from ingest.sources import IngestService, favour_database_thread
    from web.warnings import CatalogueTexts

    favour_database_thread()  # the committer waits for the GIL less (ingest.sources)
    settings = command_settings(ctx)
    # the public warnings speak the website's words (ingest may not import web)
    worker = IngestService(
        settings,
        database_url(settings),
        client_id=client_id,
        warning_texts=CatalogueTexts(settings.city),
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: worker.stop())
    worker.start()
    subscribed: list[bool] = []

    # Consume at once, and announce the subscription when its SUBACK comes: a resumed
    # session's backlog arrives before the SUBACK, and a worker that waited for the
    # SUBACK before consuming would stop reading (its queue bound) and never see it.
    def announce() -> None:
        subscribed.append(worker.wait_connected(30))
        if subscribed[0]:
            sources = "".join(f", {s.name} ({s.host})" for s in settings.ingest_sources)
            click.echo(
                f"ingest worker {worker.client_id} consuming from "
                f"{settings.mqtt_host}:{settings.mqtt_port}{sources}",
                err=True,
            )
        else:
            worker.stop()

    threading.Thread(target=announce, name="ingest-announce", daemon=True).start()
    worker.run()
    if subscribed == [False]:
        raise SmartbyError(
            f"no subscription at the broker {settings.mqtt_host}:{settings.mqtt_port} after 30 s"
        )


@cli.command()
@click.option("--host", help="Address to listen on (default: SMARTBY_API_HOST).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: SMARTBY_API_PORT).")
@click.pass_context
def api(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the open data API under /v1 (one worker process)."""
    from api.server import serve
    from smartby.broker import account_sync
    from smartby.push import push_service
    from stack.ports import port_is_free

    settings = with_running_stack(command_settings(ctx))
    host = host or settings.api_host
    port = settings.api_port if port is None else port
    if port and not port_is_free(port, host):
        raise SmartbyError(
            f"cannot serve the API on {host}:{port}: the port is in use "
            "(choose another with --port or SMARTBY_API_PORT)"
        )
    if port:  # where it listens, for links written without a request (`api.sensorthings.mqtt`)
        settings = settings.model_copy(update={"api_host": host, "api_port": port})
    push = push_service(settings)
    try:
        serve(
            settings,
            host=host,
            port=port,
            account_sync=account_sync(settings, database_url(settings)),
            push_sink=push,
        )
    finally:
        push.stop()


@cli.group()
def devices() -> None:
    """The device registry: sites, devices and their broker accounts.

    Every change is pushed to the broker as soon as it has committed (with the new
    secret, which the broker can only take in clear): the running `smartby up`'s, or
    the one SMARTBY_BROKER_ADMIN_PASSWORD (with SMARTBY_MQTT_HOST/PORT) opens."""


def _push(ctx: click.Context, device_ids: list[str], secrets: dict[str, str] | None = None) -> None:
    """After a registry commit: the broker's accounts of these devices, in line."""
    from smartby.broker import NO_BROKER, push_after_commit

    outcome = push_after_commit(command_settings(ctx), device_ids, secrets)
    if outcome.problem == NO_BROKER:
        click.echo(f"note: {NO_BROKER}", err=True)
    elif outcome.problem is not None:
        raise SmartbyError(f"the registry has the change, but {outcome.problem}")
    elif outcome.report is not None and outcome.report.changes:
        click.echo(f"broker updated ({outcome.report.summary()})", err=True)


@devices.command("add")
@click.argument("device_id")
@click.option("--site", "site_id", required=True, help="Site id (import or create it first).")
@click.option("--kind", type=click.Choice(["air_quality", "energy", "traffic"]), required=True)
@click.option("--vendor")
@click.option("--model")
@click.option(
    "--client-id",
    help="The MQTT client id the device's firmware uses (default: the device id); the "
    "broker lets its account in under this id only.",
)
@click.option(
    "--profile",
    default="smartby",
    show_default=True,
    help="How the device talks: smartby, tasmota, esphome, ttn-v3, chirpstack-v4.",
)
@click.option(
    "--topic",
    help="Its key in the profile's terms: the Tasmota topic, ESPHome node, TTS device id "
    "or DevEUI.",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME=METRIC",
    help="Map a payload field to a metric (METRIC[:UNIT], or - to ignore it); repeatable.",
)
@click.option(
    "--timezone", help="Time zone of the device's clock (Tasmota; default SMARTBY_TIMEZONE)."
)
@click.option(
    "--numeric-strings/--no-numeric-strings",
    default=None,
    help="Whether numbers written as text count (default: the profile's choice).",
)
@click.pass_context
def devices_add(
    ctx: click.Context,
    device_id: str,
    site_id: str,
    kind: str,
    vendor: str | None,
    model: str | None,
    profile: str,
    topic: str | None,
    fields: tuple[str, ...],
    timezone: str | None,
    numeric_strings: bool | None,
    client_id: str | None,
) -> None:
    """Register a device and print its secret (shown this once only)."""
    from core.profiles import BindingError, check_binding
    from devices.registry import DeviceRecord, add_device
    from smartby.metrics import field_options

    try:
        binding = check_binding(profile, topic, field_options(fields), timezone, numeric_strings)
    except BindingError as exc:
        raise SmartbyError(f"device {device_id}: {exc}") from None
    record = DeviceRecord(
        device_id, site_id, kind, vendor, model, client_id=client_id, binding=binding
    )
    with command_database(ctx) as conn:
        secret = add_device(conn, record)
    click.echo(
        f"registered {device_id}; its MQTT user name is {device_id!r}, client id"
        f" {client_id or device_id!r}"
    )
    if binding.key is not None:
        click.echo(f"ingest knows it by its {profile} topic {binding.key!r}")
    click.echo(f"secret (shown once, store it in the device now): {secret}")
    _push(ctx, [device_id], {device_id: secret})


@devices.command("list")
@click.pass_context
def devices_list(ctx: click.Context) -> None:
    """Every device with its site, kind, status and when it was last heard from."""
    from devices.registry import list_devices

    with command_database(ctx) as conn:
        rows = list_devices(conn)
    click.echo(f"{'id':24} {'site':24} {'kind':12} {'status':9} {'online':7} last seen")
    for r in rows:
        online = "-" if r["online"] is None else ("yes" if r["online"] else "no")
        seen = r["last_seen"].isoformat(timespec="seconds") if r["last_seen"] else "never"
        click.echo(
            f"{r['id']:24} {r['site_id'] or '-':24} {r['kind']:12} {r['status']:9} "
            f"{online:7} {seen}"
        )


@devices.command("show")
@click.argument("device_id")
@click.pass_context
def devices_show(ctx: click.Context, device_id: str) -> None:
    """One device's public fields."""
    from devices.registry import show_device

    with command_database(ctx) as conn:
        row = show_device(conn, device_id)
    for key, value in row.items():
        click.echo(f"{key:12} {value if value is not None else '-'}")


@devices.command("disable")
@click.argument("device_id")
@click.pass_context
def devices_disable(ctx: click.Context, device_id: str) -> None:
    """Lock a device out of the broker; what still arrives from it is quarantined."""
    from devices.registry import disable_device

    with command_database(ctx) as conn:
        disable_device(conn, device_id)
    click.echo(f"disabled {device_id}")
    _push(ctx, [device_id])


@devices.command("enable")
@click.argument("device_id")
@click.pass_context
def devices_enable(ctx: click.Context, device_id: str) -> None:
    """Let a disabled device in again (with its current secret)."""
    from devices.registry import enable_device

    with command_database(ctx) as conn:
        enable_device(conn, device_id)
    click.echo(f"enabled {device_id}")
    _push(ctx, [device_id])


@devices.command("rotate-secret")
@click.argument("device_id")
@click.pass_context
def devices_rotate(ctx: click.Context, device_id: str) -> None:
    """Give a device a new secret; the old one stops working at once (the broker
    disconnects a device still logged in with it)."""
    from devices.registry import rotate_secret

    with command_database(ctx) as conn:
        secret = rotate_secret(conn, device_id)
    click.echo(f"new secret for {device_id} (shown once): {secret}")
    _push(ctx, [device_id], {device_id: secret})


@devices.command("set-client-id")
@click.argument("device_id")
@click.argument("client_id", required=False)
@click.pass_context
def devices_set_client_id(ctx: click.Context, device_id: str, client_id: str | None) -> None:
    """Bind the device's account to the MQTT client id its firmware uses (without
    CLIENT_ID: its device id).  The session under the old id is ended."""
    from devices.registry import set_client_id

    with command_database(ctx) as conn:
        set_client_id(conn, device_id, client_id)
    click.echo(f"{device_id} now connects as client id {client_id or device_id!r}")
    _push(ctx, [device_id])


@devices.command("delete")
@click.argument("device_id")
@click.pass_context
def devices_delete(ctx: click.Context, device_id: str) -> None:
    """Remove a device that has stored no data (else disable it); its broker account
    and session go with it."""
    from devices.registry import delete_device

    with command_database(ctx) as conn:
        delete_device(conn, device_id)
    click.echo(f"deleted {device_id}")
    _push(ctx, [device_id])


@devices.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def devices_import(ctx: click.Context, path: Path) -> None:
    """Create or update the sites and devices of a catalogue (YAML or CSV); safe to repeat.

    Existing devices keep their secrets and status; new devices' secrets are printed
    once, here."""
    from devices.catalogue import load_catalogue
    from devices.provision import import_catalogue

    catalogue = load_catalogue(path)
    with command_database(ctx) as conn:
        result = import_catalogue(conn, catalogue)
    click.echo(
        f"{path}: sites {result.sites_created} new, {result.sites_updated} updated; "
        f"devices {len(result.devices_created)} new, {result.devices_existing} already known"
    )
    if result.devices_created:
        click.echo("secrets of the new devices (shown once, give each to its device now):")
        for device_id, secret in sorted(result.devices_created.items()):
            click.echo(f"  {device_id:32} {secret}")
    if result.devices_created or result.devices_rekeyed:
        # a new profile or key is a new broker role (its topics)
        changed = sorted({*result.devices_created, *result.devices_rekeyed})
        _push(ctx, changed, dict(result.devices_created))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if not match:
        raise SmartbyError(f"{text!r} is not a duration like 30m, 12h or 7d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _progress(label: str) -> Callable[[int, int], None]:
    """A one-line progress bar on stderr (kept off stdout, which stays parseable)."""
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        share = done / total if total else 1.0
        rate = done / max(time.monotonic() - started, 1e-6)
        bar = "#" * int(share * 30)
        click.echo(
            f"\r{label} [{bar:30}] {share:4.0%} {done:,}/{total:,} messages, {rate:,.0f}/s",
            err=True,
            nl=done >= total,
        )

    return show


@cli.command()
@click.option(
    "--catalogue",
    "catalogue_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Device catalogue (default: devices/narvik.yaml).",
)
@click.option(
    "--credentials",
    "credentials_path",
    type=click.Path(path_type=Path),
    help="JSON {device id: secret} (default: the local stack's).",
)
@click.option(
    "--backfill",
    help="Publish this much history (30m, 12h, 7d) as fast as ingest takes it, then exit.",
)
@click.option("--history", help="Like --backfill, then go on live (what `smartby up` uses).")
@click.option("--end", "end_text", help="ISO 8601 time the backfill ends at (default: now).")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Live replay speed factor, used with --start.",
)
@click.option("--start", "start_text", help="ISO 8601 time to start a live replay from.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", "device_ids", multiple=True, help="Only these devices (repeatable).")
@click.option(
    "--direct",
    is_flag=True,
    help="With --backfill: write straight into the database through ingest's pipeline, "
    "without the broker (fast demo data; registers the catalogue's devices).",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    catalogue_path: Path | None,
    credentials_path: Path | None,
    backfill: str | None,
    history: str | None,
    end_text: str | None,
    speed: float,
    start_text: str | None,
    seed: int,
    device_ids: tuple[str, ...],
    direct: bool,
) -> None:
    """Simulated Narvik sensors publishing over MQTT with their own credentials."""
    import signal

    from devices.catalogue import load_catalogue, narvik_catalogue_path
    from devices.provision import CredentialStore
    from devices.simulation import Simulator
    from stack.running import read_running_stack

    settings = command_settings(ctx)
    catalogue = load_catalogue(catalogue_path or narvik_catalogue_path())
    specs = [d for d in catalogue.devices if not device_ids or d.id in device_ids]
    unknown = set(device_ids) - {d.id for d in specs}
    if unknown:
        raise SmartbyError(f"not in the catalogue: {', '.join(sorted(unknown))}")
    # the simulator plays devices written for smartby; a Tasmota plug is not one
    foreign = sorted(d.id for d in specs if d.profile != "smartby")
    if foreign and device_ids:
        raise SmartbyError(f"only smartby-profile devices are simulated, not {', '.join(foreign)}")
    specs = [d for d in specs if d.profile == "smartby"]
    if direct:
        span = _duration(backfill)
        if span is None or history is not None:
            raise SmartbyError("--direct needs --backfill (and no --history)")
        _load_direct(ctx, catalogue, specs, span, _iso(end_text) if end_text else None, seed)
        return
    store = CredentialStore(credentials_path or settings.data_dir / "credentials" / "devices.json")
    host, port, tls = settings.mqtt_host, settings.mqtt_port, settings.mqtt_client_tls
    stack = read_running_stack(settings.data_dir)
    if stack is not None and "mqtt_port" not in settings.model_fields_set:
        host, port = stack.mqtt_host, stack.mqtt_port
        if tls is not None and stack.mqtt_tls_port is not None:
            # as a device would: to the TLS listener, trusting the stack's own CA
            port = stack.mqtt_tls_port
            if tls.ca_file is None and stack.mqtt_ca_file is not None:
                tls = replace(tls, ca_file=stack.mqtt_ca_file)
    simulator = Simulator(
        specs,
        host=host,
        port=port,
        prefix=settings.mqtt_topic_prefix,
        credentials=store.load(),
        seed=seed,
        tls=tls,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: simulator.stop())
    end = _iso(end_text) if end_text else None
    with simulator:
        over = " over TLS" if tls is not None else ""
        click.echo(f"simulating {len(specs)} devices on {host}:{port}{over}", err=True)
        for span, label in ((_duration(backfill), "backfill"), (_duration(history), "history")):
            if span:
                report = simulator.backfill(span, end=end, progress=_progress(label))
                click.echo(
                    f"{label}: {report.messages:,} messages from {len(report.per_device)}"
                    f" devices in {report.elapsed_s:.1f} s",
                    err=True,
                )
        if backfill is None:
            click.echo("live: publishing in real time (Ctrl-C stops)", err=True)
            simulator.run(speed=speed, start=_iso(start_text) if start_text else None)


def _load_direct(
    ctx: click.Context,
    catalogue: Catalogue,
    specs: list[DeviceSpec],
    span: float,
    end: float | None,
    seed: int,
) -> None:
    from devices.provision import import_catalogue
    from smartby.load import LoadReport, load_simulation

    settings = command_settings(ctx)
    url = database_url(settings)
    with connect(url) as conn:
        import_catalogue(conn, catalogue)
    stop = time.time() if end is None else end
    start = stop - span
    started = time.monotonic()

    def show(sent: float, report: LoadReport) -> None:
        share = (sent - start) / span
        rate = report.readings / max(time.monotonic() - started, 1e-6)
        click.echo(
            f"\rdirect load [{'#' * int(share * 30):30}] {share:4.0%}"
            f" {report.readings:,} readings, {rate:,.0f}/s",
            err=True,
            nl=False,
        )

    report = load_simulation(settings, url, specs, start, stop, seed=seed, progress=show)
    click.echo(
        f"\ndirect load: {report.messages:,} messages, {report.readings:,} readings stored,"
        f" {report.duplicates:,} already there, {report.quarantined:,} quarantined"
        f" in {time.monotonic() - started:.1f} s",
        err=True,
    )


def _iso(text: str) -> float:
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SmartbyError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise SmartbyError(f"{text!r} has no UTC offset (add Z or +01:00)")
    return moment.timestamp()


def _time_range(start_text: str, end_text: str | None) -> tuple[datetime, datetime]:
    """--from and --to (default: now) as UTC moments; --to must come after --from."""
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(_iso(start_text), UTC)
    end = datetime.fromtimestamp(_iso(end_text), UTC) if end_text else datetime.now(UTC)
    if end <= start:
        raise SmartbyError(f"--to {end_text or 'now'} is not after --from {start_text}")
    return start, end


@cli.group()
def rollup() -> None:
    """Rollups (1-minute, hourly and daily partial aggregates)."""


@rollup.command("rebuild")
@click.option("--from", "start_text", required=True, help="ISO 8601 start (with offset).")
@click.option("--to", "end_text", required=True, help="ISO 8601 end (with offset).")
@click.pass_context
def rollup_rebuild(ctx: click.Context, start_text: str, end_text: str) -> None:
    """Recompute the rollups of every local day touching [--from, --to) from readings."""

    from db.rollups import rebuild

    settings = command_settings(ctx)
    start, end = _time_range(start_text, end_text)

    def show(lo: datetime, hi: datetime) -> None:
        click.echo(f"\rrebuilt rollups up to {hi.isoformat()}", err=True, nl=False)

    with connect(database_url(settings)) as conn:
        first, last, readings = rebuild(conn, start, end, tz=settings.timezone, progress=show)
    click.echo("", err=True)
    click.echo(f"rebuilt {first.isoformat()} .. {last.isoformat()} from {readings:,} readings")
    click.echo("their indicators are queued: run `smartby indicators update` or let ingest do it")


@cli.group()
def indicators() -> None:
    """Indicator tables: air quality index, energy per building, traffic per counter."""


@indicators.command("update")
@click.option("--from", "start_text", help="Also recompute every local day from here (ISO 8601).")
@click.option("--to", "end_text", help="... up to here (default: now).")
@click.pass_context
def indicators_update(ctx: click.Context, start_text: str | None, end_text: str | None) -> None:
    """Recompute the indicators of the days waiting for it (ingest queues each day it
    writes to; ingest workers also do this every SMARTBY_INDICATORS_INTERVAL_S), and of
    every day in [--from, --to) if given (e.g. after changing the grid factor)."""
    from zoneinfo import ZoneInfo

    from core.rollups import epoch_us, from_epoch_us, local_days
    from db.indicators import DayUpdate, mark_days, update_pending
    from db.lifecycle import refuse_expired

    settings = command_settings(ctx)
    if end_text is not None and start_text is None:
        raise SmartbyError("--to needs --from")
    span = _time_range(start_text, end_text) if start_text is not None else None
    with connect(database_url(settings)) as conn:
        if span is not None:
            first_day = local_days(epoch_us(span[0]), epoch_us(span[1]), settings.timezone)[0]
            refuse_expired(conn, from_epoch_us(first_day), "recomputing indicators")
            with conn.transaction():
                mark_days(conn, *span, settings.timezone)

        def show(update: DayUpdate) -> None:
            click.echo(
                f"{update.day.astimezone(ZoneInfo(settings.timezone)).date()}:"
                f" {update.aqi_rows} AQI hours, {update.energy_days} buildings,"
                f" {update.traffic_days} counters",
                err=True,
            )

        done = update_pending(conn, settings, progress=show)
    click.echo(f"recomputed the indicators of {len(done)} day(s)")


@cli.group()
def db() -> None:
    """Database schema and status."""


@db.command("migrate")
@click.option(
    "--roles", is_flag=True, help="Also create the services' logins (as `smartby db roles`)."
)
@click.pass_context
def db_migrate(ctx: click.Context, roles: bool) -> None:
    """Apply the migrations that have not run yet, and the storage lifecycle settings
    (SMARTBY_RETENTION_*, SMARTBY_COMPRESS_AFTER); safe to repeat."""
    from db.lifecycle import apply_settings
    from smartby.db_commands import ensure_logins

    with command_database(ctx) as conn:
        done = migrate(conn)
        lifecycle = apply_settings(conn, command_settings(ctx))
    if done:
        for m in done:
            click.echo(f"applied {m.filename}")
    else:
        click.echo("database is up to date")
    for line in lifecycle.lines:
        click.echo(f"storage: {line}")
    if roles:
        for line in ensure_logins(command_settings(ctx), database_url(command_settings(ctx))):
            click.echo(f"role: {line}")


@db.command("status")
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """Show server versions and which migrations have run."""
    with command_database(ctx) as conn:
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


register_db_commands(db)


@cli.group()
def dashboards() -> None:
    """Grafana dashboards as code: generate them, or publish them to a Grafana."""


@dashboards.command("build")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the dashboard JSON (default: dashboards/generated, which compose mounts).",
)
@click.option(
    "--datasources-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Data-source provisioning file "
    "(default: deploy/grafana/provisioning/datasources/datasources.yaml).",
)
@click.pass_context
def dashboards_build(ctx: click.Context, out: Path | None, datasources_out: Path | None) -> None:
    """Write the dashboards' JSON and the data-source provisioning file (deterministic)."""
    from dashboards.build import DATASOURCES_YAML, GENERATED, write

    changed = write(
        out or GENERATED,
        datasources_out or DATASOURCES_YAML,
        timezone=command_settings(ctx).timezone,
    )
    for path in changed:
        click.echo(f"wrote {path}")
    if not changed:
        click.echo("dashboards are up to date")


@dashboards.command("publish")
@click.option("--url", required=True, help="Grafana's base URL, e.g. https://grafana.example.no")
@click.option(
    "--token",
    envvar="SMARTBY_GRAFANA_TOKEN",
    required=True,
    help="Service account token (Editor; Admin with --datasources). Env: SMARTBY_GRAFANA_TOKEN.",
)
@click.option("--folder", default="smartby", show_default=True, help="Folder title.")
@click.option(
    "--datasources",
    is_flag=True,
    help="Also create or update the TimescaleDB data source (from SMARTBY_DATABASE_URL, "
    "as Grafana must reach it) and the Prometheus one.",
)
@click.option(
    "--prometheus-url",
    default="http://localhost:9090",
    show_default=True,
    help="Prometheus as Grafana reaches it (with --datasources).",
)
@click.pass_context
def dashboards_publish(
    ctx: click.Context,
    url: str,
    token: str,
    folder: str,
    datasources: bool,
    prometheus_url: str,
) -> None:
    """Create or update the folder, data sources and dashboards in an existing Grafana."""
    from dashboards.datasources import api_payloads
    from dashboards.publish import publish

    settings = command_settings(ctx)
    payloads = api_payloads(database_url(settings), prometheus_url) if datasources else None
    report = publish(url, token, folder, payloads, timezone=settings.timezone)
    click.echo(f"folder {report.folder!r}: {'created' if report.folder_created else 'exists'}")
    for uid, outcome in report.datasources.items():
        click.echo(f"data source {uid}: {outcome}")
    for uid, outcome in report.dashboards.items():
        click.echo(f"dashboard {uid}: {outcome}")
    for uid in report.missing_datasources:
        click.echo(
            f"warning: Grafana has no data source with uid {uid!r}; the panels that use it "
            "show errors until it exists (rerun with --datasources, or create it)",
            err=True,
        )


cli.add_command(import_group)
cli.add_command(broker)
cli.add_command(metrics)


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
