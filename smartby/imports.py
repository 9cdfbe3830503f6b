"""``smartby import csv``: a city's older readings from CSV, through ingest's pipeline
(`ingest.history`), with a progress bar on stderr and a summary on stdout."""

from __future__ import annotations

import time
from pathlib import Path

import click

from smartby.locate import command_settings, database_url


@click.group("import")
def import_group() -> None:
    """Import history: older readings from files."""


@import_group.command("csv")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", "device_id", required=True, help="The registered device the rows are of.")
@click.option(
    "--map",
    "maps",
    multiple=True,
    required=True,
    help="COLUMN=METRIC or COLUMN=METRIC:UNIT (SenML unit; default: the header's, e.g. "
    "'PM10 (µg/m³)', else the metric's). Repeat for each column.",
)
@click.option("--time", "time_column", help="The time column (default: found by its name).")
@click.option(
    "--tz",
    help="Zone of times without an offset: a name or +01:00 (default: SMARTBY_TIMEZONE).",
)
@click.option(
    "--where",
    multiple=True,
    help="Only rows whose COLUMN has VALUE, e.g. Felt=Totalt (repeatable).",
)
@click.pass_context
def import_csv_command(
    ctx: click.Context,
    path: Path,
    device_id: str,
    maps: tuple[str, ...],
    time_column: str | None,
    tz: str | None,
    where: tuple[str, ...],
) -> None:
    """Load a CSV of past readings (NILU, Statens vegvesen, a spreadsheet) for DEVICE:
    units converted, QC applied, rollups and indicators updated. A re-run is harmless:
    what is stored already is a duplicate, a different value is quarantined."""
    from ingest.history import ColumnMap, ImportReport, import_csv

    settings = command_settings(ctx)
    started = time.monotonic()

    def show(share: float, report: ImportReport) -> None:
        rate = report.readings / max(time.monotonic() - started, 1e-6)
        click.echo(
            f"\rimport [{'#' * int(share * 30):30}] {share:4.0%} {report.rows:,} rows,"
            f" {report.readings:,} readings, {rate:,.0f}/s",
            err=True,
            nl=False,
        )

    report = import_csv(
        settings,
        database_url(settings),
        path,
        device_id,
        [ColumnMap.parse(m) for m in maps],
        time_column=time_column,
        tz=tz,
        where=where,
        progress=show,
    )
    click.echo("", err=True)
    span = (
        f" from {report.first.isoformat()} to {report.last.isoformat()}"
        if report.first and report.last
        else ""
    )
    click.echo(f"{path.name}: {report.rows:,} rows{span}")
    click.echo(
        f"readings: {report.stored:,} stored, {report.duplicates:,} duplicate,"
        f" {report.quarantined:,} quarantined; {report.empty:,} empty cells,"
        f" {report.skipped:,} rows left out by --where"
    )
    if report.reasons:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(report.reasons.items()))
        click.echo(f"quarantine: {reasons} (see the quarantine table)")
    click.echo(f"indicators recomputed for {report.days} day(s)")
