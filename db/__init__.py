"""db: everything that talks to PostgreSQL.

Connections (`db.connect`), the numbered migrations and their runner (`db.migrate`,
``db/migrations/``), binary COPY encoding (`db.pgcopy`), and the tables the domain
fills: rollups (`db.rollups`), indicators (`db.indicators`), the device registry
(`db.registry`) and the metric catalogue (`db.catalogue`).  It uses `core` and nothing
above it; it never looks for a running stack: callers hand it a URL or a connection.
"""
