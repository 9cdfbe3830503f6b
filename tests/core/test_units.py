"""A reading's SenML unit converts to its metric's canonical unit as RFC 8428/8798 define."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import units
from core.units import UnitError, conversion, convert, converter, integrated_unit

NO2_G_PER_MOL = 46.0055
CO_G_PER_MOL = 28.010


def test_canonical_unit_converts_to_itself_unchanged() -> None:
    """ug/m3 → ug/m3 is the identity, and its converter is the cheapest possible one."""
    assert conversion("ug/m3", "ug/m3") == (1.0, 0.0)
    assert converter("ug/m3", "ug/m3")(12.5) == 12.5


@pytest.mark.parametrize(
    ("value", "from_unit", "to_unit", "expected"),
    [
        (1.0, "kWh", "Wh", 1000.0),
        (1.0, "kWh", "J", 3_600_000.0),
        (3_600_000.0, "J", "kWh", 1.0),
        (250.0, "Wh", "kWh", 0.25),
        (7200.0, "J", "Wh", 2.0),
        (1.5, "kW", "W", 1500.0),
        (2.0, "MW", "kW", 2000.0),
    ],
)
def test_energy_and_power_scale_between_kwh_wh_j(
    value: float, from_unit: str, to_unit: str, expected: float
) -> None:
    """kWh = 3.6e6 J and Wh = 3600 J (RFC 8798 Table 2), so they convert by exact factors."""
    assert convert(value, from_unit, to_unit) == pytest.approx(expected, rel=1e-12)


def test_speed_converts_between_km_per_h_and_m_per_s() -> None:
    """km/h is 1/3.6 m/s (RFC 8798 Table 2) in both directions."""
    assert convert(36.0, "km/h", "m/s") == pytest.approx(10.0, rel=1e-12)
    assert convert(10.0, "m/s", "km/h") == pytest.approx(36.0, rel=1e-12)
    assert conversion("m/s", "km/h") == (3.6, 0.0)


def test_celsius_and_kelvin_differ_by_an_offset() -> None:
    """Cel → K adds 273.15 and K → Cel subtracts it: the one offset among SenML units."""
    assert conversion("Cel", "K") == (1.0, 273.15)
    assert convert(0.0, "K", "Cel") == pytest.approx(-273.15)
    assert converter("Cel", "K")(20.0) == pytest.approx(293.15)


def test_no2_ppb_converts_to_ug_per_m3_at_eu_reference_conditions() -> None:
    """1 ppb NO2 ≈ 1.91 µg/m³ at 293.15 K and 101.325 kPa (Directive 2008/50/EC)."""
    scale, offset = conversion("ppb", "ug/m3", NO2_G_PER_MOL)
    assert scale == pytest.approx(1.9125, abs=5e-4)
    assert offset == 0.0
    assert convert(1.0, "ppm", "ug/m3", NO2_G_PER_MOL) == pytest.approx(1000 * scale)
    # and back again
    assert convert(scale, "ug/m3", "ppb", NO2_G_PER_MOL) == pytest.approx(1.0)


def test_co_ppm_converts_to_mg_per_m3() -> None:
    """1 ppm CO ≈ 1.16 mg/m³ at 20 °C, the factor EU reporting uses."""
    assert convert(1.0, "ppm", "mg/m3", CO_G_PER_MOL) == pytest.approx(1.1644, abs=5e-4)


def test_gas_ratio_without_molar_mass_is_refused_naming_both_units() -> None:
    """A mixing ratio has no mass concentration until the gas is known."""
    with pytest.raises(UnitError) as caught:
        conversion("ppb", "ug/m3")
    message = str(caught.value)
    assert "'ppb'" in message
    assert "'ug/m3'" in message
    assert "molar mass" in message


@pytest.mark.parametrize("molar_mass", [0.0, -46.0, math.inf, math.nan])
def test_impossible_molar_mass_is_refused(molar_mass: float) -> None:
    """A molar mass must be a positive finite number of g/mol."""
    with pytest.raises(UnitError, match="molar mass"):
        conversion("ppb", "ug/m3", molar_mass)


@pytest.mark.parametrize(
    ("from_unit", "to_unit"),
    [("W", "kWh"), ("Cel", "%RH"), ("count", "/"), ("%RH", "/"), ("km/h", "m"), ("ug/m3", "hPa")],
)
def test_units_of_different_dimensions_do_not_convert(from_unit: str, to_unit: str) -> None:
    """Converting across dimensions raises UnitError, a ValueError naming both units."""
    with pytest.raises(UnitError) as caught:
        conversion(from_unit, to_unit)
    assert isinstance(caught.value, ValueError)
    assert caught.value.from_unit == from_unit
    assert caught.value.to_unit == to_unit
    assert repr(from_unit) in str(caught.value)
    assert repr(to_unit) in str(caught.value)


@pytest.mark.parametrize(("from_unit", "to_unit"), [("degF", "Cel"), ("Cel", "furlong"), ("", "W")])
def test_unknown_units_do_not_convert(from_unit: str, to_unit: str) -> None:
    """degF is not a SenML unit (RFC 8428 §12.1 item 8 rules it out), nor are made-up ones."""
    with pytest.raises(UnitError, match="not a known SenML unit"):
        conversion(from_unit, to_unit)


def test_percent_sign_is_a_ratio_not_a_percentage() -> None:
    """RFC 8428 §12.1 Note 2: "%" is the absolute ratio like "/"; "/100" is the percent."""
    assert convert(0.5, "%", "/") == 0.5
    assert convert(0.5, "%", "/100") == pytest.approx(50.0)


def test_pressure_converts_between_pa_hpa_kpa() -> None:
    """hPa = 100 Pa (RFC 8798); kPa is the SI multiple some sensors send."""
    assert convert(1013.25, "hPa", "Pa") == pytest.approx(101_325.0)
    assert convert(101.325, "kPa", "hPa") == pytest.approx(1013.25)


def test_dbm_is_dbw_offset_by_minus_30() -> None:
    """RFC 8798's own example: 10 dBm is -20 dBW (scale 1, offset -30)."""
    assert convert(10.0, "dBm", "dBW") == pytest.approx(-20.0)


def test_concentration_units_scale_to_ug_per_m3() -> None:
    """ug/m3 = 1e-9 kg/m3 (RFC 8798), so mg/m3 and kg/m3 scale by powers of ten."""
    assert convert(1.0, "mg/m3", "ug/m3") == pytest.approx(1000.0)
    assert convert(1e-9, "kg/m3", "ug/m3") == pytest.approx(1.0)


RFC_8798_SECONDARY_UNITS = [
    *("ms", "min", "h", "MHz", "kW", "kVA", "kvar", "Ah", "Wh", "kWh", "varh", "kvarh"),
    *("kVAh", "Wh/km", "KiB", "GB", "Mbit/s", "B/s", "MB/s", "mV", "mA", "dBm", "ug/m3"),
    *("mm/h", "m/h", "ppm", "/100", "/1000", "hPa", "mm", "cm", "km", "km/h"),
]


@pytest.mark.parametrize("unit", RFC_8798_SECONDARY_UNITS)
def test_every_rfc_8798_secondary_unit_is_known(unit: str) -> None:
    """Each secondary unit of RFC 8798 Table 2 converts to the primary unit it is defined on."""
    assert units.is_known_unit(unit)
    assert units.dimension_of(unit) is not None


def test_converter_is_cached_per_unit_pair() -> None:
    """The hot path gets the same converter object back instead of rebuilding it."""
    assert converter("km/h", "m/s") is converter("km/h", "m/s")


def test_sum_of_power_is_energy() -> None:
    """RFC 8428 §4.2: a Sum is in unit × s, so W sums are J and kW sums are 1000 J."""
    assert integrated_unit("W") == ("J", 1.0)
    assert integrated_unit("kW") == ("J", 1000.0)
    assert integrated_unit("Cel") is None
    assert integrated_unit("kWh") is None


_LINEAR_UNITS = sorted(
    unit
    for unit in ("J", "Wh", "kWh", "W", "kW", "m/s", "km/h", "Pa", "hPa", "kPa", "K", "Cel")
    if units.is_known_unit(unit)
)


@given(
    value=st.floats(min_value=-1e9, max_value=1e9),
    pair=st.tuples(st.sampled_from(_LINEAR_UNITS), st.sampled_from(_LINEAR_UNITS)),
)
def test_conversion_round_trips_within_a_dimension(value: float, pair: tuple[str, str]) -> None:
    """Any convertible pair converts there and back to the starting value."""
    first, second = pair
    if units.dimension_of(first) != units.dimension_of(second):
        with pytest.raises(UnitError):
            conversion(first, second)
        return
    there = convert(value, first, second)
    assert convert(there, second, first) == pytest.approx(value, rel=1e-9, abs=1e-6)
