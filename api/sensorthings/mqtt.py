"""The SensorThings MQTT extension, read-only (OGC 18-088 §14.2, "Receive updates
with MQTT Subscribe"): each new Observation is published, as the same JSON the REST
view gives, to ``v1.1/Datastreams(<id>)/Observations``.

It publishes on the platform's broker with the ``smartby-sta-publisher`` account
(`core.broker.STA_PUBLISHER_USER`, ``SMARTBY_STA_PUBLISHER_PASSWORD``; under
``smartby up`` the password kept in ``credentials/sta-publisher.password``), whose
role may publish ``v1.1/#`` and nothing else.  The public never sees that broker:
anonymous readers subscribe on the public broker, which the bridge feeds with
``v1.1/#`` (`stack.mosquitto.public_stream_config`).  The account is bound to the
client id of the same name (the dynamic security plugin's ``clientid``), so the
publisher connects under it; an MQTT server hands a client id's session to the
newest connection (MQTT v5 §3.1.4), so two publishers would throw each other out.

Fed by the API's stream hub (`api.stream`), which hears committed readings through
PostgreSQL's NOTIFY; of several API processes only the one holding the publisher's
advisory lock connects (`start`) and publishes, and it disconnects (`stop`) when it
loses the lock with its database connection.  QoS 1, through paho's network thread;
paho's queue is bounded (`MAX_QUEUED`): while the broker is away, Observations beyond
it are dropped and counted, never buffered without end.

As in the REST view: no FAIL-flagged Observations, and no raw traffic readings (the
hub never reads them); traffic Observations are hourly aggregates, which appear when
an hour is over, and are not pushed.
"""

from __future__ import annotations

import logging
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from api.responses import dumps
from api.sensorthings.compile import observation_id
from api.sensorthings.model import FAIL, iso, quality_element
from api.stream import Reading
from core.broker import STA_PUBLISHER_USER
from core.errors import SmartbyError
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
        if settings.sta_publisher_password is None:
            raise SmartbyError("the SensorThings publisher needs SMARTBY_STA_PUBLISHER_PASSWORD")
        self.base = base
        self.host = settings.mqtt_host
        self.port = settings.mqtt_port
        self.tls = settings.mqtt_tls
        self.password = settings.sta_publisher_password.get_secret_value()
        self.dropped = 0
        self.published = 0
        self.client: mqtt.Client | None = None

    def start(self) -> None:
        """Connect (in the background; paho reconnects by itself) and publish from now."""
        if self.client is not None:
            return
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=STA_PUBLISHER_USER,  # the account is bound to this client id
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(STA_PUBLISHER_USER, self.password)
        if self.tls:
            client.tls_set(tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.max_queued_messages_set(MAX_QUEUED)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.connect_async(self.host, self.port)
        client.loop_start()
        self.client = client

    @staticmethod
    def _on_connect(
        _client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("the SensorThings publisher was refused by the broker: %s", reason)
        else:
            log.info("the SensorThings publisher is connected as %s", STA_PUBLISHER_USER)

    def publish(self, readings: list[Reading]) -> None:
        client = self.client
        if client is None:
            return
        for reading in readings:
            if reading.quality == FAIL:
                continue
            payload = dumps(observation_document(reading, self.base))
            info = client.publish(topic_of(reading.series_id), payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
                self.published += 1  # paho holds it until the broker is back
            else:
                self.dropped += 1
        if self.dropped and self.dropped % 1000 == 1:
            log.warning("the SensorThings publisher dropped %d Observations", self.dropped)

    def stop(self) -> None:
        """Disconnect: another API process may take the lock and the client id now."""
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        self.stop()
