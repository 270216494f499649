"""accord.yaml: validated on load, errors name key and line, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.config import EXAMPLE, ConfigError, load_settings, parse_settings


def test_the_example_written_by_init_is_valid() -> None:
    settings = parse_settings(EXAMPLE)
    assert settings.systems["salesforce"].role == "crm"
    assert settings.runtime.batch_size == 100


def test_no_file_means_the_embedded_default(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "accord.yaml", env={})
    assert settings.database_url == "sqlite:///accord.db"
    assert settings.nats_url is None


def test_environment_overrides_storage_and_stream(tmp_path: Path) -> None:
    env = {"ACCORD_DATABASE_URL": "postgresql+psycopg://x/y", "ACCORD_NATS_URL": "nats://n:4222"}
    settings = load_settings(tmp_path / "none.yaml", env=env)
    assert settings.database_url == "postgresql+psycopg://x/y"
    assert settings.nats_url == "nats://n:4222"


def test_error_names_the_key_and_its_line() -> None:
    text = EXAMPLE.replace("harvest:    {role: psa", "harvest:    {role: pas")
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "role: pas" in ln)
    assert f"systems.harvest.role (line {line})" in str(caught.value)


def test_unknown_keys_are_refused_with_their_line() -> None:
    with pytest.raises(ConfigError, match=r"runtime.batchsize \(line 3\): unknown key"):
        parse_settings("accord: 1\nruntime:\n  batchsize: 5\n")


def test_secrets_are_read_from_the_environment_not_the_file(tmp_path: Path) -> None:
    settings = parse_settings("systems:\n  s: {role: crm, connector: salesforce, token_env: T}\n")
    assert "token" not in settings.systems["s"].model_dump(exclude_none=True)
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n")
    other = parse_settings(
        f"systems:\n  s: {{role: crm, connector: x, token_file: '{secret_file}'}}\n"
    )
    assert other.systems["s"].secret() == "s3cret"


def test_missing_named_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"ACCORD_CONFIG": str(tmp_path / "missing.yaml")})
