"""PostgreSQL binary COPY, built with NumPy instead of row by row.

The binary COPY format (PostgreSQL docs, "COPY — Binary Format") is a header, then
per row a 16-bit field count and, per field, a 32-bit length and the value in
network byte order, then a trailer.  When every column is fixed-width and NOT NULL
a row is a fixed-size record, so a whole batch is one structured NumPy array whose
bytes *are* the COPY stream: no Python per row.  That is what lets one worker write
hundreds of thousands of readings a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: "PGCOPY\n\377\r\n\0", flags (int32 0), header extension length (int32 0)
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
#: a field count of -1 ends the data
TRAILER = b"\xff\xff"

#: microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC)
PG_EPOCH_OFFSET_US = 946_684_800_000_000

# PostgreSQL type -> (big-endian NumPy dtype, byte width)
_WIRE: dict[str, tuple[str, int]] = {
    "int2": (">i2", 2),
    "int4": (">i4", 4),
    "int8": (">i8", 8),
    "float4": (">f4", 4),
    "float8": (">f8", 8),
    "timestamptz": (">i8", 8),  # microseconds since 2000-01-01 UTC
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    pg_type: str

    def __post_init__(self) -> None:
        if self.pg_type not in _WIRE:
            raise ValueError(f"binary COPY of {self.pg_type} columns is not supported")


def _record_dtype(columns: Sequence[Column]) -> np.dtype[np.void]:
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for col in columns:
        dtype, _width = _WIRE[col.pg_type]
        fields += [(f"{col.name}__len", ">i4"), (col.name, dtype)]
    return np.dtype(fields)


def encode_rows(columns: Sequence[Column], values: Sequence[npt.ArrayLike]) -> bytes:
    """The COPY data (header, rows, trailer) for equal-length column arrays.

    ``timestamptz`` columns take int64 microseconds since the Unix epoch.
    """
    if len(columns) != len(values):
        raise ValueError(f"{len(columns)} columns but {len(values)} value arrays")
    arrays = [np.asarray(v) for v in values]
    n = len(arrays[0]) if arrays else 0
    if any(len(a) != n for a in arrays):
        raise ValueError("column arrays differ in length")
    records = np.empty(n, dtype=_record_dtype(columns))
    records["nfields"] = len(columns)
    for col, array in zip(columns, arrays, strict=True):
        records[f"{col.name}__len"] = _WIRE[col.pg_type][1]
        if col.pg_type == "timestamptz":
            records[col.name] = array.astype(np.int64, copy=False) - PG_EPOCH_OFFSET_US
        else:
            records[col.name] = array
    return HEADER + records.tobytes() + TRAILER
