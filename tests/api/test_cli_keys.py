"""`accord keys` creates (printing the key once), lists and revokes keys in the serve database."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.api.keys import find_key
from accord.cli import app
from accord.store import make_engine


def test_keys_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'accord.db'}"
    monkeypatch.setenv("ACCORD_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--role", "auditor", "--name", "books"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[0]
    assert secret.startswith("acc_")
    engine = make_engine(url)
    key = find_key(engine, secret)
    assert key is not None and key.role == "auditor"
    listed = runner.invoke(app, ["keys", "list"])
    assert key.prefix in listed.stdout and secret not in listed.stdout
    revoked = runner.invoke(app, ["keys", "revoke", key.prefix])
    assert revoked.exit_code == 0
    assert find_key(engine, secret) is None
    bad = runner.invoke(app, ["keys", "create", "--role", "root"])
    assert bad.exit_code == 2
    engine.dispose()
