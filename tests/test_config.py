"""Settings: flags win over environment variables, which win over defaults."""

from __future__ import annotations

import pytest

from ironflow_pkg.config import ConfigError, Settings, load_settings, parse_duration


def test_defaults():
    s = load_settings({}, environ={})
    assert s.port == 9123 and s.host == "0.0.0.0" and s.dev is False
    assert s.db_path.endswith("ironflow-data/ironflow.db")
    assert s.lease_ttl == 30.0 and s.lease_grace == 5.0
    assert s.cors_origins == ("*",) and s.max_request_bytes == 32 * 1024 * 1024


def test_env_then_flags_precedence():
    env = {"IRONFLOW_PORT": "7000", "IRONFLOW_DEV": "true", "IRONFLOW_DB_PATH": "/tmp/a.db",
           "LOG_LEVEL": "DEBUG", "IRONFLOW_METRICS_ENABLED": "1"}
    s = load_settings({}, environ=env)
    assert (s.port, s.dev, s.db_path, s.log_level, s.metrics_enabled) == (7000, True, "/tmp/a.db", "debug", True)
    s = load_settings({"port": 7001, "db_path": "/tmp/b.db", "dev": None}, environ=env)
    assert (s.port, s.db_path, s.dev) == (7001, "/tmp/b.db", True)


def test_data_dir_sets_default_db():
    s = load_settings({"data_dir": "/srv/if"}, environ={})
    assert s.db_path == "/srv/if/ironflow.db"


@pytest.mark.parametrize("raw,seconds", [("3", 3.0), ("0.5", 0.5), ("500ms", 0.5), ("30s", 30.0),
                                         ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0), ("1.5h", 5400.0)])
def test_durations(raw, seconds):
    assert parse_duration(raw, "X") == seconds
    assert load_settings({}, environ={"IRONFLOW_LEASE_TTL": raw}).lease_ttl == seconds


@pytest.mark.parametrize("env,needle", [
    ({"IRONFLOW_PORT": "abc"}, "IRONFLOW_PORT"),
    ({"IRONFLOW_PORT": "70000"}, "IRONFLOW_PORT"),
    ({"IRONFLOW_LEASE_TTL": "soon"}, "IRONFLOW_LEASE_TTL"),
    ({"IRONFLOW_DEV": "maybe"}, "IRONFLOW_DEV"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"IRONFLOW_BOOTSTRAP_API_KEY": "secret"}, "IRONFLOW_BOOTSTRAP_API_KEY"),
    ({"IRONFLOW_MASTER_KEY": "abcd"}, "IRONFLOW_MASTER_KEY"),
    ({"IRONFLOW_DATABASE_URL": "postgres://x/y"}, "IRONFLOW_DATABASE_URL"),
])
def test_bad_settings_name_the_variable(env, needle):
    with pytest.raises(ConfigError) as ei:
        load_settings({}, environ=env)
    assert needle in str(ei.value)


def test_sqlite_database_url():
    assert load_settings({}, environ={"IRONFLOW_DATABASE_URL": "sqlite:///var/x.db"}).db_path == "var/x.db"
    assert load_settings({}, environ={"IRONFLOW_DATABASE_URL": "sqlite:////var/x.db"}).db_path == "/var/x.db"


def test_describe_masks_secrets():
    key = "ifkey_" + "ab" * 16
    s = load_settings({}, environ={"IRONFLOW_BOOTSTRAP_API_KEY": key, "IRONFLOW_SIGNING_KEY": "s3cr3t-signing-key-value"})
    d = s.describe()
    assert key not in str(d) and "s3cr3t-signing-key-value" not in str(d)
    assert d["bootstrap_api_key"] and d["signing_key"]
    assert d["port"] == 9123 and isinstance(d["cors_origins"], list)


def test_cors_origins_list():
    s = load_settings({}, environ={"IRONFLOW_CORS_ORIGINS": "https://a.example, https://b.example"})
    assert s.cors_origins == ("https://a.example", "https://b.example")


def test_settings_is_frozen():
    with pytest.raises(Exception):
        Settings().port = 1  # type: ignore[misc]
