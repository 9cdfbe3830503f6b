"""The SensorThings MQTT extension, read-only (OGC 18-088 §14.2, "Receive updates
with MQTT Subscribe"): each new Observation is published, as the same JSON the REST
view gives, to ``v1.1/Datastreams(<id>)/Observations``, where anyone may subscribe
and nobody but this publisher may write (the broker's ACL).

Fed by the API's stream hub (`api.stream`), which hears committed readings through
PostgreSQL's NOTIFY; of several API processes only the one holding the publisher's
advisory lock publishes, so each Observation is published once.  It publishes with
its own broker account (``SMARTBY_STA_MQTT_USERNAME``/``_PASSWORD``), QoS 1, through
paho's network thread; paho's queue is bounded (`MAX_QUEUED`): while the broker is
away, Observations beyond it are dropped and counted, never buffered without end.

As in the REST view: no FAIL-flagged Observations, and no raw traffic readings (the
hub never reads them); traffic Observations are hourly aggregates, which appear when
an hour is over, and are not pushed.
"""

from __future__ import annotations

import logging
import ssl
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from api.responses import dumps
from api.sensorthings.compile import observation_id
from api.sensorthings.model import FAIL, iso, quality_element
from api.stream import Reading
from core.settings import Settings

log = logging.getLogger(__name__)

#: messages paho holds for the broker at most (while it is away or slow)
MAX_QUEUED = 10_000
TOPIC = "v1.1/Datastreams({})/Observations"


def topic_of(series_id: int) -> str:
    return TOPIC.format(series_id)


def observation_document(reading: Reading, base: str) -> dict[str, object]:
    """The Observation as the REST view renders it (api.sensorthings.model)."""
    identity = observation_id(reading.series_id, reading.time)
    self_link = f"{base}/Observations('{identity}')"
    moment = iso(reading.time)
    return {
        "@iot.id": identity,
        "@iot.selfLink": self_link,
        "phenomenonTime": moment,
        "resultTime": moment,
        "result": reading.value,
        "resultQuality": quality_element(reading.quality),
        "parameters": None,
        "Datastream@iot.navigationLink": f"{self_link}/Datastream",
        "FeatureOfInterest@iot.navigationLink": f"{self_link}/FeatureOfInterest",
    }


class StaPublisher:
    """Publishes Observations to the broker (see the module docstring)."""

    def __init__(self, settings: Settings, base: str) -> None:
        self.base = base
        self.dropped = 0
        self.published = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"smartby-sta-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        password = settings.sta_mqtt_password
        self.client.username_pw_set(
            settings.sta_mqtt_username, password.get_secret_value() if password else None
        )
        if settings.mqtt_tls:
            self.client.tls_set(tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.connect_async(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()

    @staticmethod
    def _on_connect(
        _client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("the SensorThings publisher was refused by the broker: %s", reason)

    def publish(self, readings: list[Reading]) -> None:
        for reading in readings:
            if reading.quality == FAIL:
                continue
            payload = dumps(observation_document(reading, self.base))
            info = self.client.publish(topic_of(reading.series_id), payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
                self.published += 1  # paho holds it until the broker is back
            else:
                self.dropped += 1
        if self.dropped and self.dropped % 1000 == 1:
            log.warning("the SensorThings publisher dropped %d Observations", self.dropped)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
