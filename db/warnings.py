"""The public warnings' tables (migration 0009): each station's progress, the episodes,
and every CAP message as issued; plus the read queries the API's feed runs.

A pass of the warning job runs in one transaction under a transaction-level advisory
lock, so two workers never look at the same hours: the second waits, then finds
them looked at (``warning_stations.checked_until``) and issues nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from core.rollups import epoch_us, from_epoch_us
from core.warnings import Episode, HourlyIndex, Station, StationState

#: pg_advisory_xact_lock key of the warning job: "smartby warnings"
LOCK_KEY = 0x534D_5741_524E


def lock(conn: psycopg.Connection[TupleRow]) -> None:
    """Serialise passes (inside the pass's transaction)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))


def air_stations(conn: psycopg.Connection[TupleRow]) -> list[Station]:
    """The sites with an active air-quality device: those an index can exist for."""
    rows = conn.execute(
        "SELECT s.id, s.name, s.municipality, s.lon, s.lat FROM sites s"
        " WHERE EXISTS (SELECT 1 FROM devices d WHERE d.site_id = s.id"
        " AND d.kind = 'air_quality' AND d.status = 'active') ORDER BY s.id"
    ).fetchall()
    return [Station(str(i), str(n), str(m), float(lon), float(lat)) for i, n, m, lon, lat in rows]


@dataclass(frozen=True, slots=True)
class StoredState:
    state: StationState
    episode_id: int | None


def states(conn: psycopg.Connection[TupleRow]) -> dict[str, StoredState]:
    """Each station's progress and open episode (stations never looked at are absent)."""
    rows = conn.execute(
        "SELECT w.site_id, w.checked_until, e.id, e.onset, e.last_poor, e.level"
        " FROM warning_stations w LEFT JOIN warning_episodes e"
        " ON e.site_id = w.site_id AND e.cleared_at IS NULL"
    ).fetchall()
    found = {}
    for site, checked, episode_id, onset, last_poor, level in rows:
        episode = (
            Episode(epoch_us(onset), epoch_us(last_poor), int(level))
            if episode_id is not None
            else None
        )
        found[str(site)] = StoredState(
            StationState(epoch_us(checked), episode),
            None if episode_id is None else int(episode_id),
        )
    return found


_HOURS: LiteralString = """
    SELECT a.site_id, (extract(epoch FROM a.hour) * 1000000)::int8, a.level, a.dominant,
           CASE a.dominant WHEN 'pm25' THEN a.pm25 WHEN 'pm10' THEN a.pm10
                WHEN 'no2' THEN a.no2 WHEN 'o3' THEN a.o3 WHEN 'so2' THEN a.so2 END
    FROM unnest(%s::text[], %s::timestamptz[]) AS s(site_id, since)
    JOIN aqi_hourly a ON a.site_id = s.site_id AND a.hour >= s.since AND a.hour < %s
    ORDER BY a.site_id, a.hour
"""


def hourly_indices(
    conn: psycopg.Connection[TupleRow], since: dict[str, datetime], until: datetime
) -> dict[str, HourlyIndex]:
    """Each station's hourly index in [its since, until), through the primary key."""
    sites = sorted(since)
    rows = conn.execute(_HOURS, (sites, [since[s] for s in sites], until)).fetchall()
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(str(row[0]), []).append(row)
    return {
        site: HourlyIndex(
            np.array([r[1] for r in group], dtype=np.int64),
            np.array([r[2] for r in group], dtype=np.int8),
            [r[3] for r in group],
            np.array([np.nan if r[4] is None else r[4] for r in group], dtype=np.float64),
        )
        for site, group in grouped.items()
    }


def save_state(conn: psycopg.Connection[TupleRow], site_id: str, state: StationState) -> None:
    conn.execute(
        "INSERT INTO warning_stations (site_id, checked_until) VALUES (%s, %s)"
        " ON CONFLICT (site_id) DO UPDATE SET checked_until = EXCLUDED.checked_until,"
        " updated_at = now()",
        (site_id, from_epoch_us(state.checked_until_us)),
    )


def open_episode(conn: psycopg.Connection[TupleRow], site_id: str, episode: Episode) -> int:
    row = conn.execute(
        "INSERT INTO warning_episodes (site_id, onset, last_poor, level) VALUES (%s, %s, %s, %s)"
        " RETURNING id",
        (
            site_id,
            from_epoch_us(episode.onset_us),
            from_epoch_us(episode.last_poor_us),
            episode.level,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def update_episode(
    conn: psycopg.Connection[TupleRow],
    episode_id: int,
    episode: Episode | None,
    cleared_at: datetime | None,
) -> None:
    if episode is not None:
        conn.execute(
            "UPDATE warning_episodes SET last_poor = %s, level = %s WHERE id = %s",
            (from_epoch_us(episode.last_poor_us), episode.level, episode_id),
        )
    if cleared_at is not None:
        conn.execute(
            "UPDATE warning_episodes SET cleared_at = %s WHERE id = %s", (cleared_at, episode_id)
        )


@dataclass(frozen=True, slots=True)
class EarlierMessage:
    identifier: str
    sent: datetime


def episode_messages(conn: psycopg.Connection[TupleRow], episode_id: int) -> list[EarlierMessage]:
    rows = conn.execute(
        "SELECT identifier, sent FROM warning_messages WHERE episode_id = %s ORDER BY id",
        (episode_id,),
    ).fetchall()
    return [EarlierMessage(str(i), s) for i, s in rows]


@dataclass(frozen=True, slots=True)
class NewMessage:
    identifier: str
    episode_id: int
    site_id: str
    msg_type: str
    event: str
    sent: datetime
    hour: datetime
    level: int
    dominant: str | None
    headline_nb: str
    headline_en: str
    summary_nb: str
    summary_en: str
    cap: bytes


def insert_message(conn: psycopg.Connection[TupleRow], message: NewMessage) -> None:
    conn.execute(
        "INSERT INTO warning_messages (identifier, episode_id, site_id, msg_type, event, sent,"
        " hour, level, dominant, headline_nb, headline_en, summary_nb, summary_en, cap)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            message.identifier,
            message.episode_id,
            message.site_id,
            message.msg_type,
            message.event,
            message.sent,
            message.hour,
            message.level,
            message.dominant,
            message.headline_nb,
            message.headline_en,
            message.summary_nb,
            message.summary_en,
            message.cap.decode(),
        ),
    )


# ------------------------------------------------------------------ MQTT publication


def unpublished(
    conn: psycopg.Connection[TupleRow], limit: int = 100
) -> list[tuple[int, str, bytes]]:
    """(id, site, CAP document) of messages the broker has not acknowledged, oldest
    first, locked for this transaction (another worker skips them)."""
    rows = conn.execute(
        "SELECT id, site_id, cap FROM warning_messages WHERE published_at IS NULL"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,),
    ).fetchall()
    return [(int(i), str(s), str(c).encode()) for i, s, c in rows]


def mark_published(conn: psycopg.Connection[TupleRow], ids: Sequence[int]) -> None:
    conn.execute(
        "UPDATE warning_messages SET published_at = now() WHERE id = ANY(%s)", (list(ids),)
    )


# ------------------------------------------------------------------ the API's reads

Query = tuple[sql.SQL | sql.Composed, dict[str, Any]]

#: what the feed and the active list say about a message
MESSAGE_COLUMNS: LiteralString = (
    "m.identifier, m.site_id, s.name AS site_name, m.msg_type, m.event, m.sent, m.hour,"
    " m.level, m.dominant, m.headline_nb, m.headline_en, m.summary_nb, m.summary_en,"
    " e.onset, e.cleared_at"
)


def feed_query(limit: int) -> Query:
    """The newest messages, newest first (the Atom feed)."""
    return (
        sql.SQL(
            "SELECT " + MESSAGE_COLUMNS + " FROM warning_messages m"
            " JOIN warning_episodes e ON e.id = m.episode_id JOIN sites s ON s.id = m.site_id"
            " ORDER BY m.sent DESC, m.id DESC LIMIT %(limit)s"
        ),
        {"limit": limit},
    )


def active_query(site_id: str | None = None) -> Query:
    """The latest message of each open episode (what the website's banner shows)."""
    where = sql.SQL(" AND e.site_id = %(site_id)s") if site_id is not None else sql.SQL("")
    query = (
        sql.SQL(
            "SELECT DISTINCT ON (e.id) " + MESSAGE_COLUMNS + " FROM warning_episodes e"
            " JOIN warning_messages m ON m.episode_id = e.id JOIN sites s ON s.id = e.site_id"
            " WHERE e.cleared_at IS NULL"
        )
        + where
        + sql.SQL(" ORDER BY e.id, m.id DESC")
    )
    return query, ({"site_id": site_id} if site_id is not None else {})


def document_query(identifier: str) -> Query:
    """One message's CAP document, as issued."""
    return (
        sql.SQL("SELECT cap, sent FROM warning_messages WHERE identifier = %(identifier)s"),
        {"identifier": identifier},
    )
