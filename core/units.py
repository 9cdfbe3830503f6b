"""Conversion between SenML unit symbols, for bringing every reading to its metric's unit.

Devices name their units with SenML symbols: the primary units of the IANA "SenML Units"
registry (RFC 8428 §12.1, extended by RFC 8798 §2) and the secondary units of RFC 8798 §3,
each of which the RFC defines as ``value × scale + offset`` in a primary unit. smartby stores
every metric in one canonical unit (``ug/m3``, ``Cel``, ``%RH``, ``W``, ``kWh``, ``km/h``,
``count``, ``hPa``), so ingest asks this module for the linear map from what a device sent to
what the catalogue wants.

Every unit below belongs to a *dimension* and is defined by ``(scale, offset)`` towards that
dimension's base unit. Dimensions follow SenML's own semantics rather than pure physics:
RFC 8428 §12.1 gives ``%RH``, ``%EL``, ``count`` and ``/`` separate registry entries although
all are "1", so they do not convert into one another.

The conversion is looked up once per unit pair and cached (``functools.lru_cache``), because
it runs for every reading on the ingest hot path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from typing import Final, NamedTuple

__all__ = [
    "EU_REFERENCE_PRESSURE_PA",
    "EU_REFERENCE_TEMPERATURE_K",
    "UnitError",
    "conversion",
    "convert",
    "converter",
    "dimension_of",
    "integrated_unit",
    "is_known_unit",
]


class UnitError(ValueError):
    """Two units cannot be converted into one another (unknown unit or other dimension)."""

    def __init__(self, from_unit: str, to_unit: str, why: str) -> None:
        super().__init__(f"cannot convert unit {from_unit!r} to {to_unit!r}: {why}")
        self.from_unit = from_unit
        self.to_unit = to_unit
        self.why = why


class _UnitDef(NamedTuple):
    """One unit: ``base value = value × scale + offset`` (the RFC 8798 §3 convention)."""

    dimension: str
    scale: Fraction
    offset: Fraction


def _f(text: str) -> Fraction:
    """Exact rational from the registry's notation ("1/1000", "1e-9", "3.6")."""
    if "/" in text:
        num, den = text.split("/")
        return Fraction(num) / Fraction(den)
    return Fraction(text)


# (symbol, dimension, scale, offset, source). The base unit of each dimension has scale 1 and
# offset 0. Sources: "RFC 8428" = §12.1 Table 6; "RFC 8798 §2" = new primary units;
# "RFC 8798 §3" = Table 2, the initial secondary units; "IANA" = later secondary-unit
# registrations (IANA "Secondary Units" registry, expert review); "smartby" = not registered
# anywhere but unambiguous SI multiples that sensors in the field do send.
_TABLE: Final[tuple[tuple[str, str, str, str, str], ...]] = (
    # --- RFC 8428 primary units ------------------------------------------------------------
    ("m", "length", "1", "0", "RFC 8428"),
    ("kg", "mass", "1", "0", "RFC 8428"),
    ("g", "mass", "1/1000", "0", "RFC 8428"),
    ("s", "time", "1", "0", "RFC 8428"),
    ("A", "current", "1", "0", "RFC 8428"),
    # Cel and K are both primary; RFC 8428 §12.1 item 5 explains why Celsius is admitted.
    # (Its text says "T0 = 275.15 K"; the ISO 80000-5 value is 273.15 K.)
    ("K", "temperature", "1", "0", "RFC 8428"),
    ("Cel", "temperature", "1", "273.15", "RFC 8428"),
    ("cd", "luminous_intensity", "1", "0", "RFC 8428"),
    ("mol", "amount", "1", "0", "RFC 8428"),
    ("Hz", "frequency", "1", "0", "RFC 8428"),
    ("rad", "angle", "1", "0", "RFC 8428"),
    ("sr", "solid_angle", "1", "0", "RFC 8428"),
    ("N", "force", "1", "0", "RFC 8428"),
    ("Pa", "pressure", "1", "0", "RFC 8428"),
    ("J", "energy", "1", "0", "RFC 8428"),
    ("W", "power", "1", "0", "RFC 8428"),
    ("C", "charge", "1", "0", "RFC 8428"),
    ("V", "voltage", "1", "0", "RFC 8428"),
    ("F", "capacitance", "1", "0", "RFC 8428"),
    ("Ohm", "resistance", "1", "0", "RFC 8428"),
    ("S", "conductance", "1", "0", "RFC 8428"),
    ("Wb", "magnetic_flux", "1", "0", "RFC 8428"),
    ("T", "magnetic_flux_density", "1", "0", "RFC 8428"),
    ("H", "inductance", "1", "0", "RFC 8428"),
    ("lm", "luminous_flux", "1", "0", "RFC 8428"),
    ("lx", "illuminance", "1", "0", "RFC 8428"),
    ("Bq", "activity", "1", "0", "RFC 8428"),
    ("Gy", "absorbed_dose", "1", "0", "RFC 8428"),
    ("Sv", "dose_equivalent", "1", "0", "RFC 8428"),
    ("kat", "catalytic_activity", "1", "0", "RFC 8428"),
    ("m2", "area", "1", "0", "RFC 8428"),
    ("m3", "volume", "1", "0", "RFC 8428"),
    ("l", "volume", "1/1000", "0", "RFC 8428"),
    ("m/s", "speed", "1", "0", "RFC 8428"),
    ("m/s2", "acceleration", "1", "0", "RFC 8428"),
    ("m3/s", "flow_rate", "1", "0", "RFC 8428"),
    ("l/s", "flow_rate", "1/1000", "0", "RFC 8428"),
    ("W/m2", "irradiance", "1", "0", "RFC 8428"),
    ("cd/m2", "luminance", "1", "0", "RFC 8428"),
    ("bit", "information", "1", "0", "RFC 8428"),
    ("bit/s", "data_rate", "1", "0", "RFC 8428"),
    ("lat", "latitude", "1", "0", "RFC 8428"),
    ("lon", "longitude", "1", "0", "RFC 8428"),
    ("pH", "acidity", "1", "0", "RFC 8428"),
    ("dB", "relative_level", "1", "0", "RFC 8428"),
    ("dBW", "power_level", "1", "0", "RFC 8428"),
    ("Bspl", "sound_pressure_level", "1", "0", "RFC 8428"),
    ("count", "count", "1", "0", "RFC 8428"),
    # RFC 8428 §12.1 Note 2: "%" is the same ratio as "/" (0..1), NOT a percentage.
    ("/", "ratio", "1", "0", "RFC 8428"),
    ("%", "ratio", "1", "0", "RFC 8428"),
    ("%RH", "relative_humidity", "1", "0", "RFC 8428"),
    ("%EL", "battery_level", "1", "0", "RFC 8428"),
    ("EL", "battery_time", "1", "0", "RFC 8428"),
    ("1/s", "event_rate", "1", "0", "RFC 8428"),
    ("1/min", "event_rate", "1/60", "0", "RFC 8428"),
    ("beat/min", "heart_rate", "1", "0", "RFC 8428"),
    ("beats", "heart_beats", "1", "0", "RFC 8428"),
    ("S/m", "conductivity", "1", "0", "RFC 8428"),
    # --- RFC 8798 §2 new primary units -----------------------------------------------------
    # RFC 8798 keeps B apart from bit but defines B/s as 8 bit/s, so B = 8 bit here.
    ("B", "information", "8", "0", "RFC 8798 §2"),
    ("VA", "apparent_power", "1", "0", "RFC 8798 §2"),
    ("VAs", "apparent_energy", "1", "0", "RFC 8798 §2"),
    ("var", "reactive_power", "1", "0", "RFC 8798 §2"),
    ("vars", "reactive_energy", "1", "0", "RFC 8798 §2"),
    ("J/m", "energy_per_distance", "1", "0", "RFC 8798 §2"),
    ("kg/m3", "mass_concentration", "1", "0", "RFC 8798 §2"),
    ("deg", "angle", str(Fraction(math.pi) / 180), "0", "RFC 8798 §2"),
    # --- RFC 8798 §3 secondary units (Table 2) ---------------------------------------------
    ("ms", "time", "1/1000", "0", "RFC 8798 §3"),
    ("min", "time", "60", "0", "RFC 8798 §3"),
    ("h", "time", "3600", "0", "RFC 8798 §3"),
    ("MHz", "frequency", "1000000", "0", "RFC 8798 §3"),
    ("kW", "power", "1000", "0", "RFC 8798 §3"),
    ("kVA", "apparent_power", "1000", "0", "RFC 8798 §3"),
    ("kvar", "reactive_power", "1000", "0", "RFC 8798 §3"),
    ("Ah", "charge", "3600", "0", "RFC 8798 §3"),
    ("Wh", "energy", "3600", "0", "RFC 8798 §3"),
    ("kWh", "energy", "3600000", "0", "RFC 8798 §3"),
    ("varh", "reactive_energy", "3600", "0", "RFC 8798 §3"),
    ("kvarh", "reactive_energy", "3600000", "0", "RFC 8798 §3"),
    ("kVAh", "apparent_energy", "3600000", "0", "RFC 8798 §3"),
    ("Wh/km", "energy_per_distance", "3.6", "0", "RFC 8798 §3"),
    ("KiB", "information", str(1024 * 8), "0", "RFC 8798 §3"),  # 1024 B
    ("GB", "information", str(10**9 * 8), "0", "RFC 8798 §3"),  # 1e9 B
    ("Mbit/s", "data_rate", "1000000", "0", "RFC 8798 §3"),
    ("B/s", "data_rate", "8", "0", "RFC 8798 §3"),
    ("MB/s", "data_rate", "8000000", "0", "RFC 8798 §3"),
    ("mV", "voltage", "1/1000", "0", "RFC 8798 §3"),
    ("mA", "current", "1/1000", "0", "RFC 8798 §3"),
    ("dBm", "power_level", "1", "-30", "RFC 8798 §3"),
    ("ug/m3", "mass_concentration", "1e-9", "0", "RFC 8798 §3"),
    ("mm/h", "speed", "1/3600000", "0", "RFC 8798 §3"),
    ("m/h", "speed", "1/3600", "0", "RFC 8798 §3"),
    ("ppm", "ratio", "1e-6", "0", "RFC 8798 §3"),
    ("/100", "ratio", "1/100", "0", "RFC 8798 §3"),
    ("/1000", "ratio", "1/1000", "0", "RFC 8798 §3"),
    ("hPa", "pressure", "100", "0", "RFC 8798 §3"),
    ("mm", "length", "1/1000", "0", "RFC 8798 §3"),
    ("cm", "length", "1/100", "0", "RFC 8798 §3"),
    ("km", "length", "1000", "0", "RFC 8798 §3"),
    ("km/h", "speed", "1/3.6", "0", "RFC 8798 §3"),
    # --- later IANA secondary-unit registrations -------------------------------------------
    ("ppb", "ratio", "1e-9", "0", "IANA"),
    ("ppt", "ratio", "1e-12", "0", "IANA"),
    ("VAh", "apparent_energy", "3600", "0", "IANA"),
    ("g/l", "mass_concentration", "1", "0", "IANA"),
    ("mg/l", "mass_concentration", "1/1000", "0", "IANA"),
    ("ug/l", "mass_concentration", "1e-6", "0", "IANA"),
    # --- smartby extensions: unregistered, but plain SI multiples ---------------------------
    ("mg/m3", "mass_concentration", "1e-6", "0", "smartby"),
    ("MW", "power", "1000000", "0", "smartby"),
    ("MWh", "energy", "3600000000", "0", "smartby"),
    ("kPa", "pressure", "1000", "0", "smartby"),
)

_UNITS: Final[dict[str, _UnitDef]] = {
    symbol: _UnitDef(dimension, _f(scale), _f(offset))
    for symbol, dimension, scale, offset, _source in _TABLE
}

# Reference conditions for gaseous pollutants in EU air-quality law: Directive 2008/50/EC,
# Annex VI, point C ("the volume must be standardised at a temperature of 293 K and an
# atmospheric pressure of 101,3 kPa"); written out exactly as 20 °C and one standard atmosphere.
EU_REFERENCE_TEMPERATURE_K: Final = 293.15
EU_REFERENCE_PRESSURE_PA: Final = 101_325.0

# Molar gas constant R = N_A × k, exact since the 2019 SI redefinition.
_GAS_CONSTANT: Final = Fraction("6.02214076e23") * Fraction("1.380649e-23")

# Time integrals for RFC 8428 §4.2 sums ("in the unit specified in the Unit value multiplied
# by seconds"): rate unit -> (SenML unit of rate × s, factor). Only pairs with a registered
# symbol for the product are listed; anything else has no SenML name.
_INTEGRALS: Final[dict[str, tuple[str, float]]] = {
    "W": ("J", 1.0),
    "kW": ("J", 1000.0),
    "MW": ("J", 1_000_000.0),
    "VA": ("VAs", 1.0),
    "kVA": ("VAs", 1000.0),
    "var": ("vars", 1.0),
    "kvar": ("vars", 1000.0),
    "A": ("C", 1.0),
    "mA": ("C", 0.001),
    "m/s": ("m", 1.0),
    "km/h": ("m", 1 / 3.6),
    "m/h": ("m", 1 / 3600),
    "mm/h": ("mm", 1 / 3600),
    "m3/s": ("m3", 1.0),
    "l/s": ("l", 1.0),
    "1/s": ("count", 1.0),
    "1/min": ("count", 1 / 60),
    "bit/s": ("bit", 1.0),
    "Mbit/s": ("bit", 1_000_000.0),
    "B/s": ("B", 1.0),
    "MB/s": ("B", 1_000_000.0),
}


def is_known_unit(unit: str) -> bool:
    """Whether ``unit`` is a SenML symbol (or smartby extension) this module can convert."""
    return unit in _UNITS


def dimension_of(unit: str) -> str | None:
    """The dimension name of ``unit`` (e.g. ``"energy"``), or None when it is unknown."""
    definition = _UNITS.get(unit)
    return None if definition is None else definition.dimension


def integrated_unit(rate_unit: str) -> tuple[str, float] | None:
    """Unit and factor of a SenML Sum whose record carries ``rate_unit``.

    RFC 8428 §4.2: the Sum "is in the unit specified in the Unit value multiplied by seconds",
    so an energy meter reporting ``"u":"W"`` sends its register in W·s = J. Returns the
    registered symbol of that product and the factor that brings the sum to it (kW·s is
    1000 J), or None when the product has no SenML symbol (e.g. ``Cel`` × s).
    """
    return _INTEGRALS.get(rate_unit)


def _gas_factor(from_unit: str, to_unit: str, molar_mass: float | None) -> Fraction:
    """kg/m³ of a gas per unit of mixing ratio (mol/mol) at the EU reference conditions."""
    if molar_mass is None:
        raise UnitError(
            from_unit,
            to_unit,
            "a mixing ratio and a mass concentration need the gas's molar mass "
            "(molar_mass_g_per_mol)",
        )
    if not (math.isfinite(molar_mass) and molar_mass > 0):
        raise UnitError(from_unit, to_unit, f"molar mass must be positive, got {molar_mass!r}")
    # Ideal gas: n/V = p / (R T) mol of air per m³; times g/mol, times 1e-3 kg/g.
    moles_per_m3 = Fraction(EU_REFERENCE_PRESSURE_PA) / (
        _GAS_CONSTANT * Fraction(EU_REFERENCE_TEMPERATURE_K)
    )
    return moles_per_m3 * Fraction(molar_mass) / 1000


@lru_cache(maxsize=1024)
def conversion(
    from_unit: str, to_unit: str, molar_mass_g_per_mol: float | None = None
) -> tuple[float, float]:
    """``(scale, offset)`` such that ``value_in_to_unit = value × scale + offset``.

    A unit always converts to itself (even one not listed here); otherwise ``UnitError`` is
    raised when either unit is unknown or the two measure different things.
    A mixing ratio (``ppb``, ``ppm``, ``/``…) converts to a mass concentration (``ug/m3``…) and
    back only when ``molar_mass_g_per_mol`` is given, at the EU reference conditions of
    Directive 2008/50/EC (293.15 K, 101.325 kPa): 1 ppb of NO₂ (46.0055 g/mol) ≈ 1.91 µg/m³.
    """
    if from_unit == to_unit:
        return 1.0, 0.0
    source = _UNITS.get(from_unit)
    target = _UNITS.get(to_unit)
    if source is None:
        raise UnitError(from_unit, to_unit, f"{from_unit!r} is not a known SenML unit")
    if target is None:
        raise UnitError(from_unit, to_unit, f"{to_unit!r} is not a known SenML unit")

    # Bridge between dimensions: base of source -> base of target.
    bridge = Fraction(1)
    dimensions = (source.dimension, target.dimension)
    if dimensions == ("ratio", "mass_concentration"):
        bridge = _gas_factor(from_unit, to_unit, molar_mass_g_per_mol)
    elif dimensions == ("mass_concentration", "ratio"):
        bridge = 1 / _gas_factor(from_unit, to_unit, molar_mass_g_per_mol)
    elif source.dimension != target.dimension:
        raise UnitError(
            from_unit,
            to_unit,
            f"{from_unit!r} measures {source.dimension}, {to_unit!r} measures {target.dimension}",
        )

    # base = v × s_from + o_from;  target = (bridge × base − o_to) / s_to
    scale = source.scale * bridge / target.scale
    offset = (source.offset * bridge - target.offset) / target.scale
    return float(scale), float(offset)


@lru_cache(maxsize=1024)
def converter(
    from_unit: str, to_unit: str, molar_mass_g_per_mol: float | None = None
) -> Callable[[float], float]:
    """A one-argument function converting values from ``from_unit`` to ``to_unit``.

    Same rules and errors as ``conversion``; the identity and pure-scale cases get the
    cheapest possible function, since this runs once per reading.
    """
    scale, offset = conversion(from_unit, to_unit, molar_mass_g_per_mol)
    if scale == 1.0 and offset == 0.0:
        return float
    if offset == 0.0:
        return scale.__mul__

    def shift_and_scale(value: float) -> float:
        return value * scale + offset

    return shift_and_scale


def convert(
    value: float, from_unit: str, to_unit: str, molar_mass_g_per_mol: float | None = None
) -> float:
    """``value`` expressed in ``from_unit``, converted to ``to_unit`` (see ``conversion``)."""
    scale, offset = conversion(from_unit, to_unit, molar_mass_g_per_mol)
    return value * scale + offset


# ------------------------------------------------------------------- resolution
#
# What leaves the platform in files is rounded to the metric's resolution (issue 16):
# 12.3 rather than 12.299999999999999, and no digits the instrument never had.  One
# function does it, so every export format holds the very same number.


def resolution_decimals(resolution: float) -> int:
    """Decimal places that write every multiple of ``resolution`` exactly: 0.1 -> 1,
    0.25 -> 2, 5 -> 0 (at most 12)."""
    if not (math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"a resolution is a positive number, not {resolution!r}")
    for decimals in range(13):
        if math.isclose(round(resolution, decimals), resolution, rel_tol=1e-9, abs_tol=0):
            return decimals
    return 12


@lru_cache(maxsize=256)
def rounder(resolution: float | None) -> Callable[[float], float]:
    """A function rounding a value to the nearest multiple of ``resolution`` (ties to
    even, as `round` does), written with the decimals the resolution needs.  None: the
    value as it is.

    Dividing by the resolution first makes 0.5-steps and the like come out right, and
    rounding the product to the decimals removes the binary noise a multiplication
    leaves (3 * 0.1 = 0.30000000000000004)."""
    if resolution is None:
        return float
    decimals = resolution_decimals(resolution)

    def to_resolution(value: float) -> float:
        if not math.isfinite(value):
            return value
        # + 0.0: a negative value rounded to zero is 0.0, not "-0.0" in a file
        return round(round(value / resolution) * resolution, decimals) + 0.0

    return to_resolution
