"""The warning job: turns the stations' new hourly indices into CAP messages
(`core.warnings` has the rules), stores them, and publishes them on MQTT.

It runs in the ingest workers' indicator thread, right after the indicator tables
were brought up to date, because it reads ``aqi_hourly``.  A pass is one transaction
under an advisory lock (`db.warnings`): state and messages commit together, so a pass
that fails issues nothing and the next one redoes it, and two workers never issue the
same message.  Each message goes to the retained topic
``<prefix>/public/warnings/<site>`` (QoS 1) and is marked published once the broker
acknowledged it; what the broker did not take is sent again on the next pass, in
order, so the retained message is always a station's latest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from psycopg.rows import TupleRow

from core.cap import CapAlert, Circle, Reference, ResponseType, Severity, render
from core.indicators import AQI_LEVEL_NAMES
from core.rollups import HOUR_US, US_PER_S, epoch_us, from_epoch_us
from core.settings import Settings
from core.warnings import (
    Episode,
    HourlyIndex,
    Station,
    WarningEvent,
    WarningTexts,
    WarningWords,
    advance,
    first_state,
    settled_until,
)
from db import warnings as store

log = logging.getLogger(__name__)

#: a station stands for its neighbourhood: the warning's area is a circle this wide
AREA_RADIUS_KM = 1.0
#: CAP severity of each index level (and of an all-clear)
SEVERITY: dict[int, Severity] = {4: "Moderate", 5: "Severe", 6: "Extreme"}

Publish = Callable[[str, bytes], bool]


def topic(prefix: str, site_id: str) -> str:
    """The retained public topic of a station's warnings."""
    return f"{prefix}/public/warnings/{site_id}"


@dataclass(frozen=True, slots=True)
class Issued:
    identifier: str
    site_id: str
    event: str
    level: int


class WarningJob:
    def __init__(self, settings: Settings, texts: WarningTexts) -> None:
        self.settings = settings
        self.texts = texts
        self.clear_after_us = int(settings.warnings_clear_after_h * 3600 * US_PER_S)
        self.zone = ZoneInfo(settings.timezone)

    def run(self, conn: psycopg.Connection[TupleRow], now: datetime | None = None) -> list[Issued]:
        """One pass as of ``now``: every station's settled hours since its last pass."""
        now_us = epoch_us(now or datetime.now(UTC))
        issued: list[Issued] = []
        with conn.transaction():
            store.lock(conn)
            stations = store.air_stations(conn)
            stored = store.states(conn)
            since = {
                s.site_id: from_epoch_us(
                    stored[s.site_id].state.checked_until_us
                    if s.site_id in stored
                    else first_state(now_us, self.clear_after_us).checked_until_us
                )
                for s in stations
            }
            hours = store.hourly_indices(conn, since, from_epoch_us(settled_until(now_us)))
            for station in stations:
                known = stored.get(station.site_id)
                state = known.state if known else first_state(now_us, self.clear_after_us)
                episode_id = known.episode_id if known else None
                indices = hours.get(station.site_id)
                new_state, events = advance(
                    state,
                    indices if indices is not None else _no_hours(),
                    now_us,
                    self.clear_after_us,
                )
                for event in events:
                    episode_id, identifier = self._issue(conn, station, event, episode_id, now_us)
                    issued.append(Issued(identifier, station.site_id, event.kind, event.level))
                if episode_id is not None and new_state.episode is not None:
                    store.update_episode(conn, episode_id, new_state.episode, None)
                store.save_state(conn, station.site_id, new_state)
        for item in issued:
            log.info(
                "public warning %s: %s at %s (level %d)",
                item.identifier,
                item.event,
                item.site_id,
                item.level,
            )
        return issued

    def _issue(
        self,
        conn: psycopg.Connection[TupleRow],
        station: Station,
        event: WarningEvent,
        episode_id: int | None,
        now_us: int,
    ) -> tuple[int | None, str]:
        """Store the event's message; the episode it belongs to (None once it ended) and
        the message's identifier."""
        if event.kind == "alert":
            episode_id = store.open_episode(
                conn, station.site_id, Episode(event.onset_us, event.hour_us, event.level)
            )
        assert episode_id is not None
        earlier = store.episode_messages(conn, episode_id)
        sent = from_epoch_us(now_us).astimezone(self.zone).replace(microsecond=0)
        sender = self.settings.api_contact_email
        words = self.texts.words(
            event, station, self.settings.timezone, self.settings.api_public_url
        )
        identifier = _make_identifier(station.site_id, event.onset_us, len(earlier) + 1)
        cap = render(
            CapAlert(
                identifier=identifier,
                sender=sender,
                sent=sent,
                msg_type=event.msg_type,
                references=[
                    Reference(sender, m.identifier, m.sent.astimezone(self.zone)) for m in earlier
                ],
                category="Env",
                event_code=("eventType", "airQuality"),
                response_type=_response(event),
                urgency="Past" if event.msg_type == "Cancel" else "Immediate",
                severity="Minor" if event.msg_type == "Cancel" else SEVERITY[event.level],
                certainty="Observed",
                onset=None
                if event.msg_type == "Cancel"
                else from_epoch_us(event.onset_us).astimezone(self.zone),
                parameters=_parameters(event),
                circle=Circle(station.lat, station.lon, AREA_RADIUS_KM),
                words=words,
            )
        )
        nb, en = _by_language(words)
        store.insert_message(
            conn,
            store.NewMessage(
                identifier=identifier,
                episode_id=episode_id,
                site_id=station.site_id,
                msg_type=event.msg_type,
                event=event.kind,
                sent=sent,
                hour=from_epoch_us((event.hour_us // HOUR_US) * HOUR_US),
                level=event.level,
                dominant=event.dominant,
                headline_nb=nb.headline,
                headline_en=en.headline,
                summary_nb=nb.description,
                summary_en=en.description,
                cap=cap,
            ),
        )
        if event.msg_type == "Cancel":
            store.update_episode(conn, episode_id, None, from_epoch_us(event.hour_us))
            return None, identifier
        return episode_id, identifier

    def publish(self, conn: psycopg.Connection[TupleRow], publish: Publish) -> int:
        """Send what the broker has not acknowledged yet, oldest first; how many went.
        Stops at the first refusal, so a station's retained message stays its latest."""
        sent = 0
        with conn.transaction():
            done = []
            for message_id, site_id, cap in store.unpublished(conn):
                if not publish(topic(self.settings.mqtt_topic_prefix, site_id), cap):
                    log.warning("the broker did not take public warning %d; retrying", message_id)
                    break
                done.append(message_id)
            if done:
                store.mark_published(conn, done)
                sent = len(done)
        return sent


def _no_hours() -> HourlyIndex:
    return HourlyIndex(np.empty(0, np.int64), np.empty(0, np.int8), [], np.empty(0, np.float64))


def _make_identifier(site_id: str, onset_us: int, sequence: int) -> str:
    """``smartby-aqi-<site>-<onset UTC>-<n>``: unique per sender (CAP 1.2 §3.2.1), the
    same on every worker, and it says which episode and which message it is."""
    onset = from_epoch_us(onset_us).strftime("%Y%m%dT%H%MZ")
    return f"smartby-aqi-{site_id}-{onset}-{sequence}"


def _response(event: WarningEvent) -> ResponseType:
    if event.msg_type == "Cancel":
        return "AllClear"
    # the EEA's advice at Poor is to consider reducing effort; from Very poor, to reduce it
    return "Monitor" if event.level <= 4 else "Avoid"


def _parameters(event: WarningEvent) -> list[tuple[str, str]]:
    parameters = [
        ("aqi_level", str(event.level)),
        ("aqi_level_name", AQI_LEVEL_NAMES[event.level - 1]),
    ]
    if event.dominant:
        parameters.append(("dominant_pollutant", event.dominant))
    if event.concentration is not None:
        parameters.append(("concentration_ugm3", f"{event.concentration:.1f}"))
    return parameters


def _by_language(words: list[WarningWords]) -> tuple[WarningWords, WarningWords]:
    norwegian = next(w for w in words if w.language == "no")
    english = next(w for w in words if w.language.startswith("en"))
    return norwegian, english
