"""Where a command finds the database: the configured URL, else the running stack's.

``smartby up`` records its services in ``<data_dir>/stack.json`` while it runs, so that
other commands (``smartby db status``, ``smartby devices list``, ``smartby api``) reach
its private PostgreSQL without being told.  Looking that record up is the composition
root's job: the packages below take a URL (or settings that hold one) and never look
for a running stack themselves.
"""

from __future__ import annotations

import click
import psycopg
from psycopg.rows import TupleRow
from pydantic import SecretStr

from core.settings import Settings
from db.connect import connect
from db.connect import database_url as configured_database_url
from stack.running import read_running_stack


def with_running_stack(settings: Settings) -> Settings:
    """``settings`` with the database of a running ``smartby up`` filled in, when no
    ``SMARTBY_DATABASE_URL`` is configured and such a stack is alive."""
    if settings.database_url is not None:
        return settings
    stack = read_running_stack(settings.data_dir)
    if stack is None:
        return settings
    return settings.model_copy(update={"database_url": SecretStr(stack.database_url)})


def database_url(settings: Settings) -> str:
    """The libpq URL to use, or a `SettingsError` that says how to get one."""
    return configured_database_url(with_running_stack(settings))


def command_settings(ctx: click.Context) -> Settings:
    """The settings the ``smartby`` group loaded once for every subcommand."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def command_database(ctx: click.Context) -> psycopg.Connection[TupleRow]:
    """An autocommit connection to the configured (or running embedded) database."""
    return connect(database_url(command_settings(ctx)), autocommit=True)
