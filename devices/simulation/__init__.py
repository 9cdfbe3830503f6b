"""Simulated Narvik sensors: a vectorised signal model, payload encoders and an MQTT driver.

Until real sensors are connected, smartby shows itself with simulated ones that behave like
Narvik's (issue 4): air quality that follows rush hours, road dust on dry late-winter days
and winter inversions; buildings that use power on school days and heat with electricity
when it is cold; roads with commuter peaks and trucks; and a few devices with the faults
quality control is there to catch.

Three layers, each usable without the next:

* ``readings(spec, start, end, seed)`` (`model`) — the signal model. Pure and vectorised
  with NumPy. Every random number is drawn from a generator keyed by (seed, device,
  quantity, block of sample indices) (`draws`), so a reading depends only on its own
  time, never on the window it was computed in: a live run that produces ten minutes at
  a time joins a backfill seamlessly, and an energy register continues across restarts
  without a false meter reset. The models of each kind are `air_quality`, `energy` and
  `traffic`; they share the town's `weather` and `calendar`, the device's `sampling`
  instants, and its `faults`.
* ``simulated_messages(specs, start, end, seed, prefix)`` (`payloads`) — the messages the
  devices would have sent, in time order, encoded as each device encodes them (SenML
  JSON, SenML CBOR or the plain JSON object; see core/decode.py).
* ``Simulator`` (`publisher`) — publishes those messages through a real broker, one MQTT
  connection per device with its own credentials, either live (real time, optionally
  faster to catch up) or as a backfill as fast as the broker acknowledges.

All times are epoch seconds (UTC). Human activity (rush hours, school days, holidays)
follows local time in Europe/Oslo, with its daylight-saving shifts; sun and weather follow
solar time at Narvik.
"""

from devices.simulation.calendar import LOCAL_TIMEZONE
from devices.simulation.model import (
    SUPPORTED_METRICS,
    SimulationError,
    check_simulatable,
    readings,
)
from devices.simulation.payloads import (
    count_messages,
    encode_payload,
    simulated_messages,
    status_topic,
    telemetry_topic,
)
from devices.simulation.publisher import PublishReport, Simulator

__all__ = [
    "LOCAL_TIMEZONE",
    "SUPPORTED_METRICS",
    "PublishReport",
    "SimulationError",
    "Simulator",
    "check_simulatable",
    "count_messages",
    "encode_payload",
    "readings",
    "simulated_messages",
    "status_topic",
    "telemetry_topic",
]
