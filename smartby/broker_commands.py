"""``smartby broker``: the MQTT broker's accounts and roles in line with the registry,
over Mosquitto's dynamic security plugin, or written to its file while it is stopped."""

from __future__ import annotations

from pathlib import Path

import click

from core.errors import SmartbyError
from core.settings import Settings
from smartby.locate import command_database, command_settings


@click.group()
def broker() -> None:
    """The MQTT broker's accounts (Mosquitto's dynamic security plugin)."""


@broker.command("sync")
@click.option(
    "--config-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The plugin's dynamic-security.json: written from the registry when the broker "
    "cannot be reconciled (it is stopped, as before compose's first start, or does not "
    "run the plugin yet); the broker reads it at its next start.",
)
@click.option(
    "--bridge-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the public broker's bridge (include_dir file) when "
    "SMARTBY_PUBLIC_BRIDGE_PASSWORD is set (compose's mosquitto-public).",
)
@click.pass_context
def broker_sync(ctx: click.Context, config_file: Path | None, bridge_file: Path | None) -> None:
    """Make the broker's accounts and roles agree with the registry: devices, the
    ingest workers (SMARTBY_MQTT_PASSWORD), the admin, the SensorThings publisher and
    the public bridge (when their passwords are set).  Over $CONTROL when the broker
    runs; passwords it cannot know are reported with their fix."""
    from devices.broker_access import BrokerAccessError, BrokerUnreachable
    from devices.broker_sync import sync_platform, write_platform_file
    from smartby.broker import sync_target

    settings = command_settings(ctx)
    if bridge_file is not None:
        _write_bridge(settings, bridge_file)
    target = sync_target(settings)
    if target is None:
        raise SmartbyError(
            "SMARTBY_BROKER_ADMIN_PASSWORD must be set: the broker's dynamic security admin"
        )
    admin, accounts = target
    if accounts.ingest_password is None:
        raise SmartbyError("SMARTBY_MQTT_PASSWORD must be set: it is the ingest accounts'")
    with command_database(ctx) as conn:
        try:
            report = sync_platform(admin, conn, accounts)
        except BrokerAccessError as exc:
            if config_file is None:
                raise
            # stopped (compose's first start), or not yet the plugin's broker (an upgrade
            # from a password file): what it starts with next is the registry's
            without = write_platform_file(config_file, conn, accounts)
            if not isinstance(exc, BrokerUnreachable):
                click.echo(f"warning: {exc}", err=True)
            click.echo(f"the broker at {admin.where} was not reconciled: wrote {config_file}")
            for username in without:
                click.echo(f"warning: {username} has no usable password hash", err=True)
            return
    for change in report.changes:
        click.echo(change)
    click.echo(f"broker at {admin.where} agrees with the registry ({report.summary()})")
    for problem in report.problems():
        click.echo(f"warning: {problem}", err=True)


@broker.command("certificates")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--name",
    "names",
    multiple=True,
    help="A name or address devices connect with (repeatable), beside localhost, "
    "127.0.0.1, ::1, this host's names and SMARTBY_MQTT_TLS_NAMES.",
)
@click.pass_context
def broker_certificates(ctx: click.Context, folder: Path | None, names: tuple[str, ...]) -> None:
    """Make the broker's CA and TLS server certificate in FOLDER (default
    <data_dir>/tls, the one `smartby up` uses), or renew the server certificate when
    due; a certificate its CA did not sign (your own) is left as it is."""
    from stack.certificates import default_names, ensure_broker_certificates

    settings = command_settings(ctx)
    target = folder or settings.data_dir / "tls"
    made = ensure_broker_certificates(
        target, [*default_names(), *settings.mqtt_tls_extra_names, *names]
    )
    if made.outcome == "not ours (kept)":
        click.echo(f"{made.cert_file}: not issued by a CA of ours; kept as it is")
        return
    click.echo(f"{made.cert_file}: {made.outcome}; devices trust the CA file {made.ca_file}")


@broker.command("client-certificate")
@click.argument("common_name")
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="The broker's certificates folder (default <data_dir>/tls).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Where to write COMMON_NAME.crt and COMMON_NAME.key.",
)
@click.pass_context
def broker_client_certificate(
    ctx: click.Context, common_name: str, folder: Path | None, out: Path
) -> None:
    """A device's client certificate, signed by the broker's CA, for a broker that
    requires one (SMARTBY_MQTT_TLS_REQUIRE_CERTIFICATE); the device still logs in with
    its password."""
    from stack.certificates import BrokerCertificates, issue_client_certificate

    settings = command_settings(ctx)
    certs = BrokerCertificates(folder or settings.data_dir / "tls")
    if "/" in common_name or common_name.startswith("."):
        raise SmartbyError(f"{common_name!r} cannot name a file: use a device id")
    out.mkdir(parents=True, exist_ok=True)
    cert, key = out / f"{common_name}.crt", out / f"{common_name}.key"
    issue_client_certificate(certs, common_name, cert, key)
    click.echo(f"wrote {cert} and {key} (0600), signed by {certs.ca_file}")


def _write_bridge(settings: Settings, path: Path) -> None:
    """The public broker's bridge config (0600: it holds the bridge's password), or a
    comment saying there is none."""
    from core.broker import PUBLIC_BRIDGE_USER, public_topics
    from stack.mosquitto import bridge_config

    password = settings.public_bridge_password
    lines = (
        ["# no bridge: SMARTBY_PUBLIC_BRIDGE_PASSWORD is not set"]
        if password is None
        else [
            "# written by `smartby broker sync`: the SensorThings stream and the warnings",
            *bridge_config(
                settings.mqtt_host,
                settings.mqtt_port,
                PUBLIC_BRIDGE_USER,
                password.get_secret_value(),
                public_topics(settings.mqtt_topic_prefix),
            ),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    click.echo(f"wrote {path}")
