"""Simulated Narvik sensors (see `devices.simulation.publisher`)."""

from devices.simulation.publisher import (
    LOCAL_TIMEZONE,
    SUPPORTED_METRICS,
    PublishReport,
    SimulationError,
    Simulator,
    check_simulatable,
    count_messages,
    encode_payload,
    readings,
    simulated_messages,
    status_topic,
    telemetry_topic,
)

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
