"""The one typed settings object of the platform.

Read once at start-up (``Settings()`` reads ``SMARTBY_*`` variables and an optional
``.env``) and passed down; nothing deeper in the code reads the environment.  It
validates itself, and in production it refuses the values that are only fine on a
developer's laptop: an anonymous broker, default passwords, the embedded database.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import SmartbyError

#: Passwords that ship in examples and tutorials; production must not run on them.
WEAK_PASSWORDS = frozenset(
    {"", "postgres", "password", "smartby", "changeme", "change-me", "secret", "admin", "123456"}
)

Environment = Literal["development", "test", "production"]


class SettingsError(SmartbyError, ValueError):
    """Configuration that cannot be run; the message names the variable to fix."""


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

    # --- MQTT -----------------------------------------------------------------------
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
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
    ingest_qc: bool = Field(
        default=True,
        description="QARTOD tests at ingest beyond gross range (spike, rate of change, "
        "flat line, time gap); gross range always runs.",
    )
    ingest_rollups: bool = Field(
        default=True, description="Merge rollup partials at ingest (off only to measure cost)."
    )
    ingest_max_past_days: float = Field(default=400, gt=0)
    ingest_max_future_s: float = Field(default=300, ge=0)

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
        description="Publish new Observations to the broker on v1.1/Datastreams(id)/"
        "Observations (SensorThings MQTT extension, read-only for the public); one API "
        "process publishes at a time.",
    )
    sta_mqtt_username: str = Field(
        default="smartby-sta", description="The broker account the API publishes with."
    )
    sta_mqtt_password: SecretStr | None = Field(
        default=None, description="Its password (the broker's password file holds its hash)."
    )
    sta_mqtt_public_url: str | None = Field(
        default=None,
        description="The broker URL the public subscribes at (e.g. mqtts://data.example.no:"
        "8883), announced in the SensorThings service root.",
    )

    @field_validator(
        "api_public_url",
        "api_keys",
        "database_url",
        "grafana_url",
        "sta_mqtt_password",
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

    @field_validator("api_trusted_proxies")
    @classmethod
    def _trusted_proxies_are_networks(cls, value: str) -> str:
        proxy_networks(value)  # refuse a typo now rather than trust nobody silently
        return value

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
        if not self.mqtt_username or self.mqtt_password is None:
            problems.append(
                "SMARTBY_MQTT_USERNAME and SMARTBY_MQTT_PASSWORD must be set (no anonymous broker)"
            )
        elif self.mqtt_password.get_secret_value().lower() in WEAK_PASSWORDS:
            problems.append("SMARTBY_MQTT_PASSWORD is empty or a default password")
        if self.sta_mqtt_publish and (
            self.sta_mqtt_password is None
            or self.sta_mqtt_password.get_secret_value().lower() in WEAK_PASSWORDS
        ):
            problems.append(
                "SMARTBY_STA_MQTT_PASSWORD must be set to a real password when "
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
    def embedded(self) -> bool:
        """True when smartby runs its own PostgreSQL (no ``SMARTBY_DATABASE_URL``)."""
        return self.database_url is None


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
