"""``smartby metrics``: the metric catalogue as data — list, show, add metrics and field
aliases without a migration (`db.metrics`)."""

from __future__ import annotations

import click
import psycopg
from psycopg.rows import TupleRow

from core.errors import SmartbyError
from core.profiles import FieldTarget
from smartby.locate import command_database


def field_options(fields: tuple[str, ...]) -> dict[str, object]:
    """``--field NAME=METRIC[:UNIT]`` (``-`` ignores the field, ``@battery[:UNIT]`` makes
    it device health) as a field map for `core.profiles.check_binding`."""
    mapped: dict[str, object] = {}
    for text in fields:
        name, sep, target = text.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise SmartbyError(f"--field {text!r}: write NAME=METRIC, NAME=METRIC:UNIT or NAME=-")
        mapped[name.strip()] = _target(target.strip())
    return mapped


def _target(text: str) -> object:
    if text == "-":
        return None
    what, _, unit = text.partition(":")
    if what.startswith("@"):
        return {"health": what[1:], **({"unit": unit} if unit else {})}
    return {"metric": what, "unit": unit} if unit else what


def _connection(ctx: click.Context) -> psycopg.Connection[TupleRow]:
    return command_database(ctx)


@click.group()
def metrics() -> None:
    """The metric catalogue: what is measured, in which unit, with which bounds."""


@metrics.command("list")
@click.pass_context
def metrics_list(ctx: click.Context) -> None:
    """Every metric with its domain, unit and physical bounds."""
    from db.catalogue import load_catalogue

    with _connection(ctx) as conn:
        catalogue = load_catalogue(conn)
    click.echo(f"{'key':20} {'domain':12} {'unit':8} {'type':10} {'bounds':>22}  name")
    for m in catalogue.values():
        bounds = f"{m.min_value:g} .. {m.max_value:g}"
        click.echo(
            f"{m.key:20} {m.domain:12} {m.unit_symbol:8} {m.value_type:10} {bounds:>22}  {m.name}"
        )


@metrics.command("show")
@click.argument("key")
@click.pass_context
def metrics_show(ctx: click.Context, key: str) -> None:
    """One metric, the field names that stand for it, and how many series it has."""
    from db.metrics import show_metric

    with _connection(ctx) as conn:
        use = show_metric(conn, key)
    m = use.metric
    for label, value in (
        ("key", m.key),
        ("name", m.name),
        ("domain", m.domain),
        ("unit", f"{m.unit} ({m.unit_symbol})"),
        ("bounds", f"{m.min_value:g} .. {m.max_value:g}"),
        ("value type", m.value_type),
        ("definition", m.definition_uri),
        ("molar mass", "-" if m.molar_mass is None else f"{m.molar_mass:g} g/mol"),
        ("resolution", "-" if m.resolution is None else f"{m.resolution:g} {m.unit_symbol}"),
        ("qc", ", ".join(f"{k}={v}" for k, v in sorted(m.qc.items())) or "defaults"),
        ("aliases", ", ".join(use.aliases) or "-"),
        ("series", str(use.series)),
    ):
        click.echo(f"{label:11} {value}")


@metrics.command("add")
@click.argument("key")
@click.option("--name", required=True, help="What people call it (e.g. 'Noise level (LAeq)').")
@click.option(
    "--unit", required=True, help="Canonical SenML unit (RFC 8428/8798): dB, ppm, m, cm …"
)
@click.option("--symbol", help="The unit as people write it (e.g. 'dB(A)'); default: --unit.")
@click.option("--domain", required=True, help="One lower-case word: air_quality, noise, weather …")
@click.option("--min", "min_value", type=float, required=True, help="Physical lower bound.")
@click.option("--max", "max_value", type=float, required=True, help="Physical upper bound.")
@click.option("--definition", required=True, help="URI defining the quantity (QUDT, CF, EEA …).")
@click.option(
    "--type",
    "value_type",
    type=click.Choice(["gauge", "count", "cumulative"]),
    default="gauge",
    show_default=True,
    help="Averaged (gauge), summed (count) or differenced (cumulative register).",
)
@click.option("--description", default="")
@click.option("--molar-mass", type=float, help="g/mol, to convert ppm/ppb of a gas to µg/m³.")
@click.option(
    "--resolution",
    type=float,
    help="How finely instruments resolve it, in its unit: open-data exports round to it.",
)
@click.option("--alias", "aliases", multiple=True, help="A vendor field name for it; repeatable.")
@click.option(
    "--qc",
    "qc_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="A QC threshold (spike_suspect, max_rate_per_s, flat_suspect_s, max_gap_s …).",
)
@click.pass_context
def metrics_add(
    ctx: click.Context,
    key: str,
    name: str,
    unit: str,
    symbol: str | None,
    domain: str,
    min_value: float,
    max_value: float,
    definition: str,
    value_type: str,
    description: str,
    molar_mass: float | None,
    resolution: float | None,
    aliases: tuple[str, ...],
    qc_settings: tuple[str, ...],
) -> None:
    """Add a metric to the catalogue: ingest, the API, SensorThings, the dashboards and QC
    pick it up without a code change or a migration."""
    from db.metrics import MetricSpec, add_metric

    qc: dict[str, object] = {}
    for text in qc_settings:
        setting, sep, value = text.partition("=")
        try:
            qc[setting.strip()] = None if value.strip() == "-" else float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SmartbyError(f"--qc {text!r}: write NAME=NUMBER (or NAME=- to switch it off)")
    spec = MetricSpec(
        key,
        name,
        unit,
        domain,
        min_value,
        max_value,
        definition,
        value_type,
        symbol,
        description,
        molar_mass,
        qc,
        aliases,
        resolution,
    )
    with _connection(ctx) as conn:
        metric = add_metric(conn, spec)
    click.echo(
        f"added {metric.key}: {metric.name} in {metric.unit_symbol}, "
        f"{metric.min_value:g} .. {metric.max_value:g}"
        + (f"; aliases {', '.join(aliases)}" if aliases else "")
    )


@metrics.command("alias")
@click.argument("field")
@click.argument("target")
@click.option("--unit", help="The SenML unit of the field's values when payloads state none.")
@click.option("--note", default="", help="Where the name comes from.")
@click.pass_context
def metrics_alias(ctx: click.Context, field: str, target: str, unit: str | None, note: str) -> None:
    """Declare for every device what a payload FIELD is: a metric key, @battery (device
    health) or - (not worth keeping).  A field path such as energy/total names a nested
    value."""
    from db.metrics import add_alias

    if target == "-":
        declared = FieldTarget(unit=unit)
    elif target.startswith("@"):
        declared = FieldTarget(health=target[1:], unit=unit)
    else:
        declared = FieldTarget(metric=target, unit=unit)
    with _connection(ctx) as conn:
        add_alias(conn, field, declared, note)
    click.echo(f"field {field.strip().lower()!r} is now {target}" + (f" in {unit}" if unit else ""))
