"""Public air-quality warnings: when a station's air turns poor, and when it clears.

The rules, on the station's hourly European Air Quality Index (``aqi_hourly``: EEA
2024 bands, hours with at least 75 % of their readings):

* **An episode starts** at the first hour whose index is Poor (4) or worse: the
  warning (CAP ``msgType`` Alert) is issued as soon as that hour's index is settled,
  i.e. the hour has ended and `SETTLE` has passed for its last readings and the
  indicator job (every minute) to land.
* **It escalates** when a later hour of the episode is worse than any announced so
  far (Poor → Very poor → Extremely poor): an Update referencing what went before.
  It does not step down while it lasts; one message per level at most, no flapping.
* **It clears** at the first valid hour back below Poor: the all-clear (Cancel with
  response type AllClear, referencing every earlier message of the episode).
* **It is withdrawn** when no valid hour has come for ``clear_after`` hours since its
  last poor hour ended (a station that went silent must not keep a warning up for
  ever): a Cancel saying that there are no current measurements.
* **History is not news**: an hour that ended more than ``clear_after`` hours ago
  never starts an episode (a backfill or a restarted worker does not warn about the
  past), and an hour already looked at is not looked at again, even if late data
  change its index later — a warning once sent stays sent (CAP messages are never
  changed, only followed by others).

Everything here is pure: `advance` takes a station's state and its new hours and
returns the new state and the events; `ingest.warnings` stores them and the words
come from whoever implements `WarningTexts` (the website's catalogue, `web.warnings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from core.rollups import HOUR_US, US_PER_S

#: the first level that warns: EEA "Poor"
POOR = 4
#: how long after an hour ends its index counts as settled (last readings, then the
#: indicator job, which runs every SMARTBY_INDICATORS_INTERVAL_S = 60 s)
SETTLE_US = 5 * 60 * US_PER_S

EventKind = Literal["alert", "update", "clear", "withdraw"]
#: CAP 1.2 msgType of each event (§3.2.1)
MSG_TYPES: dict[EventKind, Literal["Alert", "Update", "Cancel"]] = {
    "alert": "Alert",
    "update": "Update",
    "clear": "Cancel",
    "withdraw": "Cancel",
}


@dataclass(frozen=True, slots=True)
class Episode:
    """An open episode: since when, the last poor hour, the level last announced."""

    onset_us: int
    last_poor_us: int
    level: int


@dataclass(frozen=True, slots=True)
class StationState:
    """Hours before ``checked_until_us`` were looked at; the open episode, if any."""

    checked_until_us: int
    episode: Episode | None = None


@dataclass(frozen=True, slots=True)
class WarningEvent:
    kind: EventKind
    hour_us: int  # the hour the event is about (a withdrawal: the first hour with no index)
    level: int  # that hour's index (a withdrawal: the level last announced)
    dominant: str | None  # the pollutant that set it
    concentration: float | None  # its hourly mean, µg/m³
    onset_us: int  # the episode's first poor hour

    @property
    def msg_type(self) -> Literal["Alert", "Update", "Cancel"]:
        return MSG_TYPES[self.kind]


@dataclass(frozen=True, slots=True)
class HourlyIndex:
    """A station's hourly indices, oldest first (hours without a valid index absent)."""

    hour_us: npt.NDArray[np.int64]
    level: npt.NDArray[np.int8]
    dominant: Sequence[str | None]
    concentration: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.hour_us)


def settled_until(now_us: int) -> int:
    """The start of the first hour whose index is not settled at ``now_us``."""
    return ((now_us - SETTLE_US) // HOUR_US) * HOUR_US


def first_state(now_us: int, clear_after_us: int) -> StationState:
    """A station seen for the first time: only hours from ``clear_after`` ago on count."""
    return StationState(((now_us - clear_after_us) // HOUR_US) * HOUR_US)


def advance(
    state: StationState, hours: HourlyIndex, now_us: int, clear_after_us: int
) -> tuple[StationState, list[WarningEvent]]:
    """Look at the settled hours after the state's, in order; the new state and events.

    A loop over hours, not a vectorised pass: each hour's meaning depends on the
    episode the hours before it opened, and a pass sees a few hours per station."""
    until = settled_until(now_us)
    horizon = ((now_us - clear_after_us) // HOUR_US) * HOUR_US
    # without an open episode, hours past the horizon cannot start one
    start = (
        max(state.checked_until_us, horizon) if state.episode is None else state.checked_until_us
    )
    episode = state.episode
    events: list[WarningEvent] = []
    order = np.argsort(hours.hour_us, kind="stable")
    for i in order.tolist():
        hour = int(hours.hour_us[i])
        if hour < start or hour >= until:
            continue
        level = int(hours.level[i])
        dominant = hours.dominant[i]
        value = float(hours.concentration[i])
        concentration = None if np.isnan(value) else value
        if episode is not None and hour - (episode.last_poor_us + HOUR_US) >= clear_after_us:
            events.append(_withdrawal(episode))
            episode = None
        if episode is None:
            if level >= POOR and hour >= horizon:  # (after a withdrawal mid-pass)
                episode = Episode(hour, hour, level)
                events.append(WarningEvent("alert", hour, level, dominant, concentration, hour))
        elif level >= POOR:
            if level > episode.level:
                events.append(
                    WarningEvent("update", hour, level, dominant, concentration, episode.onset_us)
                )
                episode = replace(episode, last_poor_us=hour, level=level)
            else:
                episode = replace(episode, last_poor_us=hour)
        else:
            events.append(
                WarningEvent("clear", hour, level, dominant, concentration, episode.onset_us)
            )
            episode = None
    if episode is not None and until - (episode.last_poor_us + HOUR_US) >= clear_after_us:
        events.append(_withdrawal(episode))
        episode = None
    return StationState(max(state.checked_until_us, until), episode), events


def _withdrawal(episode: Episode) -> WarningEvent:
    silent_from = episode.last_poor_us + HOUR_US
    return WarningEvent("withdraw", silent_from, episode.level, None, None, episode.onset_us)


# ------------------------------------------------------------------ words and places


@dataclass(frozen=True, slots=True)
class Station:
    site_id: str
    name: str
    municipality: str
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class WarningWords:
    """One CAP ``info`` block's words in one language (CAP 1.2 §3.2.2)."""

    language: str  # RFC 3066 tag, as CAP wants it: "no" and "en-GB" (as MET Norway)
    event: str
    headline: str
    description: str
    instruction: str
    sender_name: str
    area: str
    web: str | None = None


class WarningTexts(Protocol):
    """What a warning says, in every language it is issued in (Norwegian first)."""

    def words(
        self, event: WarningEvent, station: Station, tz: str, public_url: str | None
    ) -> list[WarningWords]: ...
