"""Static checks of the production Docker deployment: compose file, its configs and image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.broker import public_topics
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOY = ROOT / "deploy"

SMARTBY_SERVICES = ("migrate", "broker-config", "broker-certs", "ingest", "api")
OPERATIONS_SERVICES = {"alertmanager", "node-exporter", "caddy"}
EXPECTED_SERVICES = {
    "timescaledb",
    "mosquitto",
    "grafana",
    "prometheus",
    *SMARTBY_SERVICES,
    *OPERATIONS_SERVICES,
}
#: services that run once and exit: no healthcheck
ONE_SHOT = {"migrate", "broker-config", "broker-certs"}
#: the one host path outside the repository a service may mount: node-exporter reads
#: the host's filesystems, read-only
HOST_MOUNTS = {("node-exporter", "/", "/host")}
SMARTBY_ENV_KEYS = {
    "SMARTBY_ENV",
    "SMARTBY_DATABASE_URL",
    "SMARTBY_MQTT_HOST",
    "SMARTBY_MQTT_PORT",
    "SMARTBY_MQTT_PASSWORD",
    "SMARTBY_CITY",
}
# ${NAME:?message} or ${NAME?message}: a variable compose refuses to run without.
REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?")


def load_yaml(path: Path) -> Any:
    """Parse one YAML file; fail with the file's name if it is missing or not YAML."""
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), "docker-compose.yml: services is not a mapping"
    assert found, "docker-compose.yml has no services"
    return found


def env_example() -> dict[str, str]:
    """The KEY=value lines of .env.example (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env.example: not KEY=value: {line!r}"
        values[key.strip()] = value.strip()
    return values


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever of compose's two forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


#: a volume source chosen by a variable, as compose reads it when the variable is unset
DEFAULTED_SOURCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}")


def bind_sources(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume entry of a service, short or long syntax; a
    source ``${VAR:-default}`` counts as its default."""
    mounts: list[tuple[str, str]] = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            entry = DEFAULTED_SOURCE.sub(lambda m: m.group(1), entry)
            source, _, rest = entry.partition(":")
            mounts.append((source, rest.partition(":")[0]))
        else:
            mounts.append((str(entry.get("source", "")), str(entry.get("target", ""))))
    return mounts


def is_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= EXPECTED_SERVICES


def test_every_service_names_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: no image and no build"


def test_mounted_repo_paths_exist_and_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source, target in bind_sources(service):
            if (name, source, target) in HOST_MOUNTS:
                assert any(str(v).endswith((":ro", ":ro,rslave")) for v in service["volumes"])
                continue
            if is_path(source):
                assert not source.startswith(("/", "~")), f"{name}: host path {source} outside repo"
                path = (ROOT / source).resolve()
                assert path.is_relative_to(ROOT), f"{name}: {source} is outside the repository"
                assert path.exists(), f"{name} mounts {source} at {target}, which does not exist"
            else:
                assert source in declared, f"{name}: volume {source!r} not declared at top level"


def test_depends_on_names_existing_services(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        deps = service.get("depends_on") or []
        for dep in deps:
            assert dep in services, f"{name} depends on unknown service {dep!r}"


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert "healthcheck" in services["timescaledb"]
    for name in ("ingest", "api"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert services["ingest"]["depends_on"]["mosquitto"]["condition"] == "service_started"
    # the broker starts once its accounts are written, and they need the schema
    config = services["broker-config"]
    assert config["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (
        services["mosquitto"]["depends_on"]["broker-config"]["condition"]
        == "service_completed_successfully"
    )
    # one worker on the plain subscription by default (README, "Subscription modes")
    assert services["ingest"]["deploy"]["replicas"] == 1
    assert "${SMARTBY_INGEST_SUBSCRIPTION:-plain}" in COMPOSE_FILE.read_text(encoding="utf-8")


def test_smartby_services_share_image_and_settings(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in SMARTBY_SERVICES}
    assert len(images) == 1, f"smartby services use different images: {images}"
    for name in SMARTBY_SERVICES:
        env = environment_of(services[name])
        assert set(env) >= SMARTBY_ENV_KEYS, f"{name} lacks {SMARTBY_ENV_KEYS - set(env)}"
        assert env["SMARTBY_ENV"] == "production"
        assert env["SMARTBY_MQTT_HOST"] == "mosquitto"
        assert "@timescaledb:5432/" in env["SMARTBY_DATABASE_URL"]
    assert services["migrate"]["command"] == ["db", "migrate", "--roles"]
    assert services["ingest"]["command"][0] == "ingest"
    assert services["api"]["command"][0] == "api"


def test_secrets_have_no_default(services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = set(REQUIRED_VAR.findall(text))
    assert required >= {
        "SMARTBY_DB_PASSWORD",
        "SMARTBY_MQTT_PASSWORD",
        "SMARTBY_GRAFANA_ADMIN_PASSWORD",
    }
    db_env = environment_of(services["timescaledb"])
    assert db_env["POSTGRES_PASSWORD"].startswith("${SMARTBY_DB_PASSWORD:?")
    grafana_env = environment_of(services["grafana"])
    assert grafana_env["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${SMARTBY_GRAFANA_ADMIN_PASSWORD:?"
    )


def test_env_example_covers_every_variable() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = set(REQUIRED_VAR.findall(text))
    defined = env_example()
    assert required <= set(defined), f".env.example lacks {required - set(defined)}"
    for name in required:
        assert "change" in defined[name].lower(), f"{name} in .env.example looks real"


def test_prometheus_scrapes_ingest_and_api() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    ingest = [
        sd
        for job in jobs.values()
        for sd in job.get("dns_sd_configs", [])
        if "ingest" in sd.get("names", [])
    ]
    assert ingest, "no dns_sd_configs job for the ingest replicas"
    assert ingest[0]["type"] == "A"
    assert ingest[0]["port"] == 9101
    api = [
        job
        for job in jobs.values()
        for static in job.get("static_configs", [])
        if "api:8000" in static.get("targets", [])
    ]
    assert api, "no job scrapes api:8000"
    assert api[0].get("metrics_path", "/metrics") == "/metrics"


def test_prometheus_config_is_mounted(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict(bind_sources(services["prometheus"]))
    assert mounts.get("./deploy/prometheus") == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def test_grafana_provisioning(services: dict[str, dict[str, Any]]) -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = load_yaml(provisioning / "datasources" / "datasources.yaml")
    by_uid = {ds["uid"]: ds for ds in datasources["datasources"]}
    assert set(by_uid) == {"smartby-timescaledb", "smartby-prometheus"}
    pg = by_uid["smartby-timescaledb"]
    assert pg["type"] in {"grafana-postgresql-datasource", "postgres"}
    assert pg["url"] == "timescaledb:5432"
    assert pg["user"] == "smartby_read"  # the read-only login (migration 0011)
    assert pg["jsonData"]["database"] == "smartby"
    assert pg["jsonData"]["timescaledb"] is True
    assert pg["jsonData"]["sslmode"] == "disable"
    assert pg["secureJsonData"]["password"] in {
        "$SMARTBY_DB_READER_PASSWORD",
        "${SMARTBY_DB_READER_PASSWORD}",
    }
    assert by_uid["smartby-prometheus"]["url"] == "http://prometheus:9090"
    # Grafana interpolates the password from its own environment.
    assert "SMARTBY_DB_READER_PASSWORD" in environment_of(services["grafana"])

    dashboards = load_yaml(provisioning / "dashboards" / "dashboards.yaml")
    paths = {p["options"]["path"] for p in dashboards["providers"] if p["type"] == "file"}
    mounts = dict(bind_sources(services["grafana"]))
    assert mounts.get("./deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    assert mounts.get("./dashboards/generated") in paths, "dashboards folder not provisioned"


def mosquitto_options() -> dict[str, str]:
    options: dict[str, str] = {}
    for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.strip().partition(" ")
            options.setdefault(key, value.strip())
    return options


#: where the eclipse-mosquitto image installs the plugin (docker/2.0-openssl/Dockerfile
#: of eclipse/mosquitto: install ... /usr/lib/mosquitto_dynamic_security.so)
IMAGE_PLUGIN = "/usr/lib/mosquitto_dynamic_security.so"


def test_mosquitto_runs_on_dynamic_security(services: dict[str, dict[str, Any]]) -> None:
    """Passwords required, accounts and roles in the plugin (no password file, no ACL
    file), its file on the volume broker-config writes, saved every 2 s."""
    options = mosquitto_options()
    assert options.get("allow_anonymous") == "false"
    assert options.get("per_listener_settings") == "false"
    assert options.get("plugin") == IMAGE_PLUGIN
    assert "password_file" not in options
    assert "acl_file" not in options
    assert not (DEPLOY / "mosquitto" / "passwd").exists()
    assert not (DEPLOY / "mosquitto" / "acl").exists()
    config_file = Path(options["plugin_opt_config_file"])
    mounts = {target: source for source, target in bind_sources(services["mosquitto"])}
    volume = mounts[str(config_file.parent)]
    assert not is_path(volume), "the accounts file must live on a named volume"
    writer = services["broker-config"]
    assert (volume, str(config_file.parent)) in bind_sources(writer)
    command = writer["command"]
    assert command[:2] == ["broker", "sync"]
    assert command[command.index("--config-file") + 1] == str(config_file)
    assert str(writer["user"]).split(":")[0] == "1883"  # the image's mosquitto user
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(
        rf"install -d -o 1883 -g 1883 -m 0700 .*{re.escape(str(config_file.parent))}", dockerfile
    )
    assert options.get("persistence") == "true"
    assert options.get("autosave_interval") == "1"
    assert options.get("autosave_on_changes") == "false"
    assert int(options["max_inflight_messages"]) >= 5000
    assert int(options["max_queued_messages"]) > int(options["max_inflight_messages"])


def mosquitto_listeners() -> dict[str, dict[str, str]]:
    """Each listener of deploy/mosquitto/mosquitto.conf with the options that follow its
    `listener` line (mosquitto.conf(5): listener options apply to the last listener)."""
    listeners: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.strip().partition(" ")
        if key == "listener":
            current = listeners.setdefault(value.split()[0], {})
        elif current is not None:
            current[key] = value.strip()
    return listeners


def test_mosquitto_serves_tls_for_devices_with_certificates_from_a_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    """8883 published, with the same access rules as 1883; its certificate and key on a
    volume (by default the named one broker-certs fills as the broker's user, before
    the broker starts), which the broker reads but cannot write."""
    listeners = mosquitto_listeners()
    assert set(listeners) == {"1883", "8883"}
    tls = listeners["8883"]
    assert mosquitto_options()["per_listener_settings"] == "false"
    certs = Path(tls["certfile"]).parent
    assert Path(tls["keyfile"]).parent == certs
    assert "require_certificate" not in tls  # passwords over TLS by default
    assert "certfile" not in listeners["1883"]
    broker = services["mosquitto"]
    assert "8883:8883" in broker["ports"]
    volume = {target: source for source, target in bind_sources(broker)}[str(certs)]
    assert not is_path(volume), "by default the certificates live on a named volume"
    read_only = [v for v in broker["volumes"] if isinstance(v, str) and f":{certs}:" in v]
    assert len(read_only) == 1
    assert read_only[0].endswith(":ro"), read_only
    maker = services["broker-certs"]
    assert (volume, str(certs)) in bind_sources(maker)
    assert maker["command"][:3] == ["broker", "certificates", str(certs)]
    assert str(maker["user"]).split(":")[0] == "1883"  # the image's mosquitto user
    assert broker["depends_on"]["broker-certs"]["condition"] == "service_completed_successfully"
    # a folder of one's own replaces the volume in both (SMARTBY_MQTT_CERTS)
    for service in (broker, maker):
        assert any(str(v).startswith("${SMARTBY_MQTT_CERTS:-") for v in service["volumes"]), service
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"install -d -o 1883 -g 1883 -m 0700 .*{re.escape(str(certs))}", dockerfile)


def test_mosquitto_image_is_a_pinned_2_0_release(services: dict[str, dict[str, Any]]) -> None:
    """Not the floating `2` (now 2.1): a 2.0 release from 2.0.21 on."""
    for name in ("mosquitto", "mosquitto-public"):
        match = re.fullmatch(r"eclipse-mosquitto:2\.0\.(\d+)(-openssl)?", services[name]["image"])
        assert match, services[name]["image"]
        assert int(match.group(1)) >= 21


def public_options() -> dict[str, str]:
    options: dict[str, str] = {}
    for line in (DEPLOY / "mosquitto-public" / "mosquitto.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.strip().partition(" ")
            options.setdefault(key, value.strip())
    return options


def test_the_public_stream_has_a_broker_of_its_own(services: dict[str, dict[str, Any]]) -> None:
    """Anonymous readers only on mosquitto-public (opt-in profile), reading v1.1/# and
    the warnings, nothing else, fed by the bridge file broker-config writes; the platform's broker
    stays closed to anonymous clients."""
    public = services["mosquitto-public"]
    assert public["profiles"] == ["public-stream"]
    options = public_options()
    assert options["allow_anonymous"] == "true"
    assert options["persistence"] == "false"
    acl = [
        line
        for line in (DEPLOY / "mosquitto-public" / "acl").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    prefix = Settings.model_fields["mqtt_topic_prefix"].default  # compose keeps it
    assert acl == [f"topic read {topic}" for topic in public_topics(prefix)]
    assert Path(options["acl_file"]).parent == Path("/mosquitto/config")
    bridge_dir = options["include_dir"]
    command = services["broker-config"]["command"]
    bridge_file = Path(command[command.index("--bridge-file") + 1])
    assert str(bridge_file.parent) == bridge_dir
    volume = {target: source for source, target in bind_sources(public)}[bridge_dir]
    assert (volume, bridge_dir) in bind_sources(services["broker-config"])
    assert mosquitto_options()["allow_anonymous"] == "false"


def test_only_the_services_that_change_devices_hold_the_broker_admin(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        holds = "SMARTBY_BROKER_ADMIN_PASSWORD" in environment_of(service)
        assert holds == (name in {"broker-config", "api"}), name


def test_dockerfile_runs_smartby_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users, "Dockerfile has no USER"
    assert users[-1] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["smartby"\]', text, re.M)
    assert "pip install --no-cache-dir -r requirements.lock" in text
    packages = ("core", "db", "stack", "ingest", "api", "devices", "dashboards", "web", "smartby")
    for package in packages:
        assert f"COPY {package}/ {package}/" in text
        assert (ROOT / package).is_dir()
        assert f"!{package}/" in (ROOT / ".dockerignore").read_text(encoding="utf-8")


def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed: scripts/setup installs it "
            "(Debian package docker-compose); run scripts/setup"
        )
    return binary


def run_config(env_file: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)}
    env.update(extra_env)
    return subprocess.run(
        [
            docker_compose(),
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            "config",
            "-q",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_docker_compose_config_accepts_the_file() -> None:
    result = run_config(ENV_EXAMPLE, env_example())
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_config_refuses_missing_passwords(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    result = run_config(empty, {})
    assert result.returncode != 0
    assert re.search(r"set SMARTBY_\w+_PASSWORD in \.env", result.stderr), result.stderr


# ------------------------------------------------------------- operations (issue 15)


def interpolated() -> dict[str, Any]:
    """The compose file as docker-compose reads it with .env.example's values."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ROOT), **env_example()}
    result = subprocess.run(
        [docker_compose(), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE),
         "--env-file", str(ENV_EXAMPLE), "config"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert isinstance(data, dict)
    return data


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert "healthcheck" not in service, name
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"


def test_the_api_trusts_forwarded_addresses_from_the_proxy_alone() -> None:
    from ipaddress import ip_address, ip_network

    data = interpolated()
    subnet = ip_network(data["networks"]["edge"]["ipam"]["config"][0]["subnet"])
    caddy = data["services"]["caddy"]
    assert set(caddy["networks"]) == {"edge"}, "Caddy reaches the API over the edge only"
    proxy = ip_address(caddy["networks"]["edge"]["ipv4_address"])
    assert proxy in subnet
    api_env = data["services"]["api"]["environment"]
    assert api_env["SMARTBY_API_TRUSTED_PROXIES"] == str(proxy)
    assert api_env["SMARTBY_API_FORWARDED_HEADER"] == "x-forwarded-for"
    for name in ("api", "grafana"):
        assert "edge" in data["services"][name]["networks"], f"{name} is not behind Caddy"
    # the API and Grafana are published on the host's loopback only: the way in from
    # outside is Caddy (a published port would reach them from Docker's gateway,
    # one address for every client)
    for name in ("api", "grafana", "prometheus", "alertmanager"):
        for port in data["services"][name].get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip')}:"
            assert str(published).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_caddy_serves_the_caddyfile_that_validates(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    mounts = dict(bind_sources(services["caddy"]))
    assert mounts["./deploy/caddy/Caddyfile"] == "/etc/caddy/Caddyfile"
    assert mounts["./deploy/caddy/certs"] == "/etc/caddy/certs"
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.fail("caddy is not installed: scripts/setup installs it (Debian package caddy)")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SMARTBY_SITE": "data.narvik.kommune.no",
        "SMARTBY_TLS": "drift@narvik.kommune.no",
    }
    caddyfile = str(DEPLOY / "caddy" / "Caddyfile")
    result = subprocess.run(
        [caddy, "validate", "--config", caddyfile, "--adapter", "caddyfile"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_grafana_is_served_from_its_sub_path_of_the_site(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment_of(services["grafana"])
    assert env["GF_SERVER_ROOT_URL"] == "https://${SMARTBY_SITE:-localhost}/grafana/"
    assert env["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    caddyfile = (DEPLOY / "caddy" / "Caddyfile").read_text(encoding="utf-8")
    assert re.search(
        r"handle /grafana\* \{\s*reverse_proxy \{\$SMARTBY_GRAFANA_UPSTREAM:grafana:3000\}",
        caddyfile,
    )
    assert "{$SMARTBY_API_UPSTREAM:api:8000}" in caddyfile
    assert "/grafana/api/health" in " ".join(services["grafana"]["healthcheck"]["test"])


def test_prometheus_and_alertmanager_are_wired(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict(bind_sources(services["alertmanager"]))
    assert mounts["./deploy/alertmanager"] == "/etc/alertmanager/smartby"
    command = " ".join(services["alertmanager"]["command"])
    assert "/etc/alertmanager/smartby/render.sh" in command
    assert "/etc/alertmanager/smartby/alertmanager.yml.tmpl" in command
    assert (DEPLOY / "alertmanager" / "render.sh").is_file()
    env = environment_of(services["alertmanager"])
    assert {k for k in env if k.startswith("SMARTBY_ALERT_")} >= {
        "SMARTBY_ALERT_EMAIL_TO",
        "SMARTBY_ALERT_SMTP_HOST",
        "SMARTBY_ALERT_WEBHOOK_URL",
    }
    assert services["prometheus"]["depends_on"]["alertmanager"]
    assert "--path.rootfs=/host" in services["node-exporter"]["command"]


def test_no_service_has_a_default_password(services: dict[str, dict[str, Any]]) -> None:
    """A secret in the compose file is a required variable (no default) or an optional
    one that is empty unless set; never a literal or a default value."""
    secret = re.compile(r"PASSWORD|SECRET|TOKEN|_KEYS?$")
    for name, service in services.items():
        for key, value in environment_of(service).items():
            if not secret.search(key):
                continue
            required = re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value)
            optional_empty = re.fullmatch(r"\$\{[A-Z_]+:-\}", value)
            assert required or optional_empty, f"{name}: {key}={value!r} has a default"
    # and every database URL carries a required password (each service its own login)
    for name in ("api", "ingest", "migrate"):
        url = environment_of(services[name])["SMARTBY_DATABASE_URL"]
        assert re.search(r":\$\{SMARTBY_DB_[A-Z_]*PASSWORD:\?", url), (name, url)
