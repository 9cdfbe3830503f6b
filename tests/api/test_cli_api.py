"""`smartby api` serves the API on the configured database, stops on SIGTERM, and
fails in one clear line when it cannot start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request

from stack.ports import free_port
from tests.fixtures.ingest import wait_for
from tests.fixtures.services import Services


def smartby_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    return {**env, "SMARTBY_ENV": "test", **variables}


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def test_api_serves_and_stops_on_sigterm(services: Services, db_url: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartby", "api", "--port", str(port)],
        env=smartby_env(SMARTBY_DATABASE_URL=db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: answers(f"http://127.0.0.1:{port}/v1/metrics") or proc.poll() is not None,
            timeout=60,
            what="the API answering",
        )
        assert proc.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1", timeout=5) as response:
            assert response.headers["X-License"] == "NLOD-2.0"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output


def failed_api(port: int, database_url: str) -> subprocess.CompletedProcess[str]:
    """`smartby api` that is expected to fail to start: exit status 1."""
    result = subprocess.run(
        [sys.executable, "-m", "smartby", "api", "--port", str(port)],
        env=smartby_env(SMARTBY_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    return result


def test_a_taken_port_or_no_database_is_one_clear_line(services: Services, db_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        result = failed_api(taken, db_url)
    assert result.stderr == (
        f"smartby: error: cannot serve the API on 127.0.0.1:{taken}: the port is in use "
        "(choose another with --port or SMARTBY_API_PORT)\n"
    )

    unreachable = f"postgresql://smartby:x@127.0.0.1:{free_port()}/none"
    result = failed_api(free_port(), unreachable)
    assert result.stderr.startswith("smartby: error: database unreachable:")
    assert result.stderr.count("\n") == 1


def test_the_server_runs_on_uvloop_and_httptools() -> None:
    """uvicorn[standard] brings both; the server uses httptools with its bounds
    (`api.server`), and leaves uvicorn to pick the loop."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from api.app import create_app
    from api.server import server_config
    from core.settings import Settings

    settings = Settings(env="test", database_url="postgresql://x@127.0.0.1:9/none")  # type: ignore[arg-type]
    config = server_config(create_app(settings), host="127.0.0.1", port=free_port())
    config.load()
    assert issubclass(config.http_protocol_class, HttpToolsProtocol)
    loop_factory = config.get_loop_factory()
    assert loop_factory is not None
    loop = loop_factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
