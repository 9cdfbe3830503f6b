"""Publishing to an existing Grafana through grafana-client: idempotent, and one clear
line for a wrong URL or token.  The Grafana here is a small fake HTTP API run in-process
(tests/dashboards/fake_grafana.py); grafana-client itself is not mocked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import SmartbyError
from dashboards.datasources import api_payloads, database_target
from dashboards.publish import FOLDER_UID, publish
from stack.ports import free_port
from tests.dashboards.fake_grafana import answering, fake_grafana

TOKEN = "glsa_test_token"
UIDS = {"smartby-air-quality", "smartby-energy", "smartby-traffic", "smartby-operations"}
SOURCES = api_payloads("postgresql://grafana:s3cret@db.example:5433/smartby", "http://prom:9090")


def posts(requests: list[tuple[str, str]], path: str) -> int:
    return sum(1 for method, p in requests if method == "POST" and p == path)


def test_first_publish_creates_folder_data_sources_and_dashboards() -> None:
    """Publish into an empty Grafana: folder, two data sources and four dashboards appear."""
    with fake_grafana(TOKEN) as (url, grafana):
        report = publish(url, TOKEN, "smartby", SOURCES)
    assert report.folder_created
    assert grafana.folders[FOLDER_UID]["title"] == "smartby"
    assert report.datasources == {
        "smartby-timescaledb": "created",
        "smartby-prometheus": "created",
    }
    pg = grafana.datasources["smartby-timescaledb"]
    assert pg["url"] == "db.example:5433"
    assert pg["jsonData"]["timescaledb"] is True
    assert pg["secureJsonData"] == {"password": "s3cret"}
    assert report.dashboards == dict.fromkeys(UIDS, "created")
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {FOLDER_UID}


def test_publishing_again_changes_nothing() -> None:
    """A second publish finds the folder and identical dashboards, and saves none of them."""
    with fake_grafana(TOKEN) as (url, grafana):
        publish(url, TOKEN, "smartby", SOURCES)
        before = {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()}
        grafana.requests.clear()
        report = publish(url, TOKEN, "smartby", SOURCES)
    assert not report.folder_created
    assert report.dashboards == dict.fromkeys(UIDS, "unchanged")
    assert posts(grafana.requests, "/api/dashboards/db") == 0
    assert posts(grafana.requests, "/api/folders") == 0
    assert {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()} == before
    assert report.datasources == dict.fromkeys(
        ["smartby-timescaledb", "smartby-prometheus"], "updated"
    )


def test_a_dashboard_edited_in_grafana_is_put_back() -> None:
    with fake_grafana(TOKEN) as (url, grafana):
        publish(url, TOKEN)
        grafana.dashboards["smartby-energy"]["dashboard"]["title"] = "edited by hand"
        report = publish(url, TOKEN)
        assert grafana.dashboards["smartby-energy"]["dashboard"]["title"] != "edited by hand"
        assert grafana.dashboards["smartby-energy"]["dashboard"]["version"] == 2
    assert report.dashboards["smartby-energy"] == "updated"
    assert report.dashboards["smartby-traffic"] == "unchanged"


def test_without_data_sources_missing_ones_are_reported() -> None:
    with fake_grafana(TOKEN) as (url, grafana):
        report = publish(url, TOKEN)
    assert report.datasources == {}
    assert report.missing_datasources == ["smartby-timescaledb", "smartby-prometheus"]
    assert not grafana.datasources


def test_a_renamed_folder_gets_its_title_back() -> None:
    with fake_grafana(TOKEN) as (url, grafana):
        publish(url, TOKEN, "City dashboards")
        assert grafana.folders[FOLDER_UID]["title"] == "City dashboards"
        publish(url, TOKEN, "smartby")
        assert grafana.folders[FOLDER_UID]["title"] == "smartby"


def test_a_wrong_token_is_one_clear_error() -> None:
    with fake_grafana(TOKEN) as (url, grafana), pytest.raises(SmartbyError) as caught:
        publish(url, "wrong")
    assert "refused the token (401 Unauthorized)" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not grafana.dashboards


def test_a_server_answering_401_is_a_token_error() -> None:
    with (
        answering(401, b'{"message": "Unauthorized"}', "application/json") as url,
        pytest.raises(SmartbyError, match=r"refused the token \(401 Unauthorized\)"),
    ):
        publish(url, TOKEN)


def test_a_closed_port_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SmartbyError, match=f"cannot reach Grafana at {url}"):
        publish(url, TOKEN, timeout=3)


def test_something_that_is_not_grafana_is_a_url_error() -> None:
    with (
        answering(404, b"<html>nothing here</html>", "text/html") as url,
        pytest.raises(SmartbyError, match=r"no Grafana HTTP API .*check --url"),
    ):
        publish(url, TOKEN)
    with (
        answering(200, b"<html>a web site</html>", "text/html") as url,
        pytest.raises(SmartbyError, match="does not answer like Grafana"),
    ):
        publish(url, TOKEN)


def test_the_command_prints_one_line_and_exits_1_for_a_wrong_url() -> None:
    smartby = Path(sys.executable).parent / "smartby"
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [str(smartby), "dashboards", "publish", "--url", url, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("smartby: error:")
    ]
    assert f"cannot reach Grafana at {url}" in result.stderr


def test_the_command_publishes_and_reports(tmp_path: Path) -> None:
    smartby = Path(sys.executable).parent / "smartby"
    with fake_grafana(TOKEN) as (url, grafana):
        result = subprocess.run(
            [str(smartby), "dashboards", "publish", "--url", url, "--folder", "Smart city"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"SMARTBY_GRAFANA_TOKEN": TOKEN, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr
    assert "folder 'Smart city': created" in result.stdout
    assert "dashboard smartby-air-quality: created" in result.stdout
    assert "no data source with uid 'smartby-timescaledb'" in result.stderr
    assert set(grafana.dashboards) == UIDS


def test_database_url_becomes_grafana_connection_settings() -> None:
    target = database_target("postgresql://ro%40user:p%2Fw@db:6432/city?sslmode=require")
    assert (target.host_port, target.user, target.password, target.database, target.sslmode) == (
        "db:6432",
        "ro@user",
        "p/w",
        "city",
        "require",
    )
    with pytest.raises(SmartbyError, match="postgresql://"):
        database_target("sqlite:///x.db")
