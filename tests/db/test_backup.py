"""Backup and restore (db/backup.py, `smartby db backup|restore`): a backup of the
simulated city, restored into a fresh PostgreSQL + TimescaleDB cluster on a new port
by TimescaleDB's documented procedure, answers every API request byte for byte as the
original did — latest values, hourly and daily aggregates with their counts, the raw
series, indicators, the catalogue; rotation keeps the newest backups; a restore over
live data is refused with one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from api.app import create_app
from core.settings import Settings
from db.backup import BackupError, backup, backups, restore, rotate
from smartby.db_commands import client_bindir
from stack.ports import free_port
from stack.postgres import PostgresCluster
from tests.api.conftest import UNLIMITED, TestClient
from tests.fixtures.services import Services, make_service_root
from tests.fixtures.simulated import SimulatedData


def requests_of(simulated: SimulatedData) -> list[str]:
    """What a client asks: the catalogue, the latest values, the aggregates (with their
    counts) and the raw series of a day, indicators, the warnings."""
    start = datetime.fromtimestamp(simulated.start, UTC)
    end = datetime.fromtimestamp(simulated.end, UTC)
    span = f"from={start:%Y-%m-%dT%H:%M:%SZ}&to={end:%Y-%m-%dT%H:%M:%SZ}"
    day = f"from={end - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}&to={end:%Y-%m-%dT%H:%M:%SZ}"
    paths = [
        "/v1/sites",
        "/v1/devices",
        "/v1/metrics",
        "/v1/series",
        "/v1/latest",
        "/v1/aqi",
        f"/v1/energy/daily?{span}",
        f"/v1/energy/hourly?{span}",
        f"/v1/traffic/daily?{span}",
        f"/v1/traffic/hourly?{span}&limit=10000",
        "/v1/traffic/adt",
        "/v1/warnings/active",
    ]
    with psycopg.connect(simulated.url) as conn:
        series = [s for (s,) in conn.execute("SELECT id FROM series ORDER BY id LIMIT 6")]
        # traffic is published in aggregates only (privacy): raw series of the others
        measured = [
            s
            for (s,) in conn.execute(
                "SELECT s.id FROM series s JOIN metrics m ON m.key = s.metric"
                " WHERE m.domain <> 'traffic' ORDER BY s.id LIMIT 4"
            )
        ]
        sites = [
            s
            for (s,) in conn.execute(
                "SELECT DISTINCT d.site_id FROM devices d WHERE d.kind = 'air_quality'"
                " ORDER BY 1 LIMIT 2"
            )
        ]
    for series_id in series:
        for bucket in ("1h", "1d"):
            paths.append(f"/v1/series/{series_id}/data?bucket={bucket}&{span}&limit=10000")
    for series_id in measured:
        paths.append(f"/v1/series/{series_id}/data?bucket=raw&{day}&limit=10000")
    for site in sites:
        paths.append(f"/v1/aqi/{site}?{span}")
        paths.append(f"/v1/sites/{site}/metrics/pm25/data?bucket=1h&{span}&limit=10000")
    return paths


def answers(settings: Settings, paths: list[str]) -> dict[str, tuple[int, str, bytes, str]]:
    """Status, content type, body and ETag of each request (not Date and the like)."""
    found = {}
    with TestClient(create_app(settings)) as client:
        for path in paths:
            response = client.get(path)
            found[path] = (
                response.status_code,
                response.headers["content-type"],
                response.content,
                response.headers.get("etag", ""),
            )
    return found


@pytest.fixture
def fresh_cluster() -> Iterator[PostgresCluster]:
    root = make_service_root("smartby-restore-")
    cluster = PostgresCluster(root / "pg", port=free_port(), durable=False)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_restored_backup_answers_exactly_as_before(
    services: Services,
    simulated: SimulatedData,
    fresh_cluster: PostgresCluster,
    tmp_path: Path,
) -> None:
    settings = services.settings(database_url=simulated.url, api_rate_limit=UNLIMITED)
    paths = requests_of(simulated)
    before = answers(settings, paths)
    assert all(status == 200 for status, _, _, _ in before.values()), {
        p: a[0] for p, a in before.items() if a[0] != 200
    }
    steps: list[tuple[int, int]] = []
    made = backup(
        simulated.url,
        tmp_path / "backups",
        client_bindir(settings),
        progress=lambda done, total, _what: steps.append((done, total)),
    )
    assert made.path.name.startswith("smartby-")
    assert made.tables > 10
    assert steps[-1][0] == made.tables  # progress reached every table
    assert fresh_cluster.port != services.cluster.port
    restored = restore(fresh_cluster.url("smartby"), made.path, client_bindir(settings))
    assert restored.timescaledb
    after = answers(
        settings.model_copy(update={"database_url": SecretStr(fresh_cluster.url("smartby"))}), paths
    )
    different = [path for path in paths if after[path] != before[path]]
    assert different == []
    # the readings are a hypertable again, with their chunks
    with psycopg.connect(fresh_cluster.url("smartby")) as conn:
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
        ).fetchone()
        assert chunks is not None
        assert chunks[0] >= 3
        count = conn.execute("SELECT count(*) FROM readings").fetchone()
    with psycopg.connect(simulated.url) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == count


def test_a_restore_over_live_data_is_refused(
    services: Services, simulated: SimulatedData, tmp_path: Path, settings: Settings
) -> None:
    made = backup(simulated.url, tmp_path, client_bindir(settings))
    with pytest.raises(BackupError, match="not empty"):
        restore(simulated.url, made.path, client_bindir(settings))
    garbage = tmp_path / "smartby-20260101T000000Z.dump"
    garbage.write_bytes(b"not a dump")
    with pytest.raises(BackupError, match="not a pg_dump"):
        restore(services.database_url, garbage, client_bindir(settings))


def test_rotation_keeps_the_newest(tmp_path: Path) -> None:
    for day in range(1, 6):
        (tmp_path / f"smartby-202601{day:02d}T020000Z.dump").write_bytes(b"x")
        (tmp_path / f"smartby-202601{day:02d}T020000Z.json").write_text("{}")
    (tmp_path / "keep-me.dump").write_bytes(b"not ours")
    removed = rotate(tmp_path, 2)
    assert [p.name for p in removed] == [f"smartby-202601{d:02d}T020000Z.dump" for d in (1, 2, 3)]
    assert [p.name for p in backups(tmp_path)] == [
        "smartby-20260104T020000Z.dump",
        "smartby-20260105T020000Z.dump",
    ]
    assert (tmp_path / "keep-me.dump").exists()
    assert not (tmp_path / "smartby-20260101T020000Z.json").exists()


def test_the_cli_backs_up_with_rotation_and_fails_with_one_line(
    simulated: SimulatedData, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "SMARTBY_DATABASE_URL": simulated.url,
        "SMARTBY_BACKUP_DIR": str(tmp_path),
    }
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-m", "smartby", "db", "backup", "--keep", "1"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
    assert len(backups(tmp_path)) == 1
    assert "wrote " in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "smartby", "db", "restore", str(tmp_path / "missing.dump")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"smartby: error: no backup file {tmp_path}/missing.dump"
    ]
