"""The one typed settings object of the platform.

Read once at start-up (``Settings()`` reads ``SMARTBY_*`` variables and an optional
``.env``) and passed down; nothing deeper in the code reads the environment.  It
validates itself, and in production it refuses the values that are only fine on a
developer's laptop: an anonymous broker, default passwords, the embedded database.
"""

from __future__ import annotations

import re
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.broker import ADMIN_USER, ClientTls, SubscriptionMode
from core.errors import SmartbyError
from core.profiles import PROFILE_NAMES, make_profile

#: Passwords that ship in examples and tutorials; production must not run on them.
WEAK_PASSWORDS = frozenset(
    {"", "postgres", "password", "smartby", "changeme", "change-me", "secret", "admin", "123456"}
)

Environment = Literal["development", "test", "production"]


class SettingsError(SmartbyError, ValueError):
    """Configuration that cannot be run; the message names the variable to fix."""


class IngestSource(BaseModel):
    """An external MQTT broker an ingest worker also takes telemetry from: a LoRaWAN
    network server's MQTT integration (The Things Stack, ChirpStack), with its own
    credentials and TLS settings.  One entry of ``SMARTBY_INGEST_SOURCES`` (a JSON list).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,31}$",
        description="Names the source in logs, client ids and metrics.",
    )
    profile: str = Field(
        description="The profile of the source's topics and payloads (ttn-v3, chirpstack-v4, …)."
    )
    host: str
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Default 8883 with TLS, 1883 without."
    )
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(
        default=None, description="A file holding the password (a Docker secret)."
    )
    tls: bool = True
    ca_file: Path | None = Field(
        default=None, description="CA certificates to trust instead of the system's."
    )
    topics: tuple[str, ...] = Field(
        default=(), description="Topic filters; default the profile's own."
    )
    mqtt_version: Literal["5", "3.1.1"] = Field(
        default="5", description="The Things Stack speaks 3.1.1."
    )
    qos: int = Field(default=1, ge=0, le=1, description="The Things Stack grants 0 only.")
    shared: bool = Field(
        default=False, description="Subscribe through a shared subscription ($share/<group>/)."
    )
    client_id: str | None = Field(
        default=None, description="Default <the worker's client id>-<name>."
    )

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, profile: str) -> str:
        if profile not in PROFILE_NAMES:
            raise ValueError(
                f"unknown profile {profile!r}; expected one of {', '.join(PROFILE_NAMES)}"
            )
        return profile

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    def secret(self) -> str | None:
        """The password, from ``password`` or ``password_file``."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip()
        return None

    def filters(self) -> tuple[str, ...]:
        return self.topics or tuple(f.filter for f in make_profile(self.profile).filters())

    @property
    def local(self) -> bool:
        """Whether the broker is on this machine (then plain MQTT is no risk)."""
        if self.host == "localhost":
            return True
        try:
            return ip_address(self.host).is_loopback
        except ValueError:
            return False


class Settings(BaseSettings):
    """Every knob of smartby, from ``SMARTBY_<FIELD>`` environment variables or ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="SMARTBY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = "development"

    # --- where the data lives -------------------------------------------------------
    data_dir: Path = Field(
        default=Path(".smartby"),
        description="Folder of the embedded stack: PostgreSQL cluster, broker state, logs.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="libpq URL of an existing PostgreSQL; unset means the embedded cluster.",
    )
    pg_port: int = Field(default=55432, ge=1, le=65535, description="Embedded PostgreSQL port.")
    pg_bindir: Path | None = Field(
        default=None, description="PostgreSQL server binaries; default: the newest installed."
    )
    mosquitto_binary: Path | None = Field(
        default=None, description="Mosquitto broker binary; default: found on PATH or /usr/sbin."
    )
    mosquitto_dynsec_plugin: Path | None = Field(
        default=None,
        description="Mosquitto's dynamic security plugin (mosquitto_dynamic_security.so); "
        "default: found beside the broker binary's installation.",
    )

    # --- MQTT -----------------------------------------------------------------------
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_public_port: int = Field(
        default=1884,
        ge=1,
        le=65535,
        description="Port of the embedded stack's public broker: anonymous readers of the "
        "SensorThings MQTT stream (v1.1/#), and nothing else.",
    )
    mqtt_username: str | None = Field(
        default=None,
        description="The ingest worker's MQTT user name; default: its client id (the "
        "broker has one account per worker client id, each bound to that id).",
    )
    mqtt_password: SecretStr | None = Field(
        default=None, description="The ingest accounts' MQTT password."
    )
    sta_publisher_password: SecretStr | None = Field(
        default=None,
        description="Password of the broker account smartby-sta-publisher, which may "
        "publish the SensorThings MQTT stream (v1.1/#) and nothing else; unset: no such "
        "account (the embedded stack keeps its own).",
    )
    public_bridge_password: SecretStr | None = Field(
        default=None,
        description="Password of the account the public broker's bridge reads the "
        "SensorThings stream with (compose's mosquitto-public); unset: no bridge.",
    )
    broker_admin_username: str = Field(
        default=ADMIN_USER,
        description="The broker account that drives Mosquitto's dynamic security plugin "
        "over $CONTROL/dynamic-security/v1.",
    )
    broker_admin_password: SecretStr | None = Field(
        default=None,
        description="Its password; unset: registry changes are not pushed to the broker "
        "(the embedded stack keeps its own in the data folder).",
    )
    mqtt_tls: bool = Field(
        default=False,
        description="Clients (ingest, simulator, broker admin) speak TLS to the broker, "
        "verifying it with SMARTBY_MQTT_CA_FILE (unset: the system's trusted CAs).",
    )
    mqtt_ca_file: Path | None = Field(
        default=None,
        description="CA certificate(s) a client verifies the broker with; beside a running "
        "`smartby up`, default: its generated CA.",
    )
    mqtt_cert_file: Path | None = Field(
        default=None,
        description="A client's own certificate, for brokers that require one.",
    )
    mqtt_key_file: Path | None = Field(
        default=None, description="The key of SMARTBY_MQTT_CERT_FILE (unset: in that file)."
    )
    mqtt_tls_port: int = Field(
        default=8883,
        ge=1,
        le=65535,
        description="Port of the embedded stack's TLS listener, for devices.",
    )
    mqtt_tls_host: str = Field(
        # the listener devices use: on every interface (passwords and TLS guard it)
        default="0.0.0.0",  # noqa: S104
        description="Address the embedded stack's TLS listener binds (127.0.0.1: this "
        "machine only).",
    )
    mqtt_tls_names: str = Field(
        default="",
        description="Names and addresses (comma-separated) the embedded broker's server "
        "certificate is valid for, beside localhost, 127.0.0.1, ::1 and the host's names.",
    )
    mqtt_tls_require_certificate: bool = Field(
        default=False,
        description="The embedded broker's TLS listener also requires a client certificate "
        "signed by its CA (beside the password).",
    )
    mqtt_topic_prefix: str = "smartby"

    # --- ingest ---------------------------------------------------------------------
    ingest_batch_size: int = Field(default=5000, ge=1, le=65535)
    ingest_batch_ms: int = Field(default=50, ge=1, le=60_000)
    ingest_queue_size: int = Field(default=20_000, ge=1)
    ingest_max_payload_bytes: int = Field(default=64 * 1024, ge=256)
    ingest_metrics_host: str = Field(
        default="127.0.0.1", description="Where the worker serves /metrics (0.0.0.0 in compose)."
    )
    ingest_metrics_port: int = Field(default=9101, ge=0, le=65535, description="0 turns it off.")
    ingest_client_id: str | None = Field(
        default=None,
        description="MQTT client id; default smartby-ingest-<n> with a slot n claimed in the "
        "database, so a restarted worker resumes its persistent session.",
    )
    ingest_subscription: SubscriptionMode = Field(
        default="plain",
        description="plain: one worker per broker and topic prefix, on a persistent "
        "subscription that survives broker restarts; shared: any number of workers on "
        "$share/smartby-ingest/..., which Mosquitto loses at a broker restart.",
    )
    ingest_max_workers: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Worker slots (and broker accounts smartby-ingest-1..N) for workers "
        "without SMARTBY_INGEST_CLIENT_ID.",
    )
    ingest_http_queue: int = Field(
        default=256,
        ge=1,
        le=65_536,
        description="HTTP push (POST /v1/ingest/...): pushes waiting for their transaction "
        "in the API process; beyond it a push is answered 503 with Retry-After.  Bodies are "
        "limited by SMARTBY_INGEST_MAX_PAYLOAD_BYTES, as MQTT payloads are.",
    )
    ingest_http_database_url: SecretStr | None = Field(
        default=None,
        description="libpq URL the API process stores HTTP pushes with (the smartby_ingest "
        "login); default: SMARTBY_DATABASE_URL.",
    )
    ingest_qc: bool = Field(
        default=True,
        description="QARTOD tests at ingest beyond gross range (spike, rate of change, "
        "flat line, time gap); gross range always runs.",
    )
    ingest_rollups: bool = Field(
        default=True, description="Merge rollup partials at ingest (off only to measure cost)."
    )
    ingest_write_connections: int = Field(
        default=2,
        ge=1,
        le=2,
        description="Database connections a worker writes a large batch over, split by "
        "series (ingest.writer); 1 writes every batch in one transaction.",
    )
    ingest_max_past_days: float = Field(default=400, gt=0)
    ingest_max_future_s: float = Field(default=300, ge=0)
    ingest_profiles: str = Field(
        default=",".join(PROFILE_NAMES),
        description="Comma-separated device profiles whose topics the worker subscribes to "
        "on SMARTBY_MQTT_HOST: " + ", ".join(PROFILE_NAMES) + ".",
    )
    ingest_sources: tuple[IngestSource, ...] = Field(
        default=(),
        description="External brokers to take telemetry from as well (LoRaWAN network "
        'servers), a JSON list: [{"name": "ttn", "profile": "ttn-v3", "host": '
        '"eu1.cloud.thethings.network", "username": "app@ttn", "password": "NNSXS…", '
        '"mqtt_version": "3.1.1", "qos": 0}]',
    )

    # --- indicators -----------------------------------------------------------------
    indicators_interval_s: float = Field(
        default=60,
        ge=0,
        description="How often an ingest worker refreshes the indicator tables for the "
        "days that received data (0 turns it off; several workers take turns).",
    )
    grid_factor_g_per_kwh: float = Field(
        default=19.0,
        ge=0,
        description="Grid emission factor for CO2e of electricity, g CO2e per kWh. The "
        "default is of the order of NVE's location-based Norwegian mix; use the figure "
        "your climate accounts use.",
    )

    # --- API ------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_public_url: str | None = Field(
        default=None,
        description="The API's public base URL, used in the DCAT catalogue and links; "
        "default: taken from each request.",
    )
    api_rate_limit: str = Field(
        default="120/minute",
        description="Open reads allowed per client address (limits notation, e.g. 120/minute).",
    )
    api_key_rate_limit: str = Field(default="6000/minute", description="Reads allowed per API key.")
    api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated API keys, each optionally 'name:key'; a key lifts the "
        "read limit to SMARTBY_API_KEY_RATE_LIMIT and unlocks the admin routes.",
    )
    api_max_range_days: int = Field(
        default=400, ge=1, description="Longest time range one time-series request may span."
    )
    api_contact_email: str = Field(
        default="postmottak@narvik.kommune.no",
        description="Contact point published in the DCAT-AP-NO catalogue.",
    )
    api_trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or CIDR networks of the reverse proxies whose "
        "forwarded client addresses are believed (rate limits and export caps then apply "
        "per real client); empty: none, every client is its own peer address.",
    )
    api_forwarded_header: Literal["x-forwarded-for", "forwarded"] = Field(
        default="x-forwarded-for",
        description="The header the trusted proxies write the client address into: "
        "X-Forwarded-For (nginx, Caddy, Traefik) or Forwarded (RFC 7239).",
    )
    api_root_path: str = Field(
        default="",
        description="The path prefix under which a reverse proxy publishes the API and "
        "website (e.g. /smartby, the proxy stripping it or not); links, /docs and "
        "/openapi.json then point under it. Empty: served at the root.",
    )
    api_export_pool_size: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Database connections of the bulk exports, a pool of their own beside "
        "the one that serves every other request.",
    )
    api_export_max_total: int = Field(
        default=16,
        ge=1,
        description="Bulk exports streaming at once, all clients together; beyond it 503.",
    )
    api_export_max_per_client: int = Field(
        default=2,
        ge=1,
        description="Bulk exports one client (address or API key) may stream at once; "
        "beyond it 429.",
    )
    api_send_timeout_s: float = Field(
        default=30,
        gt=0,
        description="Longest wait for a client to accept the next piece of a response; a "
        "client that reads nothing for this long is cut off and its export slot freed.",
    )

    # --- website --------------------------------------------------------------------
    map_tiles: str = Field(
        default="https://cache.kartverket.no/v1/wmts/1.0.0/topo/default/webmercator/{z}/{y}/{x}.png",
        description="XYZ tile URL template of the website's basemap ({z}/{x}/{y}); the "
        "default is the Norwegian Mapping Authority's open topographic map. Empty: no "
        "basemap (the markers on a plain background).",
    )
    map_attribution: str = Field(
        default="© Kartverket", description="The basemap's attribution, shown on the map."
    )
    grafana_url: str | None = Field(
        default=None,
        description="Grafana's address, linked from the website's status page when set.",
    )

    # --- who publishes the data -------------------------------------------------------
    city: str = "Narvik"
    timezone: str = "Europe/Oslo"

    # --- live data for third parties ------------------------------------------------------
    api_stream_max_clients: int = Field(
        default=100,
        ge=0,
        description="Server-Sent Events clients of /v1/stream one API process serves at "
        "once; beyond it 503 (0 turns the stream off).",
    )
    api_stream_queue_size: int = Field(
        default=1000,
        ge=10,
        description="Events waiting for one stream client; a client that falls this far "
        "behind is dropped (it may reconnect with Last-Event-ID).",
    )
    api_stream_heartbeat_s: float = Field(
        default=15,
        gt=0,
        le=300,
        description="Seconds between keep-alive comments on an idle stream (proxies close "
        "silent connections).",
    )
    sta_mqtt_publish: bool = Field(
        default=False,
        description="Publish new Observations to the platform's broker on v1.1/Datastreams"
        "(id)/Observations (SensorThings MQTT extension; the public reads them on the public "
        "broker) with the smartby-sta-publisher account (SMARTBY_STA_PUBLISHER_PASSWORD); "
        "one API process publishes at a time.",
    )
    sta_mqtt_public_url: str | None = Field(
        default=None,
        description="The broker URL the public subscribes at (e.g. mqtts://data.example.no:"
        "8883), announced in the SensorThings service root.",
    )

    # --- running it for years: warnings, storage lifecycle, backups, roles ------------
    warnings_clear_after_h: float = Field(
        default=3,
        gt=0,
        le=48,
        description="Hours without a valid hourly index after which a station's air-quality "
        "warning is withdrawn; an hour older than this never starts a warning.",
    )
    retention_raw: timedelta | None = Field(
        default=None,
        description="How long raw readings are kept (e.g. 3y, 400d); unset or 'forever': "
        "for ever. Rollups and indicators are always kept.",
    )
    retention_quarantine: timedelta | None = Field(
        default=timedelta(days=90), description="How long quarantined messages are kept."
    )
    retention_health: timedelta | None = Field(
        default=timedelta(days=400),
        description="How long device health (radio signal, battery) is kept; 400 days "
        "compare a season with the same one a year before. 'forever': for ever.",
    )
    compress_after: timedelta = Field(
        default=timedelta(days=7),
        description="Age after which readings chunks are compressed (TimescaleDB community "
        "edition only).",
    )
    backup_dir: Path | None = Field(
        default=None, description="Where `smartby db backup` writes; default <data_dir>/backups."
    )
    admin_database_url: SecretStr | None = Field(
        default=None,
        description="libpq URL the API's admin routes write the device registry with (the "
        "smartby_registry login); default: SMARTBY_DATABASE_URL.",
    )
    db_writer_password: SecretStr | None = Field(
        default=None, description="Password `smartby db roles` gives the smartby_ingest login."
    )
    db_reader_password: SecretStr | None = Field(
        default=None, description="Password `smartby db roles` gives the smartby_read login."
    )
    db_admin_password: SecretStr | None = Field(
        default=None, description="Password `smartby db roles` gives the smartby_registry login."
    )

    @field_validator(
        "retention_raw", "retention_quarantine", "retention_health", "compress_after", mode="before"
    )
    @classmethod
    def _durations(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator(
        "admin_database_url",
        "ingest_http_database_url",
        "db_writer_password",
        "db_reader_password",
        "db_admin_password",
        mode="before",
    )
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _lifecycle_is_consistent(self) -> Settings:
        # Ingest accepts readings up to ingest_max_past_days old: raw data kept for less
        # would let a late reading land in a chunk retention is about to drop, after its
        # day's rollups and indicators were called complete.
        if self.retention_raw is not None:
            window = timedelta(days=self.ingest_max_past_days)
            if self.retention_raw <= window + timedelta(days=1):
                raise ValueError(
                    f"SMARTBY_RETENTION_RAW ({self.retention_raw.days} days) must be longer "
                    f"than SMARTBY_INGEST_MAX_PAST_DAYS ({self.ingest_max_past_days:g}) plus "
                    "a day: late readings may still arrive that far back"
                )
        if self.env == "production":
            for name in ("db_writer_password", "db_reader_password", "db_admin_password"):
                secret: SecretStr | None = getattr(self, name)
                if secret is not None and secret.get_secret_value().lower() in WEAK_PASSWORDS:
                    raise ValueError(f"SMARTBY_{name.upper()} is empty or a default password")
        return self

    @field_validator(
        "api_public_url",
        "api_keys",
        "database_url",
        "grafana_url",
        "broker_admin_password",
        "sta_publisher_password",
        "public_bridge_password",
        "mqtt_ca_file",
        "mqtt_cert_file",
        "mqtt_key_file",
        "sta_mqtt_public_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # compose passes optional variables through as "" when .env leaves them out
        return None if value == "" else value

    @field_validator("map_tiles")
    @classmethod
    def _tiles_are_a_template(cls, url: str) -> str:
        # Leaflet fills {z} {x} {y} (and {s}); anything else would fetch one tile forever
        if url and not (
            url.startswith(("https://", "http://", "/"))
            and all(part in url for part in ("{z}", "{x}", "{y}"))
        ):
            raise ValueError(
                "SMARTBY_MAP_TILES must be an http(s) URL template with {z}, {x} and {y}, "
                "or empty for no basemap"
            )
        return url

    @field_validator("mqtt_topic_prefix")
    @classmethod
    def _topic_prefix_is_one_level(cls, prefix: str) -> str:
        # The prefix is joined with the device id into topics and into the shared
        # subscription filter; wildcards or empty levels there would widen the ACL.
        if not prefix or any(c in prefix for c in "+#/") or prefix.startswith("$"):
            raise ValueError("SMARTBY_MQTT_TOPIC_PREFIX must be one topic level, no + # / or $")
        return prefix

    @field_validator("ingest_profiles")
    @classmethod
    def _profiles_are_known(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in PROFILE_NAMES]
        if unknown or not names:
            raise ValueError(
                f"unknown profile(s) {', '.join(unknown) or '(none given)'}; "
                f"expected some of {', '.join(PROFILE_NAMES)}"
            )
        return ",".join(names)

    @field_validator("ingest_sources")
    @classmethod
    def _source_names_differ(cls, sources: tuple[IngestSource, ...]) -> tuple[IngestSource, ...]:
        names = [source.name for source in sources]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"two sources are called {', '.join(twice)}")
        return sources

    @field_validator("api_root_path")
    @classmethod
    def _root_path_is_a_path(cls, value: str) -> str:
        # it is prefixed to every link the API and the website write
        value = value.rstrip("/")
        if value and (not value.startswith("/") or any(c in value for c in "?#% \\")):
            raise ValueError("SMARTBY_API_ROOT_PATH must be a path like /smartby, or empty")
        return value

    @field_validator("api_trusted_proxies")
    @classmethod
    def _trusted_proxies_are_networks(cls, value: str) -> str:
        proxy_networks(value)  # refuse a typo now rather than trust nobody silently
        return value

    @model_validator(mode="after")
    def _publisher_has_an_account(self) -> Settings:
        # the broker refuses a publisher without its account's password: say so at start
        if self.sta_mqtt_publish and self.sta_publisher_password is None:
            raise ValueError(
                "SMARTBY_STA_MQTT_PUBLISH needs SMARTBY_STA_PUBLISHER_PASSWORD (the password "
                "of the broker account smartby-sta-publisher)"
            )
        return self

    @model_validator(mode="after")
    def _safe_for_production(self) -> Settings:
        if self.env != "production":
            return self
        problems: list[str] = []
        if self.database_url is None:
            problems.append("SMARTBY_DATABASE_URL must be set (no embedded database)")
        else:
            password = urlsplit(self.database_url.get_secret_value()).password or ""
            if password.lower() in WEAK_PASSWORDS:
                problems.append("SMARTBY_DATABASE_URL uses an empty or default password")
        if self.mqtt_password is None:
            problems.append("SMARTBY_MQTT_PASSWORD must be set (no anonymous broker)")
        elif self.mqtt_password.get_secret_value().lower() in WEAK_PASSWORDS:
            problems.append("SMARTBY_MQTT_PASSWORD is empty or a default password")
        for source in self.ingest_sources:
            if not source.tls and not source.local:
                problems.append(
                    f"SMARTBY_INGEST_SOURCES: source {source.name} would send its password "
                    f"to {source.host} in the clear: set tls"
                )
        admin = self.broker_admin_password
        if admin is not None and admin.get_secret_value().lower() in WEAK_PASSWORDS:
            problems.append("SMARTBY_BROKER_ADMIN_PASSWORD is empty or a default password")
        publisher = self.sta_publisher_password
        if self.sta_mqtt_publish and (
            publisher is None or publisher.get_secret_value().lower() in WEAK_PASSWORDS
        ):
            problems.append(
                "SMARTBY_STA_PUBLISHER_PASSWORD must be set to a real password when "
                "SMARTBY_STA_MQTT_PUBLISH is on"
            )
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @property
    def api_trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """`api_trusted_proxies` parsed: the networks whose forwarded addresses count."""
        return proxy_networks(self.api_trusted_proxies)

    @property
    def ingest_profile_names(self) -> tuple[str, ...]:
        """`ingest_profiles` as names, in the order given."""
        return tuple(self.ingest_profiles.split(","))

    @property
    def mqtt_client_tls(self) -> ClientTls | None:
        """How this process's MQTT clients speak TLS to the broker (None: they do not)."""
        if not self.mqtt_tls:
            return None
        return ClientTls(
            ca_file=_path_text(self.mqtt_ca_file),
            cert_file=_path_text(self.mqtt_cert_file),
            key_file=_path_text(self.mqtt_key_file),
        )

    @property
    def mqtt_tls_extra_names(self) -> list[str]:
        """`mqtt_tls_names` as a list."""
        return [name.strip() for name in self.mqtt_tls_names.split(",") if name.strip()]

    @property
    def embedded(self) -> bool:
        """True when smartby runs its own PostgreSQL (no ``SMARTBY_DATABASE_URL``)."""
        return self.database_url is None

    # --- the publisher in the DCAT-AP-NO catalogue (issue 16) ---------------------------
    publisher_orgnr: str = Field(
        default="959469059",
        description="The publishing organisation's number in Enhetsregisteret (Narvik "
        "kommune's by default): the catalogue's dct:publisher is its URI.",
    )
    municipality_number: str = Field(
        default="1806",
        description="The municipality's number (kommunenummer, Narvik's by default): the "
        "catalogue's dct:spatial is Kartverket's URI of it.",
    )

    @field_validator("publisher_orgnr")
    @classmethod
    def _orgnr_has_its_check_digit(cls, value: str) -> str:
        # Enhetsregisteret's numbers end in a modulus-11 check digit (weights 3 2 7 6 5 4
        # 3 2): a typo is caught here, not by a harvester rejecting the catalogue
        digits = value.replace(" ", "")
        if len(digits) != 9 or not digits.isdigit():
            raise ValueError("SMARTBY_PUBLISHER_ORGNR must be 9 digits (organisasjonsnummer)")
        weighted = sum(int(d) * w for d, w in zip(digits, (3, 2, 7, 6, 5, 4, 3, 2), strict=False))
        check = (11 - weighted % 11) % 11
        if check == 10 or check != int(digits[8]):
            raise ValueError(f"SMARTBY_PUBLISHER_ORGNR {value} fails its check digit (modulus 11)")
        return digits

    @field_validator("municipality_number")
    @classmethod
    def _municipality_number_is_four_digits(cls, value: str) -> str:
        if len(value) != 4 or not value.isdigit():
            raise ValueError("SMARTBY_MUNICIPALITY_NUMBER must be 4 digits (kommunenummer)")
        return value


def _path_text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def proxy_networks(text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """Comma-separated addresses or CIDR networks ("10.0.0.5, 172.18.0.0/16, ::1")."""
    networks = []
    for item in text.split(","):
        entry = item.strip()
        if not entry:
            continue
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's multi-line report into one clear line."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        name = f"SMARTBY_{where.upper()}" if where else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{name}: {message}") from exc


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdwy])\s*$")
#: seconds per unit; a year is 365 days (retention is a policy, not a calendar)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(text: str) -> timedelta | None:
    """``3y``, ``400d``, ``12h``, ``30m`` (a year is 365 days); ``forever`` or empty: None."""
    if text.strip().lower() in ("", "forever", "none", "never"):
        return None
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 3y, 90d, 12h or 'forever'")
    return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])
