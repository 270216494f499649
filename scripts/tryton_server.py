#!/usr/bin/env python3
"""A real Tryton server for the connector tests: install, set up, start, stop.

Usage (from anywhere; paths are relative to the repository root)::

    python3 scripts/tryton_server.py start    # default: install + set up if needed, then start
    python3 scripts/tryton_server.py stop     # stop the server this script started
    python3 scripts/tryton_server.py status   # exit 0 when it answers, 1 otherwise
    python3 scripts/tryton_server.py url      # print the JSON-RPC base URL
    python3 scripts/tryton_server.py reset    # stop, drop the database (next start rebuilds it)

Every step is idempotent and guarded by a stamp, so a warm ``start`` only
launches the server (or does nothing when it already answers):

1. ``.venv-tryton/``: its own virtual environment with ``trytond`` 8.2, the
   modules the tests activate, and ``proteus`` (never the project's ``.venv``).
2. ``.tryton/accord.sqlite``: created empty (trytond needs the file to exist),
   initialised by ``trytond-admin`` (admin password from ``.tryton/admin.pass``,
   generated once), with ``project_invoice``, ``timesheet``, ``sale_opportunity``
   and ``account_invoice`` activated and their dependencies.
3. Business set-up through proteus (the modules' own test helpers): a company in
   USD, the minimal chart of accounts, fiscal years with invoice sequences and
   periods, a direct payment term, a cash payment method, an employee of the
   admin user, and a service product billed by the hour.
4. ``trytond -d accord`` on ``127.0.0.1:$ACCORD_TRYTON_PORT`` (default 8711), in
   the background; pid in ``.tryton/trytond.pid``, log in ``.tryton/trytond.log``.

The only standard-library-free part (step 3) runs inside ``.venv-tryton``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-tryton"
STATE = ROOT / ".tryton"
DATABASE = "accord"
DB_FILE = STATE / f"{DATABASE}.sqlite"
CONFIG = STATE / "trytond.conf"
PASSFILE = STATE / "admin.pass"
PIDFILE = STATE / "trytond.pid"
LOGFILE = STATE / "trytond.log"
SETUP_LOG = STATE / "setup.log"
LOCKFILE = STATE / "lock"
HOST = "127.0.0.1"
PORT = int(os.environ.get("ACCORD_TRYTON_PORT", "8711"))
ADMIN_EMAIL = "admin@accord.invalid"

SERIES = "8.2"
PACKAGES = [
    f"trytond=={SERIES}.*",
    f"proteus=={SERIES}.*",
    *(
        f"trytond-{name}=={SERIES}.*"
        for name in (
            "party",
            "company",
            "currency",
            "account",
            "account-invoice",
            "project",
            "project-invoice",
            "timesheet",
            "sale-opportunity",
        )
    ),
]
MODULES = ["project_invoice", "timesheet", "sale_opportunity", "account_invoice"]
SETUP_VERSION = "1"
"""Bump when the set-up below changes, so an existing database is rebuilt."""


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


INSTALL_STAMP = VENV / ".accord-installed"
SETUP_STAMP = STATE / "setup.done"
INSTALL_DIGEST = _digest(PACKAGES)
SETUP_DIGEST = _digest(PACKAGES, MODULES, SETUP_VERSION)


def log(message: str) -> None:
    print(f"tryton: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One set-up or start at a time (tests and make may race)."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(LOCKFILE, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamped(path: Path, digest: str) -> bool:
    return path.exists() and path.read_text().strip() == digest


def _run(command: list[str], *, env: dict[str, str] | None = None) -> None:
    """Run a step; its output goes to the set-up log, shown in full on failure."""
    with open(SETUP_LOG, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False
        )
    if result.returncode != 0:
        tail = SETUP_LOG.read_text().splitlines()[-40:]
        raise SystemExit(
            f"tryton: step failed ({result.returncode}): {' '.join(command)}\n" + "\n".join(tail)
        )


def drop_database() -> None:
    """Remove the SQLite file and its WAL companions (a stale WAL corrupts a new file)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        DB_FILE.with_name(DB_FILE.name + suffix).unlink(missing_ok=True)


def write_config() -> None:
    text = (
        "# Written by scripts/tryton_server.py; rewritten on every start.\n"
        "[database]\n"
        "uri = sqlite://\n"
        f"path = {STATE}\n"
        "\n[web]\n"
        f"listen = {HOST}:{PORT}\n"
        "\n[session]\n"
        "# tests log in and out often; keep the brute-force guard out of their way\n"
        "max_attempt = 50\n"
    )
    if not CONFIG.exists() or CONFIG.read_text() != text:
        CONFIG.write_text(text)


def admin_password() -> str:
    if not PASSFILE.exists():
        PASSFILE.write_text(secrets.token_urlsafe(18) + "\n")
        PASSFILE.chmod(0o600)
    return PASSFILE.read_text().strip()


def ensure_venv() -> None:
    if _stamped(INSTALL_STAMP, INSTALL_DIGEST) and (VENV / "bin" / "trytond").exists():
        return
    started = time.monotonic()
    log(f"installing trytond {SERIES} into {VENV.name}/")
    if not (VENV / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "--upgrade", "pip"])
    _run([*pip, *PACKAGES])
    INSTALL_STAMP.write_text(INSTALL_DIGEST + "\n")
    SETUP_STAMP.unlink(missing_ok=True)  # new packages: rebuild the database with them
    log(f"installed in {time.monotonic() - started:.1f}s")


def ensure_database() -> None:
    if _stamped(SETUP_STAMP, SETUP_DIGEST) and DB_FILE.exists():
        return
    started = time.monotonic()
    stop()  # a server on a half-built or outdated database must not survive
    SETUP_STAMP.unlink(missing_ok=True)
    drop_database()
    DB_FILE.touch()  # trytond-admin refuses a SQLite database whose file is missing
    admin_password()
    env = {**os.environ, "TRYTONPASSFILE": str(PASSFILE)}
    log(f"creating database {DATABASE!r} and activating {', '.join(MODULES)}")
    _run(
        [
            str(VENV / "bin" / "trytond-admin"),
            "-c",
            str(CONFIG),
            "-d",
            DATABASE,
            "--all",
            "--activate-dependencies",
            "--email",
            ADMIN_EMAIL,
            "-u",
            *MODULES,
        ],
        env=env,
    )
    log("setting up company, chart of accounts, fiscal years, product, employee")
    _run([str(VENV / "bin" / "python"), str(Path(__file__).resolve()), "_configure"], env=env)
    SETUP_STAMP.write_text(SETUP_DIGEST + "\n")
    log(f"database ready in {time.monotonic() - started:.1f}s")


def configure() -> None:  # pragma: no cover - runs inside .venv-tryton
    """The business set-up, with proteus straight on the database (no server)."""
    import datetime as dt
    from decimal import Decimal

    from proteus import Model, config  # type: ignore[import-not-found]
    from trytond.modules.account.tests.tools import (  # type: ignore[import-not-found]
        create_chart,
        get_accounts,
    )
    from trytond.modules.account_invoice.tests.tools import (  # type: ignore[import-not-found]
        create_payment_term,
    )
    from trytond.modules.company.tests.tools import (  # type: ignore[import-not-found]
        create_company,
        get_company,
    )

    config.set_trytond(database=DATABASE, config_file=str(CONFIG))
    Party = Model.get("party.party")
    company_party = Party(name="Accord Test Company")
    company_party.save()
    create_company(party=company_party, currency="USD")
    company = get_company()
    create_chart(company)
    accounts = get_accounts(company)

    FiscalYear = Model.get("account.fiscalyear")
    Sequence = Model.get("ir.sequence.strict")
    SequenceType = Model.get("ir.sequence.type")
    (move_type,) = SequenceType.find([("name", "=", "Account Move")], limit=1)
    (invoice_type,) = SequenceType.find([("name", "=", "Invoice")], limit=1)
    this_year = dt.date.today().year
    for year in range(this_year - 1, this_year + 4):
        fiscalyear = FiscalYear(name=str(year), company=company)
        fiscalyear.start_date = dt.date(year, 1, 1)
        fiscalyear.end_date = dt.date(year, 12, 31)
        fiscalyear.move_sequence = Sequence(
            name=f"Moves {year}", sequence_type=move_type, company=company
        )
        fiscalyear.move_sequence.save()
        invoice_sequence = Sequence(
            name=f"Invoices {year}", sequence_type=invoice_type, company=company
        )
        invoice_sequence.save()
        (sequences,) = fiscalyear.invoice_sequences
        sequences.out_invoice_sequence = invoice_sequence
        sequences.in_invoice_sequence = invoice_sequence
        sequences.out_credit_note_sequence = invoice_sequence
        sequences.in_credit_note_sequence = invoice_sequence
        fiscalyear.save()
        fiscalyear.click("create_period")

    payment_term = create_payment_term()
    payment_term.save()

    Journal = Model.get("account.journal")
    PaymentMethod = Model.get("account.invoice.payment.method")
    (cash_journal,) = Journal.find([("type", "=", "cash")], limit=1)
    PaymentMethod(
        name="Cash",
        company=company,
        journal=cash_journal,
        credit_account=accounts["cash"],
        debit_account=accounts["cash"],
    ).save()

    Employee = Model.get("company.employee")
    employee_party = Party(name="Accord Consultant")
    employee_party.save()
    employee = Employee(party=employee_party, company=company)
    employee.save()
    User = Model.get("res.user")
    (admin,) = User.find([("login", "=", "admin")])
    admin.employees.append(Employee(employee.id))
    admin.employee = Employee(employee.id)
    admin.save()

    Category = Model.get("product.category")
    category = Category(name="Services", accounting=True)
    category.account_revenue = accounts["revenue"]
    category.account_expense = accounts["expense"]
    category.save()
    Uom = Model.get("product.uom")
    (hour,) = Uom.find([("name", "=", "Hour")])
    Template = Model.get("product.template")
    template = Template(name="Consulting hour", type="service", default_uom=hour)
    template.list_price = Decimal("100")
    template.account_category = category
    template.save()
    print("configured company", company.id, "employee", employee.id)


def _answers(timeout: float = 2.0) -> bool:
    """Whether a Tryton server answers JSON-RPC on the port."""
    body = json.dumps({"method": "common.server.version", "params": [], "id": 0}).encode()
    request = urllib.request.Request(
        f"http://{HOST}:{PORT}/rpc/",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return "result" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def _our_pid() -> int | None:
    """The pid of the server this script started, if it is still alive."""
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:  # a recycled pid is not our server
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid
    return pid if b"trytond" in cmdline else None


def start() -> None:
    with locked():
        write_config()
        ensure_venv()
        ensure_database()
        if _our_pid() is not None and _answers():
            log(f"already running on {HOST}:{PORT}")
            return
        if _our_pid() is None and _answers():
            raise SystemExit(
                f"tryton: another server answers on {HOST}:{PORT}; "
                "stop it or set ACCORD_TRYTON_PORT"
            )
        stop()
        started = time.monotonic()
        with open(LOGFILE, "a") as out:
            process = subprocess.Popen(
                [str(VENV / "bin" / "trytond"), "-c", str(CONFIG), "-d", DATABASE],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                start_new_session=True,  # survives the shell or pytest that started it
            )
        PIDFILE.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = "\n".join(LOGFILE.read_text().splitlines()[-30:])
                raise SystemExit(f"tryton: server exited ({process.returncode}):\n{tail}")
            if _answers(timeout=1.0):
                log(
                    f"started pid {process.pid} on {HOST}:{PORT} "
                    f"in {time.monotonic() - started:.1f}s"
                )
                return
            time.sleep(0.2)
        raise SystemExit(f"tryton: server did not answer on {HOST}:{PORT} within 60s")


def stop() -> None:
    pid = _our_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _our_pid() is not None:
            time.sleep(0.1)
        if _our_pid() is not None:
            os.kill(pid, signal.SIGKILL)
        log(f"stopped pid {pid}")
    PIDFILE.unlink(missing_ok=True)


def reset() -> None:
    with locked():
        stop()
        SETUP_STAMP.unlink(missing_ok=True)
        drop_database()
    log("database dropped; the next start rebuilds it")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "start"
    if command == "start":
        start()
    elif command == "stop":
        with locked():
            stop()
    elif command == "status":
        running = _answers()
        print(f"tryton {'answers' if running else 'does not answer'} on {HOST}:{PORT}")
        return 0 if running else 1
    elif command == "url":
        print(f"http://{HOST}:{PORT}/{DATABASE}/")
    elif command == "reset":
        reset()
    elif command == "purge":
        reset()
        shutil.rmtree(VENV, ignore_errors=True)
        shutil.rmtree(STATE, ignore_errors=True)
    elif command == "_configure":
        configure()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
