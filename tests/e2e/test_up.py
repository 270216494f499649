"""``accord up`` (what ``make run`` runs), as a user starts it: a real process on a real port."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def _lines(process: subprocess.Popen[str], out: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        out.put(line)


def test_up_runs_the_month_serves_api_and_console_and_stops_cleanly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "accord.cli", "up", "--dir", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(process, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not any("Ctrl-C" in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert process.poll() is None, "".join(seen)
        text = "".join(seen)
        url = re.search(r"running on (http://127\.0\.0\.1:\d+)", text)
        admin = re.search(r"admin key (acc_\S+)", text)
        trace = re.search(r"/console/traces/(\S+)", text)
        assert url and admin and trace, text
        assert "3 invoices (4069.26 EUR, 35814.00 GBP, 2500.00 USD), 3 payments" in text
        auth = {"Authorization": f"Bearer {admin.group(1)}"}
        with httpx.Client(base_url=url.group(1), timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            invoices = client.get("/v1/invoices", headers=auth).json()["items"]
            assert sorted(i["data"]["currency"] for i in invoices) == ["EUR", "GBP", "USD"]
            timeline = client.get(f"/v1/traces/{trace.group(1)}", headers=auth).json()
            assert len(timeline["timeline"]) > 5
            kpis = client.get("/v1/kpis?as_of=2026-04-15", headers=auth).json()
            assert set(kpis["dso_days"]) == {"EUR", "GBP", "USD"}
            assert client.get("/console/login").status_code == 200
            # the duplicate customer caught in the month waits in sales ops' queue
            keys = dict(re.findall(r"(\w+) (acc_\S+?)(?:,|\n|$)", text))
            sales_ops = {"Authorization": f"Bearer {keys['sales_ops']}"}
            auditor = {"Authorization": f"Bearer {keys['auditor']}"}
            items = client.get("/v1/exceptions?role=sales_ops", headers=sales_ops).json()
            held = [i for i in items if i["type"] == "possible_duplicate"]
            assert len(held) == 1, items
            path = f"/v1/exceptions/{held[0]['id']}/resolve"
            reason = {"reason": "same firm as Brightline Partners Ltd; kept one customer"}
            assert client.post(path, json=reason, headers=auditor).status_code == 403
            resolved = client.post(path, json=reason, headers=sales_ops)
            assert resolved.status_code == 200, resolved.text
            assert resolved.json()["state"] == "resolved"
            assert client.get("/v1/audit/verify", headers=auditor).json()["ok"] is True
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        time.sleep(0.2)
        while not lines.empty():
            seen.append(lines.get())
        assert "accord up: stopped" in "".join(seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)
        assert process.stdout is not None
        process.stdout.close()
