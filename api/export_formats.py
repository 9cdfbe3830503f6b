"""Streaming encoders for bulk exports: CSV, Parquet and GeoJSON.

Each encoder takes the export's columns and an async iterator of row chunks (lists
of tuples, as the pages of `api.export_fetch` come) and yields bytes as it goes, so
an export of a year of readings never sits in memory: at most one chunk of rows and
its encoding do.

Parquet is a file format, not a stream format: its footer (the schema and the
offsets of every row group) comes last and is written on close.  The writer never
seeks, though, so it can write into an append-only sink that is drained after each
row group: one chunk of rows becomes one row group, its bytes go to the client, and
the footer follows at the end.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

ColumnKind = Literal["text", "int", "float", "timestamp", "date", "json", "list", "bool"]
Row = Sequence[Any]

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "text": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    # free-form objects (site properties, calibration) travel as JSON text
    "json": pa.string(),
    "list": pa.list_(pa.string()),  # lists of ids or keys
    "bool": pa.bool_(),
}

#: rows encoded into one piece of CSV or GeoJSON (Parquet: a row group per chunk)
SLICE_ROWS = 1_000

Format = Literal["csv", "parquet", "geojson"]
#: Parquet's media type (IANA, 2024); its pages are compressed already (zstd)
PARQUET = "application/vnd.apache.parquet"
FORMATS: dict[Format, tuple[str, str]] = {
    # format -> (media type, file extension)
    "csv": ("text/csv; charset=utf-8", "csv"),
    "parquet": (PARQUET, "parquet"),
    "geojson": ("application/geo+json", "geojson"),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an export.  ``unit`` is what its numbers are in (SenML spelling
    where a metric's canonical unit, RFC 8428); ``rounding`` is what they are rounded
    to: a metric key (that metric's resolution in the catalogue), a fixed step, or
    None (as they are)."""

    name: str
    kind: ColumnKind
    description: str = ""
    unit: str | None = None
    rounding: str | float | None = None

    def described(self) -> dict[str, Any]:
        """What a file says of the column (Parquet field metadata, GeoJSON member)."""
        about: dict[str, Any] = {"name": self.name, "type": self.kind}
        if self.unit:
            about["unit"] = self.unit
        if self.description:
            about["description"] = self.description
        return about


def arrow_schema(columns: Sequence[Column], metadata: dict[str, str] | None = None) -> pa.Schema:
    """The Parquet schema of an export: each field carries its unit and description in
    its own metadata (Parquet key-value metadata of the column), so the file alone
    says what its numbers are; ``metadata`` lands in the file's key-value metadata
    (licence and attribution travel with the file)."""
    fields = []
    for c in columns:
        about = {k: str(v) for k, v in c.described().items() if k in ("unit", "description")}
        fields.append(pa.field(c.name, _ARROW_TYPES[c.kind], metadata=about or None))
    return pa.schema(fields, metadata={k.encode(): v.encode() for k, v in (metadata or {}).items()})


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _text_value(value: Any, kind: ColumnKind) -> str:
    """One CSV cell: empty for NULL, ISO 8601 in UTC for instants, JSON for objects
    and lists, repr for floats (shortest text that reads back as the same float)."""
    if value is None:
        return ""
    if kind == "timestamp":
        return _utc(value).isoformat().replace("+00:00", "Z")
    if kind == "date":
        return value.isoformat()  # type: ignore[no-any-return]
    if kind in ("json", "list"):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        number = float(value)
        return repr(number) if math.isfinite(number) else ""
    return str(value)


def csv_rows(columns: Sequence[Column], rows: Iterable[Row]) -> str:
    """The CSV text (RFC 4180, CRLF line ends) of some rows, without the header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    kinds = [c.kind for c in columns]
    writer.writerows([_text_value(v, k) for v, k in zip(row, kinds, strict=False)] for row in rows)
    return out.getvalue()


def slices(chunk: list[Row]) -> Iterator[list[Row]]:
    """A chunk in slices of at most `SLICE_ROWS`: the text formats encode a slice per
    piece, so that one piece costs the event loop about 5 ms, not a whole chunk's 50."""
    for start in range(0, len(chunk), SLICE_ROWS):
        yield chunk[start : start + SLICE_ROWS]


async def csv_stream(
    columns: Sequence[Column], chunks: AsyncIterator[list[Row]]
) -> AsyncGenerator[bytes, None]:
    """CSV with a header line; one piece per slice of a chunk of rows."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\r\n").writerow([c.name for c in columns])
    yield header.getvalue().encode()
    async for chunk in chunks:
        for part in slices(chunk):
            yield csv_rows(columns, part).encode()


class _DrainableSink(io.RawIOBase):
    """An append-only file for `pyarrow.parquet.ParquetWriter` whose bytes are taken
    out as they come; ``tell`` keeps counting, which is all the writer needs."""

    def __init__(self) -> None:
        super().__init__()
        self._pieces: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = bytes(data)
        self._pieces.append(piece)
        self._position += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self._position

    def drain(self) -> bytes:
        out = b"".join(self._pieces)
        self._pieces.clear()
        return out


def _arrow_column(values: list[Any], column: Column) -> pa.Array:
    """One column as an Arrow array.  Timestamps go in as they come (aware: pyarrow
    stores the UTC instant), not converted to ``datetime.UTC`` first: pyarrow 26 takes
    0.3 s per 10 000 values in that one tzinfo (2 ms in the ZoneInfo psycopg gives),
    and an export encodes on the event loop that every other request shares."""
    if column.kind == "json":
        values = [None if v is None else _text_value(v, "json") for v in values]
    elif column.kind == "float":
        values = [None if v is None else float(v) for v in values]
    return pa.array(values, type=_ARROW_TYPES[column.kind])


def arrow_table(columns: Sequence[Column], rows: Sequence[Row], schema: pa.Schema) -> pa.Table:
    by_column = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays = [_arrow_column(list(values), c) for values, c in zip(by_column, columns, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


async def parquet_stream(
    columns: Sequence[Column],
    chunks: AsyncIterator[list[Row]],
    metadata: dict[str, str] | None = None,
) -> AsyncGenerator[bytes, None]:
    """Parquet, one row group per chunk of rows, each sent once written; the footer
    last.  An export without rows is still a valid file (schema, no row groups)."""
    schema = arrow_schema(columns, metadata)
    sink = _DrainableSink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    try:
        async for chunk in chunks:
            if chunk:
                writer.write_table(arrow_table(columns, chunk, schema))
                piece = sink.drain()
                if piece:
                    yield piece
    finally:
        writer.close()
    yield sink.drain()


def _json_value(value: Any, kind: ColumnKind) -> Any:
    if kind == "float" and value is not None:
        number = float(value)
        return number if math.isfinite(number) else None
    if kind == "timestamp" and value is not None:
        return _utc(value)
    return value


def feature(columns: Sequence[Column], row: Row) -> dict[str, Any]:
    """A GeoJSON Feature (RFC 7946 §3.2): the row's columns as properties and, when
    the two values after them (lon, lat) are known, a Point geometry."""
    n = len(columns)
    properties = {c.name: _json_value(v, c.kind) for c, v in zip(columns, row[:n], strict=True)}
    lon, lat = row[n], row[n + 1]
    geometry = None if lon is None or lat is None else {"type": "Point", "coordinates": [lon, lat]}
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def _orjson_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


async def geojson_stream(
    columns: Sequence[Column],
    chunks: AsyncIterator[list[Row]],
    metadata: dict[str, str] | None = None,
) -> AsyncGenerator[bytes, None]:
    """A GeoJSON FeatureCollection written incrementally; each row must carry the
    site's lon and lat after its columns.  ``metadata`` (licence, attribution) and
    the columns with their units go in foreign members of the collection (RFC 7946
    §6.1)."""
    head = {
        "type": "FeatureCollection",
        **(metadata or {}),
        "columns": [c.described() for c in columns],
    }
    opening = orjson.dumps(head)[:-1] + b',"features":['
    yield opening
    first = True
    async for chunk in chunks:
        for part in slices(chunk):
            body = b",".join(
                orjson.dumps(feature(columns, row), default=_orjson_default) for row in part
            )
            yield body if first else b"," + body
            first = False
    yield b"]}"
