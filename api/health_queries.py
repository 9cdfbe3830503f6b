"""The SQL of the platform's health: is ingest running, how much arrives, what was
refused, and how each device is doing.  Plain functions returning ``(query, params)``
like `api.queries`, unit-tested without a database and run against the real one by
the route tests.

Readings are counted per series through the primary key (series_id, time): one index
range scan per series, which stays cheap whatever the size of the table and needs no
index on time alone (migration 0002 has none on TimescaleDB, on purpose).
"""

from __future__ import annotations

from datetime import datetime

from psycopg import sql

from api.queries import Query, latest_query

#: the application name of an ingest worker's registry connection, held open for the
#: worker's life (ingest/writer.py, `DatabaseRegistry`): one per running worker
INGEST_SESSION = "smartby-ingest-registry"


def ingest_sessions_query() -> Query:
    """How many ingest workers are connected to the database now.  (Any role may read
    ``application_name`` of other sessions in pg_stat_activity.)"""
    query = sql.SQL("SELECT count(*)::int8 FROM pg_stat_activity WHERE application_name = %(name)s")
    return query, {"name": INGEST_SESSION}


def _device_condition(device_id: str | None) -> tuple[sql.Composable, dict[str, object]]:
    if device_id is None:
        return sql.SQL(""), {}
    return sql.SQL(" WHERE se.device_id = %(device_id)s"), {"device_id": device_id}


def readings_by_flag_query(since: datetime, until: datetime, device_id: str | None = None) -> Query:
    """Readings with times in [since, until) per device and QC flag (every flag,
    FAIL included: this is about the device, not about the data)."""
    where, params = _device_condition(device_id)
    query = (
        sql.SQL(
            "SELECT se.device_id, r.quality, count(*)::int8 FROM series se CROSS JOIN LATERAL"
            " (SELECT quality FROM readings WHERE series_id = se.id"
            " AND time >= %(since)s AND time < %(until)s) r"
        )
        + where
        + sql.SQL(" GROUP BY se.device_id, r.quality ORDER BY 1, 2")
    )
    return query, {"since": since, "until": until, **params}


def quarantine_by_reason_query(
    since: datetime, until: datetime, device_id: str | None = None
) -> Query:
    """Quarantined messages received in [since, until) per device and reason: counts
    only (the raw payloads stay behind the admin key).  The device is null for
    messages on the topic of a device nobody registered."""
    condition = sql.SQL(" AND device_id = %(device_id)s") if device_id is not None else sql.SQL("")
    query = (
        sql.SQL(
            "SELECT device_id, reason, count(*)::int8 FROM quarantine"
            " WHERE received_at >= %(since)s AND received_at < %(until)s"
        )
        + condition
        + sql.SQL(" GROUP BY device_id, reason ORDER BY 1, 2")
    )
    params: dict[str, object] = {"since": since, "until": until}
    if device_id is not None:
        params["device_id"] = device_id
    return query, params


def readings_per_minute_query(since: datetime, until: datetime) -> Query:
    """Readings per minute of their own time in [since, until), every series."""
    query = sql.SQL(
        "SELECT date_trunc('minute', r.time) AS minute, count(*)::int8"
        " FROM series se CROSS JOIN LATERAL (SELECT time FROM readings"
        " WHERE series_id = se.id AND time >= %(since)s AND time < %(until)s) r"
        " GROUP BY 1 ORDER BY 1"
    )
    return query, {"since": since, "until": until}


def newest_per_domain_query() -> Query:
    """The newest value per metric domain, over `latest_query`'s rows (so it agrees
    with /v1/latest: traffic's newest is its latest complete hour)."""
    latest, params = latest_query()
    query = (
        sql.SQL("SELECT m.domain, max(l.time), max(l.aggregate) FROM (")
        + latest
        + sql.SQL(
            ") l (series_id, device_id, site_id, kind, metric, unit, time, value, quality,"
            " aggregate) JOIN metrics m ON m.key = l.metric GROUP BY m.domain ORDER BY m.domain"
        )
    )
    return query, params
