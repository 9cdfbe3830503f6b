"""A real Caddy running deploy/caddy/Caddyfile, the file compose runs, against local
processes: the variables the Caddyfile reads point its upstreams, ports and admin
address at them, and its site at 127.0.0.1 with a certificate from Caddy's internal
CA (SMARTBY_TLS=internal, the test set-up of the README)."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from stack.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
SITE = "127.0.0.1"


def caddy_binary() -> str:
    found = shutil.which("caddy")
    if found is None:
        pytest.fail("caddy is not installed: scripts/setup installs it (Debian package caddy)")
    return found


class Caddy:
    """``caddy run`` on the production Caddyfile; `stop` ends it."""

    def __init__(
        self,
        home: Path,
        *,
        api_port: int,
        grafana_port: int,
        root_path: str = "",
        site: str = SITE,
    ) -> None:
        self.home = home
        self.site = site
        self.https_port = free_port()
        self.http_port = free_port()
        self.admin_port = free_port()
        self.log = home / "caddy.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # the internal CA's keys and certificates live under XDG_DATA_HOME/caddy
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "SMARTBY_SITE": site,
            "SMARTBY_TLS": "internal",
            "SMARTBY_CADDY_BIND": SITE,
            "SMARTBY_CADDY_HTTPS_PORT": str(self.https_port),
            "SMARTBY_CADDY_HTTP_PORT": str(self.http_port),
            "SMARTBY_CADDY_ADMIN": f"127.0.0.1:{self.admin_port}",
            "SMARTBY_API_UPSTREAM": f"127.0.0.1:{api_port}",
            "SMARTBY_GRAFANA_UPSTREAM": f"127.0.0.1:{grafana_port}",
            "SMARTBY_API_ROOT_PATH": root_path,
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [caddy_binary(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.context = self._wait_ready()

    @property
    def url(self) -> str:
        return f"https://{self.site}:{self.https_port}"

    @property
    def root_certificate(self) -> Path:
        return self.home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def _wait_ready(self) -> ssl.SSLContext:
        """Poll until Caddy answers over TLS with a certificate its CA signed."""
        deadline = time.monotonic() + 60
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.root_certificate.is_file():
                context = ssl.create_default_context(cafile=str(self.root_certificate))
                try:
                    with httpx.Client(verify=context, timeout=5) as client:
                        client.get(self.url + "/grafana/ready")
                    return context
                except (httpx.TransportError, ssl.SSLError) as exc:
                    last = exc
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"caddy did not come up ({last}):\n{self.log.read_text()[-3000:]}")

    def client(self, source: str, **kwargs: object) -> httpx.Client:
        """An HTTPS client of the proxy whose connections come from ``source`` (any
        127/8 address is this machine's: each is a different client to Caddy)."""
        transport = httpx.HTTPTransport(local_address=source, verify=self.context)
        return httpx.Client(base_url=self.url, transport=transport, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
