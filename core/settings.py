"""The one typed settings object of the platform.

Read once at start-up (``Settings()`` reads ``SMARTBY_*`` variables and an optional
``.env``) and passed down; nothing deeper in the code reads the environment.  It
validates itself, and in production it refuses the values that are only fine on a
developer's laptop: an anonymous broker, default passwords, the embedded database.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    @field_validator("api_public_url", "api_keys", "database_url", "grafana_url", mode="before")
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
        for source in self.ingest_sources:
            if not source.tls and not source.local:
                problems.append(
                    f"SMARTBY_INGEST_SOURCES: source {source.name} would send its password "
                    f"to {source.host} in the clear: set tls"
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
