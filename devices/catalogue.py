"""A municipality's sensor catalogue: sites and devices, read from YAML or CSV and checked.

The catalogue is what staff write by hand (``devices/narvik.yaml`` documents the format at
its top) and what both the registry (``smartby devices import``) and the simulator read.
Everything a database or a broker would refuse later — an id MQTT or the schema cannot
take, a device on a site that does not exist, a duplicate — is refused here first, with
the file, the entry and the problem in one line, because a half-imported catalogue is
worse than none. No database access: whether a metric key exists in the ``metrics`` table
is the registry's check, at import time.

CSV form, for spreadsheets: one row per device with its site inline, columns
``id, site_id, site_name, site_kind, lon, lat, kind, vendor, model, metrics, interval_s,
payload`` (metrics separated by ``;``), optional ``municipality``, ``fault``,
``simulation`` (a JSON object), ``profile``, ``topic`` and ``fields`` (a JSON object).

A device that is not written for smartby names its ``profile`` (``tasmota``, ``esphome``,
``ttn-v3``, ``chirpstack-v4``) and its ``topic`` in that profile's terms (the Tasmota
topic, the ESPHome node, the TTS device id or DevEUI), and may map its payload's fields
to metrics (``fields``), give the ``timezone`` of a local clock and accept
``numeric_strings``; `core.profiles.check_binding` checks them.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, cast

import yaml

from core.errors import SmartbyError
from core.profiles import Binding, BindingError, check_binding

__all__ = [
    "BUILDING_TYPES",
    "DEVICE_KINDS",
    "FAULTS",
    "PAYLOAD_FORMS",
    "ROAD_CLASSES",
    "SITE_KINDS",
    "Catalogue",
    "CatalogueError",
    "DeviceSpec",
    "Site",
    "load_catalogue",
    "narvik_catalogue_path",
    "parse_catalogue",
]

SiteKind = Literal["roadside", "urban_background", "building", "road_section"]
DeviceKind = Literal["air_quality", "energy", "traffic"]
PayloadForm = Literal["senml", "senml-cbor", "json"]

SITE_KINDS: Final[tuple[str, ...]] = ("roadside", "urban_background", "building", "road_section")
DEVICE_KINDS: Final[tuple[str, ...]] = ("air_quality", "energy", "traffic")
PAYLOAD_FORMS: Final[tuple[str, ...]] = ("senml", "senml-cbor", "json")
FAULTS: Final[tuple[str, ...]] = ("spike", "flat_line", "dropout", "clock_skew", "meter_reset")
BUILDING_TYPES: Final[tuple[str, ...]] = (
    "school",
    "kindergarten",
    "office",
    "library",
    "care_home",
    "swimming_hall",
    "fire_station",
    "culture_house",
    "sports_hall",
)
ROAD_CLASSES: Final[tuple[str, ...]] = ("european_road", "county_road", "town_street")

# The same rules as the CHECK constraints of migration 0001: a site id is a URL path
# segment; a device id is one MQTT topic level and the broker user name (no + # / space).
_SITE_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_METRIC_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")

#: Shortest reporting interval of a traffic counter: only aggregates over 15 minutes or
#: more are published, so that no single vehicle (and driver) can be singled out.
MIN_TRAFFIC_INTERVAL_S: Final = 900
_MAX_INTERVAL_S: Final = 86_400

_DEFAULT_PAYLOAD: Final[dict[str, str]] = {
    "air_quality": "senml",
    "energy": "senml",
    "traffic": "json",
}

_TOP_KEYS: Final = frozenset({"municipality", "metrics", "sites", "devices"})
_SITE_KEYS: Final = frozenset({"id", "name", "kind", "lon", "lat", "properties"})
_DEVICE_KEYS: Final = frozenset(
    {
        "id",
        "site",
        "kind",
        "vendor",
        "model",
        "metrics",
        "interval_s",
        "payload",
        "calibration",
        "simulation",
        "profile",
        "topic",
        "fields",
        "timezone",
        "numeric_strings",
    }
)


class _Knob:
    """One simulation knob: its type and allowed range, checked when the file is read so
    that a typo in a knob fails the import instead of silently simulating a default."""

    def __init__(
        self,
        kind: type | tuple[type, ...],
        *,
        low: float | None = None,
        high: float | None = None,
        choices: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.low = low
        self.high = high
        self.choices = tuple(choices)

    def problem(self, value: object) -> str | None:
        if isinstance(value, bool) and self.kind is not bool:
            return f"must be {self._describe()}, not {value!r}"
        if not isinstance(value, self.kind):
            return f"must be {self._describe()}, not {value!r}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, not {value!r}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                return f"must be a finite number, not {value!r}"
            if self.low is not None and value < self.low:
                return f"must be at least {self.low:g}, not {value!r}"
            if self.high is not None and value > self.high:
                return f"must be at most {self.high:g}, not {value!r}"
        return None

    def _describe(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return "text"
        if self.kind == (dt.date, str):
            return "a date (YYYY-MM-DD)"
        return "a number"


_NUMBER: Final = (int, float)
_COMMON_KNOBS: Final[dict[str, _Knob]] = {
    "fault": _Knob(str, choices=FAULTS),
    "clock_skew_s": _Knob(_NUMBER, low=-7 * 86_400, high=7 * 86_400),
}
_KIND_KNOBS: Final[dict[str, dict[str, _Knob]]] = {
    "air_quality": {
        "traffic_aadt": _Knob(_NUMBER, low=0, high=200_000),
        "traffic_exposure": _Knob(_NUMBER, low=0, high=1),
        "wood_burning": _Knob(_NUMBER, low=0, high=1),
        "harbour": _Knob(bool),
        "temperature_offset": _Knob(_NUMBER, low=-10, high=10),
    },
    "energy": {
        "building_type": _Knob(str, choices=BUILDING_TYPES),
        "floor_area_m2": _Knob(_NUMBER, low=10, high=1_000_000),
        "electric_heating": _Knob(_NUMBER, low=0, high=1),
        "installed": _Knob((dt.date, str)),
        "register_start_kwh": _Knob(_NUMBER, low=0, high=1e9),
    },
    "traffic": {
        "aadt": _Knob(_NUMBER, low=1, high=200_000),
        "speed_limit_kmh": _Knob(_NUMBER, low=20, high=130),
        "heavy_share": _Knob(_NUMBER, low=0, high=0.6),
        "road_class": _Knob(str, choices=ROAD_CLASSES),
    },
}


class CatalogueError(SmartbyError, ValueError):
    """A catalogue file that cannot be used; the message names the file, entry and problem."""

    def __init__(self, source: str, entry: str | None, problem: str) -> None:
        where = f"{source}: {entry}" if entry else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.entry = entry
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Site:
    """A place sensors stand: a SensorThings Thing with its Location."""

    id: str
    name: str
    kind: SiteKind
    lon: float
    lat: float
    properties: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=True
    )


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One physical sensor as the catalogue describes it (a SensorThings Sensor)."""

    id: str
    site: Site
    kind: DeviceKind
    metrics: tuple[str, ...]
    interval_s: int
    payload: PayloadForm
    vendor: str | None = None
    model: str | None = None
    calibration: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=True
    )
    simulation: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=True
    )
    #: how the device talks, when not as a smartby device (`core.profiles`)
    binding: Binding = field(default_factory=Binding, hash=False, compare=True)

    @property
    def profile(self) -> str:
        return self.binding.profile

    @property
    def fault(self) -> str | None:
        """The fault the simulated device shows, if any (``simulation.fault``)."""
        value = self.simulation.get("fault")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Every site and device of one municipality, checked and cross-referenced."""

    municipality: str
    sites: tuple[Site, ...]
    devices: tuple[DeviceSpec, ...]
    source: str = "<catalogue>"
    #: metric key -> resolution declared by the municipality (``metrics:``), which
    #: `devices.provision.import_catalogue` writes into the metric catalogue
    resolutions: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=True
    )

    def site(self, site_id: str) -> Site:
        for site in self.sites:
            if site.id == site_id:
                return site
        raise KeyError(site_id)

    def device(self, device_id: str) -> DeviceSpec:
        for device in self.devices:
            if device.id == device_id:
                return device
        raise KeyError(device_id)

    def of_kind(self, kind: str) -> tuple[DeviceSpec, ...]:
        return tuple(device for device in self.devices if device.kind == kind)


def narvik_catalogue_path() -> Path:
    """The catalogue shipped with smartby: Narvik's stations, buildings and roads."""
    return Path(__file__).with_name("narvik.yaml")


def load_catalogue(path: str | Path, *, municipality: str | None = None) -> Catalogue:
    """Read and check a catalogue file: ``.yaml``/``.yml``, or ``.csv`` (one device a row).

    ``municipality`` is needed for a CSV file without a ``municipality`` column; for YAML
    it overrides nothing and must agree with the file when given.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(source, None, f"cannot read the file: {exc}") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        catalogue = parse_catalogue_yaml(text, source)
        if municipality is not None and municipality != catalogue.municipality:
            raise CatalogueError(
                source,
                None,
                f"the file is for {catalogue.municipality!r}, not {municipality!r}",
            )
        return catalogue
    if suffix == ".csv":
        return parse_catalogue_csv(text, source, municipality=municipality)
    raise CatalogueError(source, None, "a catalogue is a .yaml, .yml or .csv file")


def parse_catalogue_yaml(text: str, source: str = "<yaml>") -> Catalogue:
    """A catalogue from YAML text; errors point at the entry's line in ``source``."""
    try:
        document = yaml.safe_load(text)
        lines = _entry_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogueError(where, None, f"not valid YAML: {problem}") from None
    return parse_catalogue(document, source, lines=lines)


def parse_catalogue(
    document: object,
    source: str = "<catalogue>",
    *,
    lines: Mapping[tuple[str, int], int] | None = None,
) -> Catalogue:
    """A catalogue from an already parsed document (``{municipality, sites, devices}``).

    ``lines`` maps ``("sites"|"devices", index)`` to a line number for error messages.
    """
    if not isinstance(document, Mapping):
        raise CatalogueError(
            source, None, "the file must be a mapping with municipality, sites and devices"
        )
    unknown = sorted(str(key) for key in document if key not in _TOP_KEYS)
    if unknown:
        raise CatalogueError(
            source,
            None,
            f"unknown top-level key(s) {', '.join(unknown)}; expected municipality, metrics, "
            "sites, devices",
        )
    municipality = document.get("municipality")
    if not isinstance(municipality, str) or not municipality.strip():
        raise CatalogueError(source, None, "municipality must be given as text")

    def where(section: str, index: int) -> str:
        line = (lines or {}).get((section, index))
        return f"{source}:{line}" if line is not None else source

    raw_sites = _sequence(document.get("sites", []), source, "sites")
    raw_devices = _sequence(document.get("devices", []), source, "devices")
    resolutions = _resolutions(document.get("metrics", {}), source)

    sites: dict[str, Site] = {}
    for index, raw in enumerate(raw_sites):
        site = _site(raw, where("sites", index), index)
        if site.id in sites:
            raise CatalogueError(where("sites", index), f"site {site.id!r}", "duplicate site id")
        sites[site.id] = site

    devices: dict[str, DeviceSpec] = {}
    folded: dict[str, str] = {}
    keyed: dict[tuple[str, str], str] = {}
    for index, raw in enumerate(raw_devices):
        device = _device(raw, where("devices", index), index, sites)
        if device.id in devices:
            raise CatalogueError(
                where("devices", index), f"device {device.id!r}", "duplicate device id"
            )
        # MQTT user names and topics are case-sensitive, but two devices whose ids differ
        # only in case are a mistake waiting to happen in an ACL or a support call.
        twin = folded.get(device.id.casefold())
        if twin is not None:
            raise CatalogueError(
                where("devices", index),
                f"device {device.id!r}",
                f"differs from device {twin!r} only in upper/lower case",
            )
        devices[device.id] = device
        folded[device.id.casefold()] = device.id
        binding = device.binding
        if binding.key is not None:
            holder = keyed.setdefault((binding.profile, binding.key), device.id)
            if holder != device.id:
                raise CatalogueError(
                    where("devices", index),
                    f"device {device.id!r}",
                    f"{binding.profile} topic {binding.key!r} is device {holder!r}'s already",
                )

    return Catalogue(
        municipality=municipality.strip(),
        sites=tuple(sites.values()),
        devices=tuple(devices.values()),
        source=source,
        resolutions=MappingProxyType(resolutions),
    )


def _resolutions(raw: object, source: str) -> dict[str, float]:
    """``metrics: {pm25: {resolution: 0.1}, ...}``: how finely this municipality's
    instruments resolve each metric, in the metric's canonical unit."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise CatalogueError(source, "metrics", "must map metric keys to {resolution: number}")
    found: dict[str, float] = {}
    for key, entry in raw.items():
        if not isinstance(key, str) or not _METRIC_KEY.fullmatch(key):
            raise CatalogueError(source, "metrics", f"bad metric key {key!r}")
        if not isinstance(entry, Mapping) or set(entry) != {"resolution"}:
            raise CatalogueError(source, f"metrics.{key}", "must be {resolution: number}")
        value = entry["resolution"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise CatalogueError(
                source, f"metrics.{key}", f"resolution must be a positive number, not {value!r}"
            )
        found[key] = float(value)
    return found


_CSV_REQUIRED: Final = (
    "id",
    "site_id",
    "site_name",
    "site_kind",
    "lon",
    "lat",
    "kind",
    "metrics",
    "interval_s",
)
_CSV_OPTIONAL: Final = (
    "vendor",
    "model",
    "payload",
    "municipality",
    "fault",
    "simulation",
    "profile",
    "topic",
    "fields",
)


def parse_catalogue_csv(
    text: str, source: str = "<csv>", *, municipality: str | None = None
) -> Catalogue:
    """A catalogue from CSV text: one device a row, its site in the same row.

    A site that several rows share must be described the same way in each of them.
    """
    reader = csv.DictReader(text.splitlines())
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in _CSV_REQUIRED if name not in columns]
    if missing:
        raise CatalogueError(source, None, f"missing column(s) {', '.join(missing)}")
    unknown = [name for name in columns if name not in _CSV_REQUIRED + _CSV_OPTIONAL]
    if unknown:
        raise CatalogueError(source, None, f"unknown column(s) {', '.join(unknown)}")

    sites: dict[str, dict[str, Any]] = {}
    site_rows: dict[str, int] = {}
    devices: list[dict[str, Any]] = []
    lines: dict[tuple[str, int], int] = {}
    municipalities: set[str] = set()
    for row_number, raw_row in enumerate(reader, start=2):  # line 1 is the header
        row = {key.strip(): (value or "").strip() for key, value in raw_row.items() if key}
        if not any(row.values()):
            continue
        where = f"{source}:{row_number}"
        if row.get("municipality"):
            municipalities.add(row["municipality"])
        site_id = row["site_id"]
        site: dict[str, Any] = {
            "id": site_id,
            "name": row["site_name"],
            "kind": row["site_kind"],
            "lon": _csv_number(row["lon"]),
            "lat": _csv_number(row["lat"]),
        }
        known = sites.get(site_id)
        if known is None:
            sites[site_id] = site
            site_rows[site_id] = row_number
            lines[("sites", len(sites) - 1)] = row_number
        elif known != site:
            raise CatalogueError(
                where,
                f"site {site_id!r}",
                f"described differently than on line {site_rows[site_id]}",
            )
        simulation = _csv_object(row, "simulation", where)
        if row.get("fault"):
            simulation["fault"] = row["fault"]
        device: dict[str, Any] = {
            "id": row["id"],
            "site": row["site_id"],
            "kind": row["kind"],
            "metrics": [key.strip() for key in row["metrics"].split(";") if key.strip()],
            "interval_s": _csv_number(row["interval_s"]),
        }
        for name in ("vendor", "model", "payload", "profile", "topic"):
            if row.get(name):
                device[name] = row[name]
        if row.get("fields"):
            device["fields"] = _csv_object(row, "fields", where)
        if simulation:
            device["simulation"] = simulation
        lines[("devices", len(devices))] = row_number
        devices.append(device)

    if len(municipalities) > 1:
        raise CatalogueError(
            source, None, f"rows name several municipalities: {', '.join(sorted(municipalities))}"
        )
    named = next(iter(municipalities), None)
    if municipality is not None and named is not None and municipality != named:
        raise CatalogueError(source, None, f"the file is for {named!r}, not {municipality!r}")
    chosen = municipality or named
    if chosen is None:
        raise CatalogueError(source, None, "no municipality: add a municipality column or pass one")
    document = {"municipality": chosen, "sites": list(sites.values()), "devices": devices}
    return parse_catalogue(document, source, lines=lines)


# ----------------------------------------------------------------------------- entries


def _site(raw: object, where: str, index: int) -> Site:
    entry = f"sites[{index}]"
    if not isinstance(raw, Mapping):
        raise CatalogueError(where, entry, "a site must be a mapping (id, name, kind, lon, lat)")
    site_id = raw.get("id")
    if isinstance(site_id, str):
        entry = f"site {site_id!r}"
    _unknown_keys(raw, _SITE_KEYS, where, entry)
    if not isinstance(site_id, str) or not _SITE_ID.fullmatch(site_id):
        raise CatalogueError(
            where,
            entry,
            f"bad site id {site_id!r}: use a-z, 0-9, '-' and '_', starting with a letter "
            "or digit, at most 64 characters",
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CatalogueError(where, entry, "name must be given as text")
    kind = raw.get("kind")
    if kind not in SITE_KINDS:
        raise CatalogueError(
            where, entry, f"unknown site kind {kind!r}; expected one of {', '.join(SITE_KINDS)}"
        )
    lon = _coordinate(raw.get("lon"), "lon", 180.0, where, entry)
    lat = _coordinate(raw.get("lat"), "lat", 90.0, where, entry)
    properties = _mapping(raw.get("properties", {}), "properties", where, entry)
    return Site(
        id=site_id,
        name=name.strip(),
        kind=cast(SiteKind, kind),
        lon=lon,
        lat=lat,
        properties=properties,
    )


def _device(raw: object, where: str, index: int, sites: Mapping[str, Site]) -> DeviceSpec:
    entry = f"devices[{index}]"
    if not isinstance(raw, Mapping):
        raise CatalogueError(where, entry, "a device must be a mapping (id, site, kind, …)")
    device_id = raw.get("id")
    if isinstance(device_id, str):
        entry = f"device {device_id!r}"
    _unknown_keys(raw, _DEVICE_KEYS, where, entry)
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise CatalogueError(
            where,
            entry,
            f"bad device id {device_id!r}: it becomes an MQTT user name and topic level, so "
            "use A-Z, a-z, 0-9, '.', '-' and '_', starting with a letter or digit, at most "
            "64 characters",
        )
    site_id = raw.get("site")
    site = sites.get(site_id) if isinstance(site_id, str) else None
    if site is None:
        raise CatalogueError(where, entry, f"unknown site {site_id!r}")
    kind = raw.get("kind")
    if kind not in DEVICE_KINDS:
        raise CatalogueError(
            where,
            entry,
            f"unknown device kind {kind!r}; expected one of {', '.join(DEVICE_KINDS)}",
        )
    vendor = _optional_text(raw.get("vendor"), "vendor", where, entry)
    model = _optional_text(raw.get("model"), "model", where, entry)
    metrics = _metrics(raw.get("metrics"), where, entry)
    interval_s = _interval(raw.get("interval_s"), str(kind), where, entry)
    payload = raw.get("payload", _DEFAULT_PAYLOAD[str(kind)])
    if payload not in PAYLOAD_FORMS:
        raise CatalogueError(
            where,
            entry,
            f"unknown payload form {payload!r}; expected one of {', '.join(PAYLOAD_FORMS)}",
        )
    calibration = _mapping(raw.get("calibration", {}), "calibration", where, entry)
    simulation = _simulation(raw.get("simulation", {}), str(kind), where, entry)
    binding = _binding(raw, where, entry)
    return DeviceSpec(
        id=device_id,
        site=site,
        kind=cast(DeviceKind, kind),
        metrics=metrics,
        interval_s=interval_s,
        payload=cast(PayloadForm, payload),
        vendor=vendor,
        model=model,
        calibration=calibration,
        simulation=simulation,
        binding=binding,
    )


def _binding(raw: Mapping[str, Any], where: str, entry: str) -> Binding:
    """The device's profile, topic, field map and options, checked by the profile layer."""
    profile = raw.get("profile", "smartby")
    topic = raw.get("topic")
    if isinstance(topic, int) and not isinstance(topic, bool):
        topic = str(topic)  # an ESPHome node or TTS id written without quotes
    if not isinstance(profile, str) or (topic is not None and not isinstance(topic, str)):
        raise CatalogueError(where, entry, "profile and topic must be text")
    timezone = raw.get("timezone")
    if timezone is not None and not isinstance(timezone, str):
        raise CatalogueError(where, entry, f"timezone must be text, not {timezone!r}")
    try:
        return check_binding(
            profile, topic, raw.get("fields"), timezone, raw.get("numeric_strings")
        )
    except BindingError as exc:
        raise CatalogueError(where, entry, str(exc)) from None


def _metrics(raw: object, where: str, entry: str) -> tuple[str, ...]:
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
        raise CatalogueError(where, entry, "metrics must be a non-empty list of metric keys")
    keys: list[str] = []
    for key in raw:
        if not isinstance(key, str) or not _METRIC_KEY.fullmatch(key):
            raise CatalogueError(
                where,
                entry,
                f"bad metric key {key!r}: keys are lower-case, like pm25, no2 or energy",
            )
        if key in keys:
            raise CatalogueError(where, entry, f"metric {key!r} is listed twice")
        keys.append(key)
    return tuple(keys)


def _interval(raw: object, kind: str, where: str, entry: str) -> int:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise CatalogueError(where, entry, f"interval_s must be whole seconds, not {raw!r}")
    if not 1 <= raw <= _MAX_INTERVAL_S:
        raise CatalogueError(
            where, entry, f"interval_s must be between 1 and {_MAX_INTERVAL_S}, not {raw}"
        )
    if kind == "traffic" and raw < MIN_TRAFFIC_INTERVAL_S:
        raise CatalogueError(
            where,
            entry,
            f"a traffic counter publishes aggregates of at least {MIN_TRAFFIC_INTERVAL_S} s "
            f"(15 minutes, for privacy), not {raw} s",
        )
    return raw


def _simulation(raw: object, kind: str, where: str, entry: str) -> Mapping[str, Any]:
    knobs = _mapping(raw, "simulation", where, entry)
    allowed = {**_COMMON_KNOBS, **_KIND_KNOBS[kind]}
    for name, value in knobs.items():
        knob = allowed.get(name)
        if knob is None:
            raise CatalogueError(
                where,
                entry,
                f"unknown simulation knob {name!r} for a {kind} device; known: "
                + ", ".join(sorted(allowed)),
            )
        problem = knob.problem(value)
        if problem is not None:
            raise CatalogueError(where, entry, f"simulation.{name} {problem}")
    if knobs.get("fault") == "meter_reset" and kind != "energy":
        raise CatalogueError(where, entry, "fault meter_reset needs an energy meter")
    installed = knobs.get("installed")
    if isinstance(installed, str):
        try:
            dt.date.fromisoformat(installed)
        except ValueError:
            raise CatalogueError(
                where, entry, f"simulation.installed {installed!r} is not a date (YYYY-MM-DD)"
            ) from None
    return knobs


def _coordinate(raw: object, name: str, limit: float, where: str, entry: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise CatalogueError(where, entry, f"{name} must be a number of degrees, not {raw!r}")
    if not -limit <= raw <= limit:
        raise CatalogueError(where, entry, f"{name} {raw} is outside -{limit:g}..{limit:g} degrees")
    return float(raw)


def _mapping(raw: object, name: str, where: str, entry: str) -> Mapping[str, Any]:
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, Mapping) or not all(isinstance(key, str) for key in raw):
        raise CatalogueError(where, entry, f"{name} must be a mapping with text keys")
    return MappingProxyType(dict(raw))


def _optional_text(raw: object, name: str, where: str, entry: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)  # a model "6534" written without quotes is still a name
    if not isinstance(raw, str):
        raise CatalogueError(where, entry, f"{name} must be text, not {raw!r}")
    return raw.strip() or None


def _unknown_keys(raw: Mapping[Any, Any], allowed: frozenset[str], where: str, entry: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise CatalogueError(
            where,
            entry,
            f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}",
        )


def _sequence(raw: object, source: str, name: str) -> Sequence[object]:
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise CatalogueError(source, None, f"{name} must be a list")
    return raw


def _csv_object(row: Mapping[str, str], column: str, where: str) -> dict[str, Any]:
    """A CSV cell holding a JSON object (empty: none)."""
    if not row.get(column):
        return {}
    try:
        parsed = json.loads(row[column])
    except ValueError as exc:
        raise CatalogueError(
            where, f"device {row['id']!r}", f"{column} is not a JSON object: {exc}"
        ) from None
    if not isinstance(parsed, dict):
        raise CatalogueError(where, f"device {row['id']!r}", f"{column} is not a JSON object")
    return parsed


def _csv_number(text: str) -> float | int | str:
    """A CSV cell as a number when it is one; otherwise the text, for the checks to name."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _entry_lines(text: str) -> dict[tuple[str, int], int]:
    """Line numbers of the entries under ``sites`` and ``devices``, so that an error can
    say where in a long hand-written file to look."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[tuple[str, int], int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key_node, value_node in root.value:
        section = getattr(key_node, "value", None)
        if section in ("sites", "devices") and isinstance(value_node, yaml.SequenceNode):
            for index, item in enumerate(_children(value_node)):
                lines[(str(section), index)] = item.start_mark.line + 1
    return lines


def _children(node: yaml.SequenceNode) -> Iterable[yaml.Node]:
    return cast(list[yaml.Node], node.value)
