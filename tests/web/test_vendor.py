"""The vendored front-end files are the ones scripts/vendor took from npm: every file
has the sha256 its manifest records, and nothing unrecorded sits beside them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from web.assets import VENDOR, vendor_url, vendored

ROOT = Path(__file__).resolve().parents[2]


def test_every_vendored_file_matches_its_manifest_checksum() -> None:
    manifest = json.loads((VENDOR / "MANIFEST.json").read_text(encoding="utf-8"))
    seen = set()
    for name, entry in manifest["packages"].items():
        assert entry["integrity"].startswith("sha512-"), name
        for file, digest in entry["files"].items():
            path = VENDOR / f"{name}-{entry['version']}" / file
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path
            seen.add(path)
    on_disk = {p for p in VENDOR.rglob("*") if p.is_file() and p.name != "MANIFEST.json"}
    assert on_disk == seen
    assert {"leaflet", "uplot", "axe-core", "swagger-ui-dist", "redoc"} <= set(manifest["packages"])


def test_the_vendor_script_checks_offline() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_vendor_urls_name_the_pinned_version() -> None:
    assert vendor_url("leaflet", "leaflet.js") == (
        f"/static/vendor/leaflet-{vendored()['leaflet']['version']}/leaflet.js"
    )
