"""The worker alone (no `smartby up`) across restarts of its broker.

A broker of the test's own, set up as the platform sets up its own (dynamic security,
accounts written from the registry before every start, ``autosave_interval 1``), a
numbered QoS 1 stream from 2 devices (`tests.fixtures.faults`) and ``smartby ingest``
as a process of its own, held with SIGSTOP while the broker restarts until the
devices are back and publishing: the worst order of reconnecting, taken every time.

- plain subscription, graceful restart: 0 lost, 0 duplicates;
- shared subscription, graceful restart: Mosquitto 2.0 does not restore it, so what
  the devices publish before the worker subscribes again is acknowledged with 0x10
  "no matching subscribers" and dropped; measured, and checked to be exactly that;
- kill -9 of the broker with the worker offline (its session holds the stream): lost
  is only what the broker acknowledged within the last ~2 s (its last save).
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest

from core.broker import SubscriptionMode
from devices.broker_access import BrokerAdmin
from devices.broker_plan import PlatformAccounts
from devices.broker_sync import write_platform_file
from devices.registry import new_secret
from stack.mosquitto import DynamicSecurity, MosquittoBroker, find_dynsec_plugin, find_mosquitto
from stack.ports import free_port
from tests.fixtures.faults import (
    Mix,
    NumberedStream,
    StreamCount,
    assert_nothing_lost_nor_doubled,
    register_devices,
    verify,
)
from tests.fixtures.ingest import wait_for, worker_process
from tests.fixtures.services import Services

pytestmark = pytest.mark.slow

PREFIX = "smartby"
WORKER_ID = "smartby-ingest-1"
RATE = 500.0  # messages/s per device
MIXES = [pytest.param(Mix.TIMED, id="timed"), pytest.param(Mix.MIXED, id="mixed")]
#: (fault, mix, acknowledged, lost, lost with 0x10, duplicates), for the report
RESTARTS: list[tuple[str, str, int, int, int, int]] = []


@dataclass
class OwnBroker:
    broker: MosquittoBroker
    accounts: PlatformAccounts
    db_url: str
    root: Path

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def admin(self) -> BrokerAdmin:
        return BrokerAdmin(
            "127.0.0.1", self.port, "smartby-admin", self.accounts.admin_password or ""
        )

    def write_accounts(self) -> None:
        assert self.broker.dynsec is not None
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            write_platform_file(self.broker.dynsec.config_file, conn, self.accounts)

    def worker(self, mode: SubscriptionMode, services: Services) -> subprocess.Popen[bytes]:
        return worker_process(
            services,
            PREFIX,
            WORKER_ID,
            self.root / "worker.log",
            mqtt_port=self.port,
            extra_env={
                "SMARTBY_MQTT_PASSWORD": self.accounts.ingest_password or "",
                "SMARTBY_INGEST_SUBSCRIPTION": mode,
            },
        )

    def worker_ready(self, since: int) -> None:
        log = self.root / "worker.log"
        wait_for(
            lambda: "consuming from" in log.read_text()[since:],
            timeout=60,
            what="the worker subscribed",
        )


@pytest.fixture
def own_broker(services: Services, db_url: str) -> Iterator[OwnBroker]:
    root = services.root / f"restart-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    binary = find_mosquitto()
    accounts = PlatformAccounts(
        prefix=PREFIX,
        mode="plain",
        ingest_ids=(WORKER_ID,),
        ingest_password=new_secret(),
        admin_password=new_secret(),
    )
    holder: list[OwnBroker] = []
    broker = MosquittoBroker(
        root / "mosquitto",
        port=free_port(),
        binary=binary,
        dynsec=DynamicSecurity(find_dynsec_plugin(binary), root / "mosquitto" / "dynsec.json"),
        before_launch=lambda: holder[0].write_accounts(),
    )
    own = OwnBroker(broker, accounts, db_url, root)
    holder.append(own)
    (root / "worker.log").touch()
    try:
        yield own
    finally:
        broker.stop()


#: the stream, and the worker processes so far (the last one runs)
Fault = Callable[[NumberedStream, list[subprocess.Popen[bytes]]], None]


def run_stream(
    own: OwnBroker, services: Services, mode: SubscriptionMode, mix: Mix, fault: Fault
) -> StreamCount:
    own.accounts = replace(own.accounts, mode=mode)
    credentials = register_devices(own.db_url, [f"dev-{n}" for n in range(2)])
    own.broker.start()  # its accounts, the devices' included, from the registry
    workers = [own.worker(mode, services)]
    try:
        own.worker_ready(0)
        with NumberedStream(own.port, credentials, rate=RATE, mix=mix) as stream:
            stream.start()
            acknowledged(stream, 2.0)
            fault(stream, workers)
            acknowledged(stream, 2.0)
            stream.stop()
            assert stream.wait_acknowledged(60)
            return verify(own.db_url, stream, stalled_after=5)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGCONT)
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)


def acknowledged(stream: NumberedStream, seconds: float) -> None:
    target = stream.acknowledged_count() + int(seconds * RATE * len(stream.devices))
    wait_for(lambda: stream.acknowledged_count() >= target, timeout=60 + seconds, what="the stream")


def restart_while_the_worker_is_held(own: OwnBroker) -> Fault:
    """SIGTERM to the broker (it saves), start it again; the worker held until the
    devices have reconnected and half a second more of the stream is acknowledged."""

    def fault(stream: NumberedStream, workers: list[subprocess.Popen[bytes]]) -> None:
        worker = workers[-1]
        worker.send_signal(signal.SIGSTOP)
        try:
            connects = [d.connects for d in stream.devices]
            own.broker.stop()
            own.broker.start()
            wait_for(
                lambda: all(d.connects > n for d, n in zip(stream.devices, connects, strict=True)),
                what="the devices back",
            )
            acknowledged(stream, 0.5)
        finally:
            worker.send_signal(signal.SIGCONT)

    return fault


@pytest.mark.parametrize("mix", MIXES)
def test_a_plain_subscription_survives_a_graceful_restart(
    own_broker: OwnBroker, services: Services, mix: Mix
) -> None:
    count = run_stream(
        own_broker, services, "plain", mix, restart_while_the_worker_is_held(own_broker)
    )
    RESTARTS.append(record("graceful restart, plain", mix, count))
    assert_nothing_lost_nor_doubled(count)


@pytest.mark.parametrize("mix", MIXES)
def test_a_shared_subscription_drops_what_comes_before_the_worker_subscribes_again(
    own_broker: OwnBroker, services: Services, mix: Mix
) -> None:
    """The measured cost of shared mode (README, "Subscription modes"): every message
    lost was acknowledged with 0x10 while the broker had no subscriber."""
    count = run_stream(
        own_broker, services, "shared", mix, restart_while_the_worker_is_held(own_broker)
    )
    RESTARTS.append(record("graceful restart, shared", mix, count))
    assert count.lost > 0, "Mosquitto kept the shared subscription: update the README"
    assert count.lost == count.total("lost_no_subscribers"), count.table()


@pytest.mark.parametrize("mix", MIXES)
def test_kill_9_of_the_broker_loses_at_most_its_last_2_seconds(
    own_broker: OwnBroker, services: Services, mix: Mix
) -> None:
    """The worker stops (its session stays, offline, and the broker queues the stream
    for it); 3 s later the broker is killed, at no particular moment of its 2 s save
    cycle, and started again; then the worker.  Lost: at most what was acknowledged in
    the last 2.5 s before the kill, none of it older."""
    killed_at: list[float] = []

    def fault(stream: NumberedStream, workers: list[subprocess.Popen[bytes]]) -> None:
        worker = workers[-1]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        acknowledged(stream, 3.0)
        assert own_broker.broker.proc is not None
        killed_at.append(time.monotonic())
        own_broker.broker.proc.kill()
        own_broker.broker.proc.wait(10)
        own_broker.broker.start()
        log_size = len((own_broker.root / "worker.log").read_text())
        workers.append(own_broker.worker("plain", services))
        own_broker.worker_ready(log_size)

    count = run_stream(own_broker, services, "plain", mix, fault)
    RESTARTS.append(record("kill -9, worker offline, plain", mix, count))
    window = count.lost_window(killed_at[0])
    if window is not None:
        oldest, newest = window
        assert oldest <= 2.5, count.table()
        assert newest >= -0.1, count.table()
    assert count.lost <= 2.5 * RATE * len(count.devices), count.table()


def record(fault: str, mix: Mix, count: StreamCount) -> tuple[str, str, int, int, int, int]:
    return (
        fault,
        mix.value,
        count.total("acknowledged"),
        count.lost,
        count.total("lost_no_subscribers"),
        count.duplicates,
    )


def pytest_terminal_summary_lines() -> list[str]:
    return [
        f"worker alone, {fault} ({mix}): {acked} acknowledged, {lost} lost"
        f" ({no_subs} with 0x10), {dups} duplicates"
        for fault, mix, acked, lost, no_subs, dups in RESTARTS
    ]
