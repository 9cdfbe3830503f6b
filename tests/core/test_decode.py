"""One MQTT telemetry payload (SenML JSON, SenML CBOR or a plain JSON object) decodes into
the readings and rejected records that RFC 8428 and DESIGN.md's MQTT contract call for."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import cbor2
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.decode import (
    DETAIL_CHARS,
    DecodeError,
    DecodeResult,
    Reading,
    RejectedRecord,
    decode,
    metric_key,
)

NOW = 1_700_000_000.0

# --- RFC 8428 §5.1 examples, verbatim -------------------------------------------------------

RFC_5_1_1 = b"""[
     {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
   ]"""

RFC_5_1_2_NOW = b"""[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]"""

RFC_5_1_2_TIMED = b"""[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]"""

# The SensML stream example of §5.1.2, which the RFC cuts off with "..."; closed here.
RFC_5_1_2_STREAM = b"""[
     {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
      "bu":"%RH","v":21.2},
     {"t":10,"v":21.3},
     {"t":20,"v":21.4},
     {"t":30,"v":21.4},
     {"t":40,"v":21.5},
     {"t":50,"v":21.5},
     {"t":60,"v":21.5},
     {"t":70,"v":21.6},
     {"t":80,"v":21.7}
   ]"""

RFC_5_1_3 = b"""[
     {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
      "bu":"%RH","v":20},
     {"u":"lon","v":24.30621},
     {"u":"lat","v":60.07965},
     {"t":60,"v":20.3},
     {"u":"lon","t":60,"v":24.30622},
     {"u":"lat","t":60,"v":60.07965},
     {"t":120,"v":20.7},
     {"u":"lon","t":120,"v":24.30623},
     {"u":"lat","t":120,"v":60.07966},
     {"u":"%EL","t":150,"v":98},
     {"t":180,"v":21.2},
     {"u":"lon","t":180,"v":24.30628},
     {"u":"lat","t":180,"v":60.07967}
   ]"""

RFC_5_1_4 = b"""[
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,
      "v":20},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,
      "v":24.30621},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,
      "v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,
      "v":20.3},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,
      "v":24.30622},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,
      "v":60.07965},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,
      "v":20.7},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,
      "v":24.30623},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,
      "v":60.07966},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,
      "v":98},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,
      "v":21.2},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,
      "v":24.30628},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,
      "v":60.07967}
   ]"""

RFC_5_1_5 = b"""[
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}
  ]"""

RFC_5_1_6 = b"""[
     {"bn":"2001:db8::2/","bt":1.320078429e+09,
      "n":"temperature","u":"Cel","v":25.2},
     {"n":"humidity","u":"%RH","v":30},
     {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
     {"n":"humidity","u":"%RH","v":67}
   ]"""

RFC_5_1_7_THERMOSTAT = b"""[
     {"bn":"urn:dev:ow:10e2073a01080063:"},
     {"n":"temp","u":"Cel","v":23.1},
     {"n":"heat","u":"/","v":1},
     {"n":"fan","u":"/","v":0}
   ]"""

RFC_5_1_7_LIGHTS_ON = b"""[
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":1},
     {"n":"2001:db8::4","v":1}
   ]"""

RFC_5_1_7_LIGHTS_OFF = b"""[
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
     {"n":"2001:db8::4","v":0.5},
     {"n":"2001:db8::3","t":0.1,"v":0},
     {"n":"2001:db8::4","t":0.1,"v":0}
   ]"""

# RFC 8428 §6: the hex dump of the §5.1.2 timed example in CBOR.
RFC_6_CBOR = bytes.fromhex(
    "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a"
    "22fb41d303a15b00106223614120050067766f6c7461676501615602fb405e06"
    "6666666666a3006763757272656e74062402fb3ff3333333333333a300676375"
    "7272656e74062302fb3ff4cccccccccccda3006763757272656e74062202fb3f"
    "f6666666666666a3006763757272656e74062102f93e00a3006763757272656e"
    "74062002fb3ff999999999999aa3006763757272656e74060002fb3ffb333333"
    "333333"
)


def readings_of(payload: bytes, now: float = NOW) -> list[tuple[str, float, float, str | None]]:
    """(name, time, value, unit) of each reading, the fields the RFC examples pin down."""
    result = decode(payload, now)
    return [(r.name, r.time, r.value, r.unit) for r in result.readings]


def reasons_of(result: DecodeResult) -> list[str]:
    return [rejected.reason for rejected in result.rejected]


def decode_error(payload: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(payload, NOW)
    return caught.value


def test_rfc_5_1_1_single_datapoint_is_a_reading_taken_now() -> None:
    """§5.1.1: one record, no time, so the reading is stamped "now" (§4.5.3)."""
    result = decode(RFC_5_1_1, NOW)
    assert result.form == "senml+json"
    assert result.readings == [Reading("urn:dev:ow:10e2073a01080063", NOW, 23.1, "Cel", False)]
    assert result.rejected == []


def test_rfc_5_1_2_base_name_prefixes_each_name() -> None:
    """§5.1.2 first example: bn + n gives each name; both readings are "now"."""
    assert readings_of(RFC_5_1_2_NOW) == [
        ("urn:dev:ow:10e2073a01080063:voltage", NOW, 120.1, "V"),
        ("urn:dev:ow:10e2073a01080063:current", NOW, 1.2, "A"),
    ]


def test_rfc_5_1_2_base_time_and_base_unit_carry_to_later_records() -> None:
    """§5.1.2 second example: current at 18:01:16.001 UTC 2010 and the 5 seconds before."""
    name = "urn:dev:ow:10e2073a0108006:"
    base = 1.276020076001e09
    expected = [(name + "voltage", base, 120.1, "V")] + [
        (name + "current", base + offset, value, "A")
        for offset, value in ((-5, 1.2), (-4, 1.3), (-3, 1.4), (-2, 1.5), (-1, 1.6), (0, 1.7))
    ]
    assert readings_of(RFC_5_1_2_TIMED) == expected


def test_rfc_5_1_2_sensml_stream_records_count_from_base_time() -> None:
    """§5.1.2 SensML example (as far as the RFC prints it): bn names every record, t adds."""
    base = 1.320067464e09
    values = (21.2, 21.3, 21.4, 21.4, 21.5, 21.5, 21.5, 21.6, 21.7)
    assert readings_of(RFC_5_1_2_STREAM) == [
        ("urn:dev:ow:10e2073a01080063", base + 10 * i, value, "%RH")
        for i, value in enumerate(values)
    ]


def test_rfc_5_1_3_resolves_to_the_rfc_5_1_4_resolved_data() -> None:
    """§5.1.4 is §5.1.3 in resolved form, so both decode to the same thirteen readings."""
    resolved = readings_of(RFC_5_1_4)
    assert readings_of(RFC_5_1_3) == resolved
    assert len(resolved) == 13
    assert resolved[9] == ("urn:dev:ow:10e2073a01080063", 1.320067614e09, 98.0, "%EL")
    assert [unit for _, _, _, unit in resolved[:3]] == ["%RH", "lon", "lat"]


def test_rfc_5_1_5_non_numeric_values_are_decoded_and_rejected() -> None:
    """§5.1.5: vs, vb and vd records are valid SenML but go to quarantine as non_numeric."""
    result = decode(RFC_5_1_5, NOW)
    assert result.readings == [Reading("urn:dev:ow:10e2073a01080063:temp", NOW, 23.1, "Cel", False)]
    assert [(r.position, r.name, r.reason) for r in result.rejected] == [
        (1, "urn:dev:ow:10e2073a01080063:label", "non_numeric"),
        (2, "urn:dev:ow:10e2073a01080063:open", "non_numeric"),
        (3, "urn:dev:ow:10e2073a01080063:nfv-reader", "non_numeric"),
    ]
    assert "Machine Room" in result.rejected[0].detail


def test_rfc_5_1_6_new_base_name_keeps_earlier_base_time() -> None:
    """§5.1.6: the last record uses the third record's bn and the first record's bt."""
    base = 1.320078429e09
    assert readings_of(RFC_5_1_6) == [
        ("2001:db8::2/temperature", base, 25.2, "Cel"),
        ("2001:db8::2/humidity", base, 30.0, "%RH"),
        ("2001:db8::1/temperature", base, 12.3, "Cel"),
        ("2001:db8::1/humidity", base, 67.0, "%RH"),
    ]


def test_rfc_5_1_7_base_only_record_sets_context_without_a_reading() -> None:
    """§5.1.7 thermostat: the first record holds only bn; it yields neither reading nor reject."""
    result = decode(RFC_5_1_7_THERMOSTAT, NOW)
    prefix = "urn:dev:ow:10e2073a01080063:"
    assert [(r.name, r.time, r.value, r.unit) for r in result.readings] == [
        (prefix + "temp", NOW, 23.1, "Cel"),
        (prefix + "heat", NOW, 1.0, "/"),
        (prefix + "fan", NOW, 0.0, "/"),
    ]
    assert result.rejected == []


def test_rfc_5_1_7_lights_use_base_time_and_base_unit() -> None:
    """§5.1.7 lights: bt and bu apply to both records; t=0.1 is 100 ms after bt."""
    base = 1.320078429e09
    assert readings_of(RFC_5_1_7_LIGHTS_ON) == [
        ("2001:db8::3", base, 1.0, "/"),
        ("2001:db8::4", base, 1.0, "/"),
    ]
    assert readings_of(RFC_5_1_7_LIGHTS_OFF) == [
        ("2001:db8::3", base, 0.5, "/"),
        ("2001:db8::4", base, 0.5, "/"),
        ("2001:db8::3", base + 0.1, 0.0, "/"),
        ("2001:db8::4", base + 0.1, 0.0, "/"),
    ]


def test_rfc_6_cbor_example_decodes_like_its_json_twin() -> None:
    """§6: the CBOR hex dump of the §5.1.2 example gives the same readings as the JSON."""
    result = decode(RFC_6_CBOR, NOW)
    assert result.form == "senml+cbor"
    assert len(RFC_6_CBOR) == 0xC3  # the dump's length
    assert readings_of(RFC_6_CBOR) == readings_of(RFC_5_1_2_TIMED)


def test_cbor_integer_labels_cover_every_field() -> None:
    """Every CBOR label of RFC 8428 Table 4 means what its JSON twin means."""
    pack = [
        {-1: 10, -2: "dev/", -3: 1.7e9, -4: "W", -5: 100.0, -6: 1000.0, 0: "p", 2: 5.0, 7: 60},
        {0: "q", 1: "kW", 2: 1.5, 5: 2.0, 6: 10},
        {0: "r", 3: "text"},
        {0: "s", 4: True},
        {0: "t", 8: b"\x00\x01"},
    ]
    result = decode(cbor2.dumps(pack), NOW)
    assert [(r.name, r.time, r.value, r.unit, r.is_sum) for r in result.readings] == [
        ("dev/p", 1.7e9, 105.0, "W", False),
        ("dev/p", 1.7e9, 1000.0, "J", True),
        ("dev/q", 1.7e9 + 10, 101.5, "kW", False),
        ("dev/q", 1.7e9 + 10, 1_002_000.0, "J", True),
        # records r, s, t still carry the base sum (§4.5.4), in W·s = J
        ("dev/r", 1.7e9, 1000.0, "J", True),
        ("dev/s", 1.7e9, 1000.0, "J", True),
        ("dev/t", 1.7e9, 1000.0, "J", True),
    ]
    assert reasons_of(result) == ["non_numeric"] * 3


def test_cbor_decimal_fraction_and_bignum_are_numbers() -> None:
    """RFC 8428 §6 allows decimal fractions (Tag 4); CBOR bignums are integers too."""
    pack = cbor2.loads(
        cbor2.dumps([{0: "a", 2: 0}, {0: "b", 2: 0}])
    )  # build the maps, then splice in tagged values
    pack[0][2] = cbor2.CBORTag(4, [-1, 215])  # 21.5
    pack[1][2] = 2**64  # encoded as Tag 2
    result = decode(cbor2.dumps(pack), NOW)
    assert [(r.name, r.value) for r in result.readings] == [("a", 21.5), ("b", float(2**64))]


def test_plain_json_with_iso_time_gives_one_reading_per_member() -> None:
    """Plain form: "time" in ISO 8601 with an offset, every other member a metric."""
    result = decode(b'{"time":"2025-10-09T10:53:20.25+02:00","pm25":7.4,"no2":21}', NOW)
    assert result.form == "json"
    assert result.readings == [
        Reading("pm25", 1_760_000_000.25, 7.4, None, False),
        Reading("no2", 1_760_000_000.25, 21.0, None, False),
    ]


@pytest.mark.parametrize("stamp", [b"1760000000", b"1760000000.0", b'"2025-10-09T08:53:20Z"'])
def test_plain_json_accepts_epoch_seconds_and_utc_iso_time(stamp: bytes) -> None:
    """Epoch seconds (int or float) and ISO 8601 with Z denote the same instant."""
    assert readings_of(b'{"time":' + stamp + b',"pm10":13}') == [
        ("pm10", 1_760_000_000.0, 13.0, None)
    ]


def test_plain_json_without_time_is_stamped_now() -> None:
    """A plain object with no "time" was measured now."""
    assert readings_of(b'{"temperature":-3.5}') == [("temperature", NOW, -3.5, None)]


def test_plain_json_non_numbers_are_rejected_but_numbers_still_land() -> None:
    """A string or boolean member is quarantined as non_numeric; booleans are not 1/0."""
    result = decode(b'{"pm25":7.4,"status":"ok","door":true,"x":null,"list":[1]}', NOW)
    assert [r.name for r in result.readings] == ["pm25"]
    assert [(r.name, r.reason) for r in result.rejected] == [
        ("status", "non_numeric"),
        ("door", "non_numeric"),
        ("x", "non_numeric"),
        ("list", "non_numeric"),
    ]


def test_plain_json_member_with_bad_name_is_rejected() -> None:
    """Metric keys follow the RFC 8428 §4.5.1 name rules too."""
    result = decode(b'{"pm 2.5":7.4,"pm25":7.4}', NOW)
    assert reasons_of(result) == ["bad_name"]
    assert [r.name for r in result.readings] == ["pm25"]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"time":"2025-10-09T08:53:20","pm25":1}',  # no offset: zone unknown
        b'{"time":"yesterday","pm25":1}',
        b'{"time":true,"pm25":1}',
        b'{"time":null,"pm25":1}',
        b'{"time":[1760000000],"pm25":1}',
    ],
)
def test_plain_json_with_unusable_time_is_refused_whole(payload: bytes) -> None:
    """Every member shares the one time, so a bad or zone-less time rejects the message."""
    assert decode_error(payload).reason == "bad_time"


@pytest.mark.parametrize("payload", [b"{}", b'{"time":1760000000}'])
def test_plain_json_without_metrics_is_empty(payload: bytes) -> None:
    """An object with nothing but (at most) a time holds no reading."""
    assert decode_error(payload).reason == "empty"


def test_relative_time_counts_from_now() -> None:
    """§4.5.3: bt + t below 2**28 is relative to now, also when bt itself is negative."""
    payload = b'[{"bn":"d/","bt":-60,"n":"a","t":10,"v":1},{"n":"b","v":2},{"n":"c","t":-5,"v":3}]'
    assert [r[1] for r in readings_of(payload)] == [NOW - 50, NOW - 60, NOW - 65]


def test_time_of_2_pow_28_is_absolute_and_just_below_is_relative() -> None:
    """§4.5.3: values >= 2**28 are absolute Unix times; 2**28 - 1 is still relative."""
    absolute = readings_of(b'[{"n":"a","t":268435456,"v":1}]')
    relative = readings_of(b'[{"n":"a","t":268435455,"v":1}]')
    assert absolute[0][1] == 2.0**28
    assert relative[0][1] == NOW + 2**28 - 1


@pytest.mark.parametrize(
    ("payload", "anchored"),
    [
        (b'{"pm25":1}', True),
        (b'{"time":1760000000,"pm25":1}', False),
        (b'{"time":"2025-10-09T08:53:20Z","pm25":1}', False),
        (b'[{"n":"a","v":1}]', True),
        (b'[{"n":"a","t":-5,"v":1}]', True),
        (b'[{"bt":1760000000,"n":"a","v":1},{"n":"b","t":10,"v":2}]', False),
        (b'[{"bt":1760000000,"n":"a","v":1},{"bt":0,"n":"b","v":2}]', True),
        (cbor2.dumps([{0: "a", 2: 1.0}]), True),
        (cbor2.dumps([{0: "a", 6: 1_760_000_000, 2: 1.0}]), False),
    ],
)
def test_a_payload_whose_times_count_from_now_is_anchored(payload: bytes, anchored: bool) -> None:
    """A payload with no time, or a SenML time below 2**28, has times that depend on when
    it was received (ingest keeps them across redelivery)."""
    assert decode(payload, NOW).anchored is anchored


def test_now_defaults_to_the_current_time() -> None:
    """Without ``now`` a relative time is anchored on the wall clock."""
    import time

    before = time.time()
    reading = decode(b'[{"n":"a","v":1}]').readings[0]
    assert before <= reading.time <= time.time()


def test_base_value_is_added_to_value() -> None:
    """§4.5.4: value = bv + v, the base value carrying forward."""
    payload = b'[{"bn":"d/","bv":100,"n":"a","v":1.5},{"n":"b","v":-1}]'
    assert [r[2] for r in readings_of(payload)] == [101.5, 99.0]


def test_unit_overrides_base_unit_for_its_record_only() -> None:
    """§4.5.2: u wins over bu in its own record; later records fall back to bu."""
    payload = b'[{"bn":"d/","bu":"Cel","n":"a","v":1,"u":"K"},{"n":"b","v":2}]'
    assert [r[3] for r in readings_of(payload)] == ["K", "Cel"]


def test_reading_without_any_unit_has_none() -> None:
    """§4.5.2: no u and no bu is allowed; the unit comes from context (the catalogue)."""
    assert readings_of(b'[{"n":"a","v":1}]') == [("a", NOW, 1.0, None)]


def test_sum_of_a_power_record_is_an_energy_register_in_joules() -> None:
    """§4.2 and §10: a meter puts energy in "s" with u = W, i.e. the sum is in W·s = J."""
    result = decode(b'[{"n":"meter/energy","u":"W","s":3600000}]', NOW)
    assert result.readings == [Reading("meter/energy", NOW, 3_600_000.0, "J", True)]


def test_record_with_value_and_sum_gives_two_readings() -> None:
    """§4.2: a Value and a Sum may share a record (current power and energy register)."""
    result = decode(b'[{"n":"m/p","u":"kW","v":2.5,"bs":10,"s":0.5}]', NOW)
    assert [(r.value, r.unit, r.is_sum) for r in result.readings] == [
        (2.5, "kW", False),
        (10_500.0, "J", True),  # (bs + s) kW·s
    ]


def test_base_sum_makes_later_records_carry_a_sum() -> None:
    """§4.5.4: with only a Base Sum present, the Sum counts as zero and the record has one."""
    result = decode(b'[{"bn":"m/","bs":7,"n":"e","s":1},{"n":"e"}]', NOW)
    assert [(r.value, r.is_sum) for r in result.readings] == [(8.0, True), (7.0, True)]
    assert result.readings[0].unit is None


def test_sum_whose_unit_times_seconds_has_no_senml_unit_is_rejected() -> None:
    """A Sum in kWh would be in kWh·s (§4.2), which no registry names."""
    result = decode(b'[{"n":"m/e","u":"kWh","s":1234.5},{"n":"m/t","u":"Cel","v":3}]', NOW)
    assert reasons_of(result) == ["unsupported_sum_unit"]
    assert [r.name for r in result.readings] == ["m/t"]


def test_unknown_label_is_ignored() -> None:
    """§4.4: implementations MUST ignore fields they don't recognize."""
    assert readings_of(b'[{"n":"a","v":1,"foo":2,"bfoo":"x"}]') == [("a", NOW, 1.0, None)]


@pytest.mark.parametrize(
    "payload",
    [
        b'[{"n":"a","v":1,"foo_":2}]',
        b'[{"n":"a","v":1},{"n":"b","v":2},{"n":"c","v":3,"bfoo_":true}]',  # in a later record
        b'[{"bn":"a","foo_":null}]',
    ],
)
def test_unknown_must_understand_label_invalidates_the_whole_pack(payload: bytes) -> None:
    """§4.4: an unrecognised label ending in "_" MUST produce an error, for the whole pack."""
    error = decode_error(payload)
    assert error.reason == "must_understand"
    assert "_" in error.detail


def test_must_understand_applies_to_cbor_string_labels() -> None:
    """§6: extensions use string map keys in CBOR, and "_" still means must understand."""
    assert decode_error(cbor2.dumps([{0: "a", 2: 1.0, "x_": 1}])).reason == "must_understand"


@pytest.mark.parametrize("version", [b"1", b"5", b"10"])
def test_known_versions_are_accepted(version: bytes) -> None:
    """§4.4: versions up to 10 (the default, §4.1) are understood."""
    assert len(decode(b'[{"bver":' + version + b',"n":"a","v":1}]', NOW).readings) == 1


@pytest.mark.parametrize(
    "payload",
    [
        b'[{"bver":11,"n":"a","v":1}]',  # newer than understood
        b'[{"bver":"10","n":"a","v":1}]',
        b'[{"bver":10.5,"n":"a","v":1}]',
        b'[{"bver":true,"n":"a","v":1}]',
        b'[{"bver":0,"n":"a","v":1}]',
        b'[{"bver":5,"n":"a","v":1},{"bver":6,"n":"b","v":1}]',  # versions differ
        b'[{"n":"a","v":1},{"bver":5,"n":"b","v":1}]',  # default 10, then 5
        b'[{"n":"a","v":1},{"bver":11,"n":"b","v":1}]',
    ],
)
def test_bad_or_inconsistent_version_rejects_the_pack(payload: bytes) -> None:
    """§4.4: a newer version MUST NOT be used, and all records of a pack share one version."""
    assert decode_error(payload).reason == "bad_version"


def test_cbor_bver_must_be_an_unsigned_integer() -> None:
    """§6: "For the version number, only an unsigned integer is allowed"."""
    assert decode_error(cbor2.dumps([{-1: 10.0, 0: "a", 2: 1.0}])).reason == "bad_version"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"n": "a"}, "no_value"),
        ({"n": "a", "u": "W", "t": -1}, "no_value"),
        ({"n": "a", "v": 1, "vs": "x"}, "multiple_values"),
        ({"n": "a", "vs": "x", "vb": True}, "multiple_values"),
        ({"n": "a", "v": "12"}, "bad_value"),
        ({"n": "a", "v": True}, "bad_value"),
        ({"n": "a", "v": None}, "bad_value"),
        ({"n": "a", "vb": "yes"}, "bad_value"),
        ({"n": "a", "vd": 5}, "bad_value"),
        ({"n": "a", "s": "1"}, "bad_value"),
        ({"n": "a", "vs": "on"}, "non_numeric"),
        ({"n": "a", "vb": False}, "non_numeric"),
        ({"n": "a", "vd": "aGkgCg"}, "non_numeric"),
        ({"n": "a", "v": 1, "t": "now"}, "bad_time"),
        ({"n": "a", "v": 1, "t": False}, "bad_time"),
        ({"n": "a", "v": 1, "u": 5}, "bad_unit"),
        ({"n": 5, "v": 1}, "bad_name"),
        ({"n": "", "v": 1}, "bad_name"),
        ({"n": "-a", "v": 1}, "bad_name"),
        ({"n": "a b", "v": 1}, "bad_name"),
        ({"n": "pm2,5", "v": 1}, "bad_name"),
        ({"n": "måler", "v": 1}, "bad_name"),
        ({"n": "a", "v": 1e308, "bv": 1e308}, "non_finite"),
    ],
)
def test_each_record_level_problem_has_its_reason(record: dict[str, Any], reason: str) -> None:
    """A faulty record is rejected with a machine-readable reason; its neighbours still land."""
    pack = [{"n": "ok", "v": 1.0}, record, {"n": "ok2", "v": 2.0}]
    result = decode(orjson.dumps(pack), NOW)
    assert reasons_of(result) == [reason]
    assert result.rejected[0].position == 1
    assert [r.name for r in result.readings] == ["ok", "ok2"]


def test_non_object_record_is_rejected_alone() -> None:
    """An array element that is not a map is no SenML record; the rest still decode."""
    result = decode(b'[{"n":"a","v":1},42,"x",[1]]', NOW)
    assert reasons_of(result) == ["bad_record"] * 3
    assert len(result.readings) == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.nan, "non_finite"),
        (math.inf, "non_finite"),
        (-math.inf, "non_finite"),
        (10**400, "non_finite"),  # a bignum beyond any double
    ],
)
def test_non_finite_cbor_values_are_rejected(value: float, reason: str) -> None:
    """CBOR, unlike JSON, can carry NaN, infinities and huge integers."""
    result = decode(cbor2.dumps([{0: "a", 2: value}, {0: "b", 2: 1.0}]), NOW)
    assert reasons_of(result) == [reason]
    assert [r.name for r in result.readings] == ["b"]


def test_non_finite_cbor_time_is_bad_time() -> None:
    """A NaN time cannot be placed on the time axis."""
    result = decode(cbor2.dumps([{0: "a", 2: 1.0, 6: math.nan}]), NOW)
    assert reasons_of(result) == ["bad_time"]


@pytest.mark.parametrize(
    "pack",
    [
        [{"bn": 5, "n": "a", "v": 1}],
        [{"bu": ["W"], "n": "a", "v": 1}],
        [{"bt": "2024-01-01", "n": "a", "v": 1}],
        [{"bv": True, "n": "a", "v": 1}],
        [{"bs": "0", "n": "a", "s": 1}],
    ],
)
def test_malformed_base_field_rejects_the_pack(pack: list[dict[str, Any]]) -> None:
    """A base field reaches every later record, so a malformed one spoils the pack."""
    assert decode_error(orjson.dumps(pack)).reason == "bad_base"


def test_non_finite_cbor_base_time_rejects_the_pack() -> None:
    """An infinite Base Time would misplace every later record."""
    assert decode_error(cbor2.dumps([{-3: math.inf, 0: "a", 2: 1.0}])).reason == "bad_base"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"[]", "empty"),
        (cbor2.dumps([]), "empty"),
        (b"42", "bad_structure"),
        (b'"pm25"', "bad_structure"),
        (b"null", "bad_structure"),
        (cbor2.dumps({0: "a", 2: 1.0}), "bad_structure"),  # a CBOR map, not an array
        (b"\xff\xfe\xfd", "undecodable"),
        (b'[{"n":"a","v":1}', "undecodable"),  # truncated JSON
        (cbor2.dumps([{0: "a", 2: 1.0}]) + b"\x00", "undecodable"),  # trailing bytes
        (b"\xa2\x00\x61a\x00\x61b", "duplicate_key"),  # CBOR map with a duplicate key
        (b"\x81\xa2\x02\x01\x02\x02", "duplicate_key"),  # SenML CBOR record with two v
    ],
)
def test_each_payload_level_problem_raises_decode_error(payload: bytes, reason: str) -> None:
    """Payloads that cannot be decoded at all raise DecodeError(reason, detail)."""
    error = decode_error(payload)
    assert error.reason == reason
    assert error.detail


def test_error_details_never_carry_the_whole_payload() -> None:
    """Details are cut short: quarantine keeps the payload, logs must not repeat it."""
    long_text = "x" * 10_000
    result = decode(orjson.dumps([{"n": "a", "vs": long_text}]), NOW)
    assert len(result.rejected[0].detail) < 2 * DETAIL_CHARS
    error = decode_error(b"\xff" * 10_000)
    assert len(error.detail) <= DETAIL_CHARS
    error = decode_error(orjson.dumps([{"n": "a", "v": 1, "y" * 5000 + "_": 1}]))
    assert len(error.detail) < 2 * DETAIL_CHARS


def test_reading_and_rejected_record_expose_named_fields() -> None:
    """Callers read results by field name, never by position."""
    result = decode(b'[{"n":"a","v":1,"u":"W"},{"n":"b","vs":"x"}]', NOW)
    reading, rejected = result.readings[0], result.rejected[0]
    assert (reading.name, reading.time, reading.value, reading.unit, reading.is_sum) == (
        "a",
        NOW,
        1.0,
        "W",
        False,
    )
    assert isinstance(rejected, RejectedRecord)
    assert (rejected.position, rejected.name, rejected.reason) == (1, "b", "non_numeric")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("urn:dev:mac:0024befffe804ff1:pm25", "pm25"),
        ("narvik-aq-01/no2", "no2"),
        ("narvik-aq-01/NO2", "no2"),
        ("2001:db8::2/temperature", "temperature"),
        ("pm10", "pm10"),
        ("urn:dev:ow:10e2073a01080063", "10e2073a01080063"),
    ],
)
def test_metric_key_is_the_lowercased_last_name_segment(name: str, key: str) -> None:
    """The device comes from the topic, so only the part after the last ':' or '/' counts."""
    assert metric_key(name) == key


# --- properties -----------------------------------------------------------------------------

_NAME_RULE = re.compile(r"[A-Za-z0-9][-:./_A-Za-z0-9]*")
_JSON_LABELS = (
    "bver",
    "bn",
    "bt",
    "bu",
    "bv",
    "bs",
    "n",
    "u",
    "v",
    "vs",
    "vb",
    "vd",
    "s",
    "t",
    "ut",
)
_CBOR_LABEL = dict(
    zip(_JSON_LABELS, (-1, -2, -3, -4, -5, -6, 0, 1, 2, 3, 4, 8, 5, 6, 7), strict=True)
)
_EXTRA_LABELS = ("foo", "bfoo", "x_", "bx_", "")

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "urn:dev:ow:", "temp", "Cel", "W", "kWh", "a b", "-x", "aGkgCg"]),
    st.text(max_size=8),
)
_cbor_scalars = st.one_of(
    _json_scalars,
    st.floats(),  # NaN and infinities
    st.integers(),  # bignums
    st.binary(max_size=8),
    st.decimals(allow_nan=True),
)


def _records(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Packs of records drawn from the real labels, some extras, and right and wrong types."""
    values = st.one_of(scalars, st.lists(scalars, max_size=2))
    record = st.dictionaries(st.sampled_from(_JSON_LABELS + _EXTRA_LABELS), values, max_size=6)
    return st.lists(st.one_of(record, scalars), max_size=6)


def _as_cbor(pack: list[Any]) -> bytes:
    return cbor2.dumps(
        [
            {_CBOR_LABEL.get(k, k): v for k, v in record.items()}
            if isinstance(record, dict)
            else record
            for record in pack
        ]
    )


def _check_result(result: DecodeResult) -> None:
    for reading in result.readings:
        assert type(reading.value) is float
        assert math.isfinite(reading.value)
        assert type(reading.time) is float
        assert math.isfinite(reading.time)
        assert type(reading.is_sum) is bool
        assert reading.unit is None or type(reading.unit) is str
        assert _NAME_RULE.fullmatch(reading.name)
    for rejected in result.rejected:
        assert re.fullmatch(r"[a-z_]+", rejected.reason)


def _decode_checked(payload: bytes) -> None:
    """Decode, allowing only DecodeError, and that never for a decoder bug."""
    error: DecodeError | None = None
    try:
        result = decode(payload, NOW)
    except DecodeError as caught:
        error = caught
    if error is None:
        _check_result(result)
        return
    assert error.reason != "internal_error", error.detail
    assert re.fullmatch(r"[a-z_]+", error.reason)
    assert len(error.detail) < 4 * DETAIL_CHARS


@given(st.binary(max_size=256))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_raise_anything_but_decode_error(payload: bytes) -> None:
    """Any bytes at all either decode or raise DecodeError with a real reason."""
    _decode_checked(payload)


@given(_records(_json_scalars))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_almost_valid_senml_json_never_raises_anything_but_decode_error(pack: list[Any]) -> None:
    """Records mixing real labels with wrong types, encoded as JSON, never crash the decoder."""
    _decode_checked(json.dumps(pack).encode())


@given(_records(_cbor_scalars))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_almost_valid_senml_cbor_never_raises_anything_but_decode_error(pack: list[Any]) -> None:
    """The same, with CBOR integer labels, NaN, infinities, bignums, bytes and decimals."""
    _decode_checked(_as_cbor(pack))


@given(st.dictionaries(st.sampled_from(["time", "pm25", "no2", "x y", "t_"]), _json_scalars))
@settings(max_examples=200)
def test_almost_valid_plain_json_never_raises_anything_but_decode_error(
    document: dict[str, Any],
) -> None:
    """Plain objects with arbitrary member types never crash the decoder either."""
    _decode_checked(json.dumps(document).encode())


_shared_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from(["urn:dev:ow:", "temp", "Cel", "W", "a b"]),
)


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(tuple(label for label in _JSON_LABELS if label != "vd")),
            _shared_scalars,
            max_size=6,
        ),
        min_size=1,
        max_size=5,
    )
)
@settings(max_examples=300)
def test_json_and_cbor_encodings_of_a_pack_decode_alike(pack: list[dict[str, Any]]) -> None:
    """RFC 8428 §6: the CBOR representation is equivalent to the JSON one."""
    outcomes: list[object] = []
    for payload in (orjson.dumps(pack), _as_cbor(pack)):
        try:
            result = decode(payload, NOW)
        except DecodeError as error:
            outcomes.append(error.reason)
        else:
            outcomes.append((result.readings, reasons_of(result)))
    assert outcomes[0] == outcomes[1]


# --- duplicate keys (RFC 8259 §4) -------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b'{"pm25": 1, "pm25": 2}',
        b'{"pm25": 1, "pm25": 1}',  # the same value twice is still a device bug
        b'{"pm25" : 1, "pm25" : 2}',  # whitespace before the colon
        b'{"pm25"\n:1,"pm25"\t:2}',
        b'{"pm25":1,"pm\\u0032\\u0035":2}',  # the same key, spelt with escapes
        b'{"time":"2025-10-09T08:53:20Z","pm25":1,"pm25":2}',  # colons inside strings too
        b'{"time":1760000000,"time":1760000060,"pm25":1}',
        b'[{"n":"pm25","v":1,"v":2}]',
        b'[{"bn":"urn:dev:ow:10e2:","n":"pm25","v":1},{"n":"no2","v":3,"n":"pm10"}]',
        b'[{"n":"pm25","v":1,"foo":{"a":1,"a":2}}]',  # deeper, in an ignored label
        b'{"pm25":1,"x":{"a":1,"a":2}}',
    ],
)
def test_a_key_repeated_in_one_object_refuses_the_payload(payload: bytes) -> None:
    """Which value a repeated key means is undefined (RFC 8259 §4): the message goes to
    quarantine whole, with the key named."""
    error = decode_error(payload)
    assert error.reason == "duplicate_key"
    assert "occurs twice" in error.detail


@pytest.mark.parametrize(
    ("payload", "count"),
    [
        (b'{"time":"2025-10-09T08:53:20+02:00","pm25":1,"no2":2}', 2),
        (b'{"pm25" : 1, "no2" :2}', 2),
        (b'[{"bn":"urn:dev:ow:10e2:","n":"pm25","v":1},{"n":"pm25","v":2,"t":1}]', 2),
        (b'[{"n":"a","v":1,"foo":"x\\":y"},{"n":"b","v":2}]', 2),  # an escaped quote
        (b'[{"n":"a","v":1,"foo":"{"},{"n":"b","v":2}]', 2),  # a brace inside a string
        (b'{"pm25":1,"x":{"pm25":2}}', 1),  # the same key in two objects
    ],
)
def test_keys_repeated_only_across_objects_or_inside_strings_are_fine(
    payload: bytes, count: int
) -> None:
    """Colons, quotes and braces in strings, and the same label in every SenML record,
    are not repeated keys."""
    assert len(decode(payload, NOW).readings) == count


_member_keys = st.sampled_from(["pm25", "no2", "n", "v", "u", "foo", "a:b", "pm\\u0032\\u0035"])
_member_values = st.one_of(
    st.integers(min_value=0, max_value=99),
    st.sampled_from(['"urn:dev:x:"', '"12:00:00"', '"{"', '"a \\":b"', '"pm25"', '{"k":1}']),
)
_spaces = st.sampled_from(["", " ", "\n", " \t "])


def _object_text(members: list[tuple[str, str, str]]) -> str:
    return "{" + ",".join(f'"{k}"{ws}:{ws}{v}' for k, v, ws in members) + "}"


def _repeats(members: list[tuple[str, str, str]]) -> bool:
    keys = [json.loads(f'"{k}"') for k, _, _ in members]
    return len(set(keys)) != len(keys)


_members = st.lists(st.tuples(_member_keys, _member_values, _spaces), min_size=1, max_size=5)


@given(st.lists(_members, min_size=1, max_size=4), st.booleans())
@settings(max_examples=400)
def test_duplicate_keys_are_found_exactly(
    objects: list[list[tuple[str, str, str]]], pack: bool
) -> None:
    """Whatever the whitespace, escapes and strings around them, a payload is refused as
    duplicate_key exactly when one of its objects repeats a key."""
    texts = [_object_text(members) for members in objects]
    payload = ("[" + ",".join(texts) + "]" if pack else texts[0]).encode()
    repeated = any(_repeats(members) for members in (objects if pack else objects[:1]))
    reason = None
    try:
        decode(payload, NOW)
    except DecodeError as error:
        reason = error.reason
    assert (reason == "duplicate_key") is repeated, (payload, reason)
