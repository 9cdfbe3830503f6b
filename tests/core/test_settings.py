"""Settings read SMARTBY_* variables once, validate themselves, and refuse unsafe production."""

from __future__ import annotations

import pytest

from core.settings import Settings, SettingsError, load_settings

SAFE_PRODUCTION = {
    "SMARTBY_ENV": "production",
    "SMARTBY_DATABASE_URL": "postgresql://smartby:k8s-Long-Random-1@db:5432/smartby",
    "SMARTBY_MQTT_PASSWORD": "another-Long-Random-2",
    "SMARTBY_BROKER_ADMIN_PASSWORD": "a-third-Long-Random-3",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # Neither the developer's environment nor a .env in the checkout may leak in.
    for name in list(__import__("os").environ):
        if name.startswith("SMARTBY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_development_stack() -> None:
    settings = Settings()
    assert settings.env == "development"
    assert settings.embedded
    assert settings.mqtt_topic_prefix == "smartby"
    assert settings.city == "Narvik"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTBY_MQTT_PORT", "2883")
    monkeypatch.setenv("SMARTBY_INGEST_BATCH_SIZE", "123")
    settings = Settings()
    assert settings.mqtt_port == 2883
    assert settings.ingest_batch_size == 123


def test_dotenv_file_is_read(tmp_path) -> None:
    (tmp_path / ".env").write_text("SMARTBY_CITY=Tromsø\n", encoding="utf-8")
    assert Settings().city == "Tromsø"


def test_safe_production_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SAFE_PRODUCTION.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.env == "production"
    assert not settings.embedded


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"SMARTBY_MQTT_PASSWORD": None}, "no anonymous broker"),
        ({"SMARTBY_BROKER_ADMIN_PASSWORD": "admin"}, "SMARTBY_BROKER_ADMIN_PASSWORD is empty"),
        ({"SMARTBY_MQTT_PASSWORD": "changeme"}, "SMARTBY_MQTT_PASSWORD is empty or a default"),
        ({"SMARTBY_DATABASE_URL": "postgresql://smartby:postgres@db/smartby"}, "default password"),
        ({"SMARTBY_DATABASE_URL": "postgresql://smartby@db/smartby"}, "default password"),
        ({"SMARTBY_DATABASE_URL": None}, "SMARTBY_DATABASE_URL must be set"),
        (
            {"SMARTBY_STA_MQTT_PUBLISH": "true", "SMARTBY_STA_PUBLISHER_PASSWORD": "password"},
            "SMARTBY_STA_PUBLISHER_PASSWORD must be set to a real password",
        ),
    ],
)
def test_production_refuses_anonymous_broker_and_default_passwords(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, str | None], complaint: str
) -> None:
    for name, value in {**SAFE_PRODUCTION, **change}.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert complaint in message
    assert "\n" not in message  # one clear line


def test_the_same_weak_values_are_fine_outside_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTBY_DATABASE_URL", "postgresql://smartby:postgres@db/smartby")
    assert load_settings().database_url is not None


@pytest.mark.parametrize("prefix", ["", "a/b", "smartby/#", "+", "$SYS"])
def test_topic_prefix_must_be_one_plain_level(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("SMARTBY_MQTT_TOPIC_PREFIX", prefix)
    with pytest.raises(SettingsError, match="SMARTBY_MQTT_TOPIC_PREFIX"):
        load_settings()


def test_a_bad_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTBY_MQTT_PORT", "not-a-port")
    with pytest.raises(SettingsError, match=r"^SMARTBY_MQTT_PORT: "):
        load_settings()


def test_the_subscription_mode_is_plain_or_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().ingest_subscription == "plain"
    monkeypatch.setenv("SMARTBY_INGEST_SUBSCRIPTION", "shared")
    assert load_settings().ingest_subscription == "shared"
    monkeypatch.setenv("SMARTBY_INGEST_SUBSCRIPTION", "both")
    with pytest.raises(SettingsError, match=r"^SMARTBY_INGEST_SUBSCRIPTION: "):
        load_settings()


def test_empty_optional_values_count_as_unset() -> None:
    # docker compose passes `${SMARTBY_API_KEYS:-}` through as an empty string
    settings = load_settings(api_keys="", api_public_url="", database_url="")
    assert settings.api_keys is None
    assert settings.api_public_url is None
    assert settings.embedded


def test_mqtt_tls_of_clients_and_of_the_embedded_listener(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Clients speak TLS only with SMARTBY_MQTT_TLS; empty paths (compose passes unset
    variables as "") are unset; the listener's extra names are a comma-separated list."""
    from core.broker import ClientTls

    monkeypatch.setenv("SMARTBY_MQTT_CA_FILE", "/etc/smartby/ca.crt")
    monkeypatch.setenv("SMARTBY_MQTT_CERT_FILE", "")
    monkeypatch.setenv("SMARTBY_MQTT_TLS_NAMES", " mqtt.narvik.example, 10.20.0.5 ,")
    settings = Settings()
    assert settings.mqtt_client_tls is None
    assert settings.mqtt_tls_port == 8883
    assert not settings.mqtt_tls_require_certificate
    assert settings.mqtt_tls_extra_names == ["mqtt.narvik.example", "10.20.0.5"]
    monkeypatch.setenv("SMARTBY_MQTT_TLS", "true")
    assert Settings().mqtt_client_tls == ClientTls(ca_file="/etc/smartby/ca.crt")


def test_the_sensorthings_publisher_needs_its_accounts_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It logs in as smartby-sta-publisher: without the password the broker would only
    refuse it later, in the log."""
    monkeypatch.setenv("SMARTBY_STA_MQTT_PUBLISH", "true")
    with pytest.raises(SettingsError, match="SMARTBY_STA_PUBLISHER_PASSWORD") as excinfo:
        load_settings()
    assert "\n" not in str(excinfo.value)
    monkeypatch.setenv("SMARTBY_STA_PUBLISHER_PASSWORD", "publisher-pw-0123456789")
    assert load_settings().sta_mqtt_publish
