"""Importing a city's older readings from CSV files, through ingest's own pipeline.

Years of readings from earlier stations come as spreadsheets: NILU's hourly air-quality
series (luftkvalitet.info), Statens vegvesen's hourly traffic volumes per length class
(trafikkdata.no).  Each row becomes one SenML pack (RFC 8428) from the device it is
imported for, "received" at its own time, and goes through the very `BatchPreparer`
and `BatchWriter` MQTT ingest uses: units converted to the metric's canonical unit,
QC flags, quarantine with a reason, binary COPY, rollups in the same transaction,
the local days queued for their indicators (recomputed at the end).  So a re-run is
harmless: a reading already stored is a duplicate, one stored with another value is
quarantined as ``conflicting_value``, as for a redelivered MQTT message.

What such files look like, and what is read:
- the delimiter is sniffed (``;`` in Norwegian exports, ``,`` or tab elsewhere); a
  UTF-8 byte-order mark and Windows line ends are fine;
- numbers may have a decimal comma and spaces (or no-break spaces) between
  thousands: ``1 234,5``; an empty cell, ``-``, ``NaN`` or ``n/a`` is no reading;
- the time column is found by its name (``Fra-tid``, ``Fra``, ``Tid``, ``Tidspunkt``,
  ``Dato``, ``time`` ...) or named with ``time_column``.  Times are ISO 8601 with an
  offset (``2024-01-01T00:00+01:00``), or local wall time in ``tz``
  (``01.01.2024 00:00``, ``2024-01-01 00:00``): an hourly mean is stored at the start
  of its hour, so it lands in that hour's bucket;
- a column's unit comes from ``--map COLUMN=METRIC:UNIT``, else from its header
  (``PM10 (µg/m³)``), else it is the metric's canonical unit;
- ``where`` keeps only rows whose column has a value (trafikkdata.no repeats each
  hour per lane and in total: ``Felt=Totalt``).
A row that cannot be read (no time, a cell that is not a number) is quarantined
with its line number and text, never dropped.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import psycopg

from core.errors import SmartbyError
from core.settings import Settings
from core.units import is_known_unit
from db.indicators import update_pending
from ingest.pipeline import BatchPreparer, Message, QuarantineRow
from ingest.writer import BatchWriter, DatabaseRegistry

#: header names of a time column, most specific first (case and spacing ignored)
TIME_COLUMNS = (
    "fra-tid",
    "fra tid",
    "fra",
    "starttid",
    "tidspunkt",
    "tid",
    "dato og tid",
    "time",
    "timestamp",
    "datetime",
    "date",
    "dato",
)
#: units as spreadsheets write them -> SenML (RFC 8428 / 8798) symbols
UNIT_SYMBOLS = {
    "µg/m³": "ug/m3",
    "μg/m³": "ug/m3",
    "µg/m3": "ug/m3",
    "ug/m³": "ug/m3",
    "ug/m3": "ug/m3",
    "mg/m³": "mg/m3",
    "°c": "Cel",
    "grader": "Cel",
    "%rh": "%RH",
    "hpa": "hPa",
    "km/t": "km/h",
    "km/h": "km/h",
    "kwh": "kWh",
    "w": "W",
    "kw": "kW",
    "kjt": "count",
    "kjøretøy": "count",
    "antall": "count",
    "stk": "count",
}
EMPTY = frozenset({"", "-", "nan", "n/a", "na", "null"})
_HEADER_UNIT = re.compile(r"^(?P<name>.*?)\s*[\(\[](?P<unit>[^\)\]]+)[\)\]]\s*$")
_LOCAL_FORMATS = (
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
)
#: messages per pipeline batch (one transaction each)
BATCH_ROWS = 5000


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """``COLUMN=METRIC[:UNIT]``: which column holds which metric, in which unit."""

    column: str
    metric: str
    unit: str | None = None

    @classmethod
    def parse(cls, text: str) -> ColumnMap:
        """The column may itself hold ``=`` (``>= 5,6m=heavy_vehicle_count``): the last
        ``=`` separates it from the metric."""
        column, sep, target = text.rpartition("=")
        metric, _, unit = target.partition(":")
        if not sep or not column.strip() or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", metric):
            raise SmartbyError(
                f"--map {text!r} is not COLUMN=METRIC or COLUMN=METRIC:UNIT "
                "(e.g. 'PM10=pm10' or 'NO2 (ppb)=no2:ppb')"
            )
        return cls(column.strip(), metric, unit.strip() or None)


@dataclass(slots=True)
class ImportReport:
    rows: int = 0  # data rows read
    readings: int = 0  # cells with a value
    stored: int = 0  # readings newly stored
    duplicates: int = 0  # already stored with the same value
    quarantined: int = 0  # quarantine rows: unreadable rows, conflicts, refused readings
    empty: int = 0  # cells without a value
    skipped: int = 0  # rows left out by ``where``
    days: int = 0  # local days whose indicators were recomputed
    first: datetime | None = None
    last: datetime | None = None
    reasons: dict[str, int] = field(default_factory=dict)


def _unit_of(header: str) -> str | None:
    match = _HEADER_UNIT.match(header)
    if match is None:
        return None
    written = match["unit"].strip()
    return UNIT_SYMBOLS.get(written.lower(), written)


def _number(text: str) -> float | None:
    """A cell as a number (decimal comma, spaces between thousands); None when empty;
    ValueError when it is something else."""
    cell = text.strip().replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
    if cell.lower() in EMPTY:
        return None
    if "," in cell:
        if "." in cell:  # 1.234,5
            cell = cell.replace(".", "")
        cell = cell.replace(",", ".")
    return float(cell)


def _zone(tz: str) -> tzinfo:
    """A zone name (Europe/Oslo) or a fixed offset (+01:00: Norwegian normal time)."""
    fixed = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", tz.strip())
    if fixed is not None:
        sign = 1 if fixed[1] == "+" else -1
        return timezone(sign * timedelta(hours=int(fixed[2]), minutes=int(fixed[3])))
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise SmartbyError(
            f"--tz {tz!r} is neither a time zone nor an offset like +01:00"
        ) from None


class TimeReader:
    """Times of one file: ISO 8601 with an offset as they are; local wall times in the
    zone, the second of two equal ones in the autumn's repeated hour taken as the
    later (fold=1, PEP 495), as rows come in time order."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self.previous: datetime | None = None

    def __call__(self, text: str) -> datetime:
        moment = _wall_time(text.strip())
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
        fold = 1 if self.previous is not None and moment == self.previous else 0
        self.previous = moment
        return moment.replace(tzinfo=self.zone, fold=fold).astimezone(UTC)


def _wall_time(cell: str) -> datetime:
    """ISO 8601 (aware when it has an offset), else one of the local forms."""
    try:
        return datetime.fromisoformat(cell)
    except ValueError:
        pass
    for form in _LOCAL_FORMATS:
        try:
            return datetime.strptime(cell, form)  # local wall time: zoned by the caller
        except ValueError:
            continue
    raise ValueError(f"{cell!r} is not a time (e.g. 2024-01-01T00:00+01:00 or 01.01.2024 00:00)")


@dataclass(frozen=True, slots=True)
class Plan:
    """How the rows of one file are read: the time column, and per mapped column its
    position, metric and unit."""

    time_at: int
    columns: tuple[tuple[int, str, str | None], ...]
    where: tuple[tuple[int, str], ...]


def plan_columns(
    header: Sequence[str], maps: Sequence[ColumnMap], time_column: str | None, where: Sequence[str]
) -> Plan:
    """Match the header against the mapping; every mistake is one clear error."""
    names = [h.strip() for h in header]
    folded = {n.lower(): i for i, n in enumerate(names)}

    def find(column: str) -> int:
        at = folded.get(column.strip().lower())
        if at is None:
            raise SmartbyError(f"no column {column!r} in the file; its columns: {', '.join(names)}")
        return at

    if time_column is not None:
        time_at = find(time_column)
    else:
        found = next((folded[c] for c in TIME_COLUMNS if c in folded), None)
        if found is None:
            raise SmartbyError(
                f"no time column found (looked for {', '.join(TIME_COLUMNS)}): name it with --time"
            )
        time_at = found
    columns = []
    for mapping in maps:
        at = find(mapping.column)
        unit = mapping.unit or _unit_of(names[at])
        if unit is not None and not is_known_unit(unit):
            raise SmartbyError(
                f"column {names[at]!r} is in {unit!r}, which smartby cannot convert: give "
                f"its unit with --map '{mapping.column}={mapping.metric}:UNIT' (SenML units)"
            )
        columns.append((at, mapping.metric, unit))
    conditions = []
    for condition in where:
        column, sep, value = condition.partition("=")
        if not sep:
            raise SmartbyError(f"--where {condition!r} is not COLUMN=VALUE (e.g. Felt=Totalt)")
        conditions.append((find(column), value.strip()))
    return Plan(time_at, tuple(columns), tuple(conditions))


def _open(path: Path) -> tuple[io.TextIOWrapper, str]:
    """The file as text (UTF-8, with or without BOM; else Windows-1252, which older
    Norwegian exports use) and its sniffed delimiter."""
    raw = path.read_bytes()[:65536]
    try:
        raw.decode("utf-8-sig")
        encoding = "utf-8-sig"
    except UnicodeDecodeError:
        encoding = "cp1252"
    sample = codecs.decode(raw, encoding, errors="replace")
    first = next((line for line in sample.splitlines() if line.strip()), "")
    delimiter = max((";", "\t", ","), key=first.count)
    return open(path, encoding=encoding, newline=""), delimiter  # the caller closes it


Progress = Callable[[float, ImportReport], None]


def import_csv(
    settings: Settings,
    url: str,
    path: Path,
    device_id: str,
    maps: Sequence[ColumnMap],
    *,
    time_column: str | None = None,
    tz: str | None = None,
    where: Sequence[str] = (),
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ImportReport:
    """Import the readings of ``path`` for ``device_id`` (a registered device);
    ``progress(share of the file read, report)`` after each batch."""
    if not maps:
        raise SmartbyError("nothing to import: map at least one column (--map COLUMN=METRIC)")
    zone = _zone(tz or settings.timezone)
    registry = DatabaseRegistry(url)
    report = ImportReport()
    try:
        registry.load()
        state = registry.device_status(device_id)
        if state is None:
            raise SmartbyError(
                f"device {device_id!r} is not registered (smartby devices add, or import "
                "the catalogue that has it)"
            )
        for mapping in maps:
            if registry.metric(mapping.metric) is None:
                raise SmartbyError(f"no metric {mapping.metric!r} in the metric catalogue")
        preparer = BatchPreparer.from_settings(registry, settings)
        # old readings: nothing in a history is too old, and each row is received at
        # its own time, so the time-window check of live ingest passes
        writer = BatchWriter(url, "smartby-import", rollups=True)
        try:
            _read_into(path, device_id, maps, time_column, where, zone, settings, preparer,
                       writer, report, progress, batch_rows)  # fmt: skip
        finally:
            writer.close()
    finally:
        registry.close()
    with psycopg.connect(url, application_name="smartby-import") as conn:
        report.days = len(update_pending(conn, settings))
    return report


def _read_into(
    path: Path,
    device_id: str,
    maps: Sequence[ColumnMap],
    time_column: str | None,
    where: Sequence[str],
    zone: tzinfo,
    settings: Settings,
    preparer: BatchPreparer,
    writer: BatchWriter,
    report: ImportReport,
    progress: Progress | None,
    batch_rows: int,
) -> None:
    size = max(path.stat().st_size, 1)
    topic = f"{settings.mqtt_topic_prefix}/{device_id}/telemetry"
    pending: list[Message] = []
    refused: list[QuarantineRow] = []
    handle, delimiter = _open(path)
    with handle:
        rows = csv.reader(handle, delimiter=delimiter)
        header = next(rows, None)
        if header is None:
            raise SmartbyError(f"{path} is empty")
        plan = plan_columns(header, maps, time_column, where)
        read_time = TimeReader(zone)

        def flush() -> None:
            batch = preparer.prepare(pending)
            batch.quarantine.extend(refused)
            result = writer.write(batch)
            report.stored += result.inserted
            report.duplicates += result.duplicates
            report.quarantined += result.quarantined
            for row in [*batch.quarantine, *result.conflicts]:
                report.reasons[row.reason] = report.reasons.get(row.reason, 0) + 1
            pending.clear()
            refused.clear()
            if progress is not None:
                progress(min(consumed / size, 1.0), report)

        consumed = 0  # characters read, about the bytes: how far the progress bar is
        for cells in rows:
            line = rows.line_num
            consumed += sum(len(c) for c in cells) + len(cells)
            if not any(c.strip() for c in cells):
                continue
            report.rows += 1
            if any(at >= len(cells) or cells[at].strip() != value for at, value in plan.where):
                report.skipped += 1
                continue
            try:
                payload, moment = _pack(cells, plan, read_time, report)
            except (ValueError, IndexError) as exc:
                refused.append(
                    QuarantineRow(
                        datetime.now(UTC).timestamp(),
                        f"import:{path.name}:{line}",
                        device_id,
                        "bad_csv_row",
                        f"{path.name} line {line}: {exc}"[:1000],
                        delimiter.join(cells).encode()[:4096],
                    )
                )
                continue
            if payload is None:
                continue
            report.first = moment if report.first is None else min(report.first, moment)
            report.last = moment if report.last is None else max(report.last, moment)
            pending.append(Message(topic, payload, received=moment.timestamp()))
            if len(pending) >= batch_rows:
                flush()
        if pending or refused:
            flush()
    if progress is not None:
        progress(1.0, report)  # the whole file is read


def _pack(
    cells: list[str], plan: Plan, read_time: TimeReader, report: ImportReport
) -> tuple[bytes | None, datetime]:
    """One row as a SenML pack (RFC 8428 §4: ``bt`` the row's time, a record per
    mapped cell with its unit), or None when no cell holds a value."""
    moment = read_time(cells[plan.time_at])
    records: list[dict[str, object]] = []
    for at, metric, unit in plan.columns:
        try:
            value = _number(cells[at])
        except ValueError:
            raise ValueError(
                f"{cells[at].strip()!r} in the {metric} column is not a number"
            ) from None
        if value is None:
            report.empty += 1
            continue
        record: dict[str, object] = {"n": metric, "v": value}
        if unit is not None:
            record["u"] = unit
        records.append(record)
    if not records:
        return None, moment
    report.readings += len(records)
    records[0]["bt"] = moment.timestamp()
    return orjson.dumps(records), moment
