"""`smartby broker certificates` and `smartby broker client-certificate`: what compose's
broker-certs service and an operator run, with what they print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from stack.certificates import certificate_names


def smartby(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env.update({"SMARTBY_DATA_DIR": str(data_dir), "SMARTBY_MQTT_TLS_NAMES": "mqtt.a.example"})
    return subprocess.run(
        [sys.executable, "-m", "smartby", "broker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_certificates_are_made_once_then_kept_and_sign_client_certificates(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "tls"
    made = smartby(tmp_path, "certificates", "--name", "mqtt.b.example")
    assert made.returncode == 0, made.stderr
    assert made.stdout == (
        f"{folder}/server.crt: created; devices trust the CA file {folder}/ca.crt\n"
    )
    assert {"mqtt.a.example", "mqtt.b.example", "localhost", "127.0.0.1"} <= set(
        certificate_names(folder / "server.crt")
    )
    kept = smartby(tmp_path, "certificates", str(folder), "--name", "mqtt.b.example")
    assert kept.stdout.startswith(f"{folder}/server.crt: kept;"), kept.stdout

    issued = smartby(tmp_path, "client-certificate", "aq-1", "--out", str(tmp_path / "aq"))
    assert issued.returncode == 0, issued.stderr
    client = x509.load_pem_x509_certificate((tmp_path / "aq" / "aq-1.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    client.verify_directly_issued_by(ca)


def test_a_folder_of_ones_own_is_left_alone_and_no_ca_is_one_clear_line(tmp_path: Path) -> None:
    own = tmp_path / "own"
    assert smartby(tmp_path, "certificates", str(own)).returncode == 0
    for name in ("ca.crt", "ca.key"):
        (own / name).unlink()  # as a folder holding only a certificate and key of its own
    before = (own / "server.crt").read_bytes()
    kept = smartby(tmp_path, "certificates", str(own))
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == f"{own}/server.crt: not issued by a CA of ours; kept as it is\n"
    assert (own / "server.crt").read_bytes() == before

    missing = smartby(tmp_path, "client-certificate", "aq-1", "--folder", str(own))
    assert missing.returncode == 1
    assert missing.stderr == (
        f"smartby: error: no broker CA in {own}: `smartby up` or `smartby broker certificates`"
        " makes one\n"
    )
