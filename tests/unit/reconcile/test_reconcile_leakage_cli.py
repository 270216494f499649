"""``accord reconcile leakage``: the revenue-leakage report over the billable_work sources."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from accord.cli import app


def _config(tmp_path: Path) -> Path:
    (tmp_path / "work.csv").write_text(
        "id,account_id,currency,amount,approved_on,written_off,reason_code\n"
        "t1,acme,EUR,800.00,2025-03-01,,\n"
        "t2,acme,EUR,200.00,2025-03-01,,\n"
        "t3,acme,EUR,100.00,2025-03-25,,\n"  # too recent to count
        "t4,acme,EUR,50.00,2025-03-01,true,\n"  # written off, no reason
        "t5,acme,EUR,50.00,2025-03-01,true,goodwill\n"
        "t6,umbrella,JPY,5000,2025-02-01,,\n"
    )
    (tmp_path / "lines.jsonl").write_text('{"source_id": "t1", "amount": "800.00"}\n')
    config = tmp_path / "accord.yaml"
    config.write_text(
        f"""
database_url: sqlite:///{tmp_path / "accord.db"}
reconcile:
  sources:
    billable_work:
      left:  {{file: {tmp_path / "work.csv"}}}
      right: {{file: {tmp_path / "lines.jsonl"}, key: source_id}}
"""
    )
    return config


def test_leakage_json_reports_unbilled_work_and_unexplained_write_offs(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "reconcile",
            "leakage",
            "--days",
            "14",
            "--as-of",
            "2025-04-01",
            "--json",
            "--config",
            str(config),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["days"] == 14 and doc["as_of"] == "2025-04-01"
    assert [i["key"] for i in doc["unbilled"]["items"]] == ["t2", "t6"]
    assert doc["unbilled"]["value"] == {"EUR": 20000, "JPY": 5000}
    assert doc["unbilled"]["share"] == {"EUR": "0.1667", "JPY": "1.0000"}
    assert [i["key"] for i in doc["write_offs_without_reason"]["items"]] == ["t4"]
    assert doc["write_offs_without_reason"]["value"] == {"EUR": 5000}
    assert doc["unbilled"]["items"][0]["age_days"] == 31


def test_leakage_days_moves_the_line(tmp_path: Path) -> None:
    config = _config(tmp_path)
    args = ["reconcile", "leakage", "--as-of", "2025-04-01", "--json", "-c", str(config)]
    result = CliRunner().invoke(app, [*args, "--days", "5"])
    keys = [i["key"] for i in json.loads(result.stdout)["unbilled"]["items"]]
    assert keys == ["t2", "t3", "t6"]


def test_leakage_text_report(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = CliRunner().invoke(
        app, ["reconcile", "leakage", "--as-of", "2025-04-01", "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "unbilled work: 2 item(s) 200.00 EUR (0.1667), 5000 JPY (1.0000)" in result.stdout
    assert "write-offs without a reason code: 1 item(s) 50.00 EUR" in result.stdout


def test_leakage_bad_amount_names_record_and_field(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "work.csv").write_text(
        "id,account_id,currency,amount,approved_on\nt1,acme,EUR,12.345,2025-03-01\n"
    )
    result = CliRunner().invoke(app, ["reconcile", "leakage", "-c", str(config)])
    assert result.exit_code == 2
    assert "t1" in result.stderr and "amount" in result.stderr


def test_leakage_without_sources_says_what_to_configure(tmp_path: Path) -> None:
    config = tmp_path / "accord.yaml"
    config.write_text(f"database_url: sqlite:///{tmp_path / 'accord.db'}\n")
    result = CliRunner().invoke(app, ["reconcile", "leakage", "-c", str(config)])
    assert result.exit_code == 2
    assert "reconcile.sources.billable_work" in result.stderr
