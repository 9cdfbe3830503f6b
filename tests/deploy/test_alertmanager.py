"""Alertmanager's configuration, rendered by deploy/alertmanager/render.sh from the
template and the SMARTBY_ALERT_* variables the way the container renders it, passes
``amtool check-config`` for each choice of receiver; bad values are refused with a
clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER = ROOT / "deploy" / "alertmanager"
EMAIL = {
    "SMARTBY_ALERT_EMAIL_TO": "drift@narvik.kommune.no",
    "SMARTBY_ALERT_EMAIL_FROM": "smartby@narvik.kommune.no",
    "SMARTBY_ALERT_SMTP_HOST": "smtp.narvik.kommune.no:587",
    "SMARTBY_ALERT_SMTP_USERNAME": "smartby",
    # characters that would break a naive sed substitution or YAML
    "SMARTBY_ALERT_SMTP_PASSWORD": "p&ss|w$rd: #1 'x'",
}
WEBHOOK = {
    "SMARTBY_ALERT_WEBHOOK_URL": "https://alerts.narvik.kommune.no/hooks/smartby?token=a&b=c"
}


def render(tmp_path: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "alertmanager.yml"
    return subprocess.run(
        [
            "sh",
            str(ALERTMANAGER / "render.sh"),
            str(ALERTMANAGER / "alertmanager.yml.tmpl"),
            str(out),
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **variables},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def check_config(path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is not installed: scripts/setup installs it (prometheus-alertmanager)")
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def rendered(tmp_path: Path, variables: dict[str, str]) -> dict[str, Any]:
    result = render(tmp_path, variables)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "alertmanager.yml"
    check_config(path)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def operations(document: dict[str, Any]) -> dict[str, Any]:
    (receiver,) = document["receivers"]
    assert receiver["name"] == "operations"
    assert document["route"]["receiver"] == "operations"
    return dict(receiver)


def test_email_receiver(tmp_path: Path) -> None:
    document = rendered(tmp_path, EMAIL)
    receiver = operations(document)
    assert receiver["email_configs"] == [{"to": "drift@narvik.kommune.no", "send_resolved": True}]
    assert "webhook_configs" not in receiver
    assert document["global"]["smtp_smarthost"] == "smtp.narvik.kommune.no:587"
    assert document["global"]["smtp_auth_password"] == EMAIL["SMARTBY_ALERT_SMTP_PASSWORD"]
    assert document["global"]["smtp_require_tls"] is True


def test_webhook_receiver(tmp_path: Path) -> None:
    document = rendered(tmp_path, WEBHOOK)
    receiver = operations(document)
    assert receiver["webhook_configs"] == [
        {"url": WEBHOOK["SMARTBY_ALERT_WEBHOOK_URL"], "send_resolved": True}
    ]
    assert "email_configs" not in receiver
    assert "smtp_smarthost" not in document["global"]


def test_both_receivers_and_neither(tmp_path: Path) -> None:
    both = operations(rendered(tmp_path, {**EMAIL, **WEBHOOK}))
    assert set(both) >= {"email_configs", "webhook_configs"}
    result = render(tmp_path, {})
    assert result.returncode == 0
    assert "alerts are only listed, not sent" in result.stderr
    check_config(tmp_path / "alertmanager.yml")
    assert operations(yaml.safe_load((tmp_path / "alertmanager.yml").read_text())) == {
        "name": "operations"
    }


def test_email_without_a_mail_server_is_refused(tmp_path: Path) -> None:
    result = render(tmp_path, {"SMARTBY_ALERT_EMAIL_TO": "drift@narvik.kommune.no"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "alertmanager config: SMARTBY_ALERT_EMAIL_TO is set: set SMARTBY_ALERT_SMTP_HOST"
        " (host:port) too"
    ]


@pytest.mark.parametrize("value", ['se"cret', "back\\slash"])
def test_a_value_that_would_break_the_yaml_is_refused(tmp_path: Path, value: str) -> None:
    result = render(tmp_path, {**EMAIL, "SMARTBY_ALERT_SMTP_PASSWORD": value})
    assert result.returncode != 0
    assert "SMARTBY_ALERT_SMTP_PASSWORD holds a double quote or a backslash" in result.stderr


def test_inhibitions_name_alerts_that_exist(tmp_path: Path) -> None:
    """An inhibition naming an alert nobody raises would silently never apply."""
    import re

    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/rules/smartby.yml").read_text())
    names = {rule["alert"] for group in prometheus["groups"] for rule in group["rules"]}
    grafana = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/alerting/smartby-alerts.yaml").read_text()
    )
    names |= {rule["title"] for group in grafana["groups"] for rule in group["rules"]}
    document = rendered(tmp_path, WEBHOOK)
    for inhibition in document["inhibit_rules"]:
        for matcher in (*inhibition["source_matchers"], *inhibition["target_matchers"]):
            found = re.fullmatch(r'alertname(=~|=)"([^"]+)"', matcher)
            assert found is not None, matcher
            for name in found.group(2).split("|"):
                assert name in names, f"inhibition names {name}, which no rule raises"
