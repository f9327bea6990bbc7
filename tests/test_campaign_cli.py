"""`fibo-sms campaign`: send, resume, status, export, against the emulator over loopback.

The proof of the journal is here: a 50,000-message campaign run as a real process, killed with
SIGKILL at three random points (with faults injected between runs), resumed, ends with every
GUID stored exactly once at the emulator and every journal row final.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from fibo_soap.cli import app
from fibo_soap.emulator import Emulator, run_emulator

pytestmark = pytest.mark.e2e

FIBO_BIN = Path(sys.executable).with_name("fibo-sms")
TEMPLATE = "Xin chào {name}, mã ưu đãi của bạn là {code}"
CLEARED = (
    "FIBO_CLIENT_NO",
    "FIBO_CLIENT_PASS",
    "FIBO_PASSWORD_FILE",
    "FIBO_ENDPOINT",
    "FIBO_SERVICE_TYPE",
    "FIBO_PROTOCOL",
    "FIBO_WSDL",
)


def phone(i: int) -> str:
    """A valid mobile number for row i, never one of the emulator's magic numbers."""
    number = f"0912{i:06d}"
    tail = number[-4:]
    return number if tail != "0101" and not tail.startswith("00") else f"{number[:-4]}5{tail[1:]}"


def write_csv(path: Path, count: int, extra: str = "") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("phone,name,code\n")
        for i in range(count):
            handle.write(f"{phone(i)},Khách {i},KM{i:05d}\n")
        handle.write(extra)
    return path


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with run_emulator(delivery_delay=0, record=0) as emulator:
        yield emulator


@pytest.fixture
def account(emu: Emulator) -> Iterator[Emulator]:
    """The emulator with a new account of its own for this test (balance 1,000,000)."""
    client_no = f"C{uuid.uuid4().hex[:8].upper()}"
    emu.add_account(client_no, "cli-campaign-secret")
    previous = emu.client_no, emu.client_pass
    emu.client_no, emu.client_pass = client_no, "cli-campaign-secret"
    emu.set_balance(1_000_000)
    yield emu
    emu.faults.clear()
    emu.client_no, emu.client_pass = previous


@pytest.fixture
def env(account: Emulator, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "FIBO_ENDPOINT": account.endpoint,
        "FIBO_CLIENT_NO": account.client_no,
        "FIBO_CLIENT_PASS": account.client_pass,
        "FIBO_SERVICE_TYPE": "1",
        "FIBO_PROTOCOL": "soap11,get",
        "COLUMNS": "200",
    }


class Runner:
    def __init__(self, env: Mapping[str, str], secret: str) -> None:
        self.env: dict[str, str | None] = {name: None for name in CLEARED} | dict(env)
        self.secret = secret

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(app, list(args), env=self.env)
        assert self.secret not in result.stdout + result.stderr
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self("--json", *args, code=code).stdout)


@pytest.fixture
def run(env: dict[str, str], account: Emulator) -> Runner:
    return Runner(env, account.client_pass)


def at_gateway(emu: Emulator) -> Counter[str]:
    return Counter(emu.store.count_by_guid(emu.client_no))


def journal_counts(path: Path) -> Counter[str]:
    with sqlite3.connect(path, timeout=10) as conn:
        return Counter(dict(conn.execute("SELECT state, COUNT(*) FROM message GROUP BY state")))


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["send", "resume", "status", "export"])
def test_every_campaign_command_has_help_with_an_example(run: Runner, command: str) -> None:
    text = run("campaign", command, "--help").stdout
    assert f"$ fibo-sms campaign {command}" in text
    assert "--json" in text
    assert "--client-pass" not in text


def test_the_group_lists_its_commands(run: Runner) -> None:
    assert "campaign" in run("--help").stdout
    text = run("campaign", "--help").stdout
    for command in ("send", "resume", "status", "export"):
        assert command in text


# --- send, dry run, resume, status, export --------------------------------------------------


def test_send_fills_the_template_from_each_row(
    run: Runner, account: Emulator, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "c.csv", 1200, extra="12,Bad,X\n0912999999\n")
    journal = tmp_path / "c.db"
    document = run.json("campaign", "send", str(source), "-t", TEMPLATE, "-j", str(journal))
    assert document["total"] == 1202
    assert (document["accepted"], document["refused"], document["not_sent"]) == (1200, 2, 0)
    assert document["complete"] is True
    assert document["resuming"] is False
    assert document["journal_states"]["accepted"] == 1200
    assert document["requests"] == 3
    rows = account.received(client_no=account.client_no)
    by_phone = {r.phone: r for r in rows}
    assert by_phone[phone(7)].message == "Xin chào Khách 7, mã ưu đãi của bạn là KM00007"
    assert by_phone[phone(7)].operation == "SendSMSWithMultiMessage"
    assert set(at_gateway(account).values()) == {1}


def test_send_with_a_text_column_and_the_default_journal(
    run: Runner, account: Emulator, tmp_path: Path
) -> None:
    source = tmp_path / "alerts.csv"
    source.write_text("msisdn,message\n0909128628,Cảnh báo 1\n0909128629,Cảnh báo 2\n")
    result = run("campaign", "send", str(source))
    assert "2 accepted" in result.stdout
    assert (tmp_path / "alerts.csv.campaign.db").is_file()
    assert "follow delivery with: fibo-sms campaign status" in result.stderr


def test_dry_run_sends_nothing(run: Runner, account: Emulator, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "c.csv", 900, extra="0909,Short,X\n")
    account.set_balance(800)
    document = run.json("campaign", "send", str(source), "-t", TEMPLATE, "--dry-run")
    assert document["dry_run"] is True
    assert (document["messages"], document["valid"], document["refused"]) == (901, 900, 1)
    assert document["parts"] == 900
    assert (document["balance"], document["enough"]) == (800, False)
    assert document["refusals"][0]["row"] == 901
    assert "not a valid" in document["refusals"][0]["reason"] or document["refusals"][0]["reason"]
    assert at_gateway(account) == Counter()
    assert not (tmp_path / "c.csv.campaign.db").exists()
    human = run("campaign", "send", str(source), "-t", TEMPLATE, "--dry-run").stdout
    assert "nothing sent" in human
    assert "short by 100" in human


def test_the_balance_runs_out_then_resume_finishes(
    run: Runner, account: Emulator, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "c.csv", 2000)
    journal = tmp_path / "c.db"
    account.set_balance(1234)
    result = run(
        "--json", "campaign", "send", str(source), "-t", TEMPLATE, "-j", str(journal), code=4
    )
    document = json.loads(result.stdout)
    assert (document["accepted"], document["not_sent"], document["stopped"]) == (
        1234,
        766,
        "balance",
    )
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["exit_code"] == 4
    assert f"fibo-sms campaign resume {journal}" in error["hint"]
    assert journal_counts(journal) == {"accepted": 1234, "not_sent": 766}
    assert len(at_gateway(account)) == 1234
    # Human output of the same stop.
    again = run("campaign", "resume", str(journal), code=4)
    assert "the balance ran out" in again.stderr
    account.set_balance(5000)
    document = run.json("campaign", "resume", str(journal))
    assert (document["accepted"], document["resumed"], document["complete"]) == (2000, 1234, True)
    stored = at_gateway(account)
    assert len(stored) == 2000
    assert set(stored.values()) == {1}


def test_sending_again_resumes_and_a_changed_template_is_refused(
    run: Runner, account: Emulator, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "c.csv", 600)
    journal = tmp_path / "c.db"
    run("campaign", "send", str(source), "-t", TEMPLATE, "-j", str(journal))
    result = run("campaign", "send", str(source), "-t", TEMPLATE, "-j", str(journal))
    assert "already holds this campaign: resuming it" in result.stderr
    assert "(600 from earlier runs)" in result.stdout
    assert len(at_gateway(account)) == 600
    changed = run("campaign", "send", str(source), "-t", "Hi {name}", "-j", str(journal), code=5)
    assert "another template" in changed.stderr
    source.write_text(source.read_text(encoding="utf-8") + "0909128628,Late,X\n")
    moved = run("campaign", "resume", str(journal), code=5)
    assert "changed since" in moved.stderr


def test_a_refused_bulk_rerun_leaves_resume_as_it_was(
    run: Runner, account: Emulator, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "c.csv", 20)
    journal = tmp_path / "c.db"
    account.set_balance(10)
    sent = ("campaign", "send", str(source), "-t", TEMPLATE, "-j", str(journal))
    run(*sent, "--chunk-size", "5", code=4)
    account.set_balance(1000)
    assert "was sent with SendSMSWithMultiMessage" in run(*sent, "--bulk", code=5).stderr
    document = run.json("campaign", "resume", str(journal))
    assert (document["accepted"], document["resumed"], document["complete"]) == (20, 10, True)
    assert len(at_gateway(account)) == 20
    assert {r.operation for r in account.received(client_no=account.client_no)} == {
        "SendSMSWithMultiMessage"
    }


def test_a_cell_beyond_the_csv_limit_is_refused_and_the_rest_go_out(
    run: Runner, account: Emulator, tmp_path: Path
) -> None:
    huge = "x" * (csv.field_size_limit() + 1)
    source = write_csv(tmp_path / "c.csv", 20, extra=f"{phone(20)},{huge},KM\n{phone(21)},An,KM\n")
    journal = tmp_path / "c.db"
    command = ("campaign", "send", str(source), "-t", TEMPLATE, "-j", str(journal))
    for run_number in range(2):
        document = run.json(*command, "--chunk-size", "3")
        assert (document["accepted"], document["refused"], document["complete"]) == (21, 1, True)
        assert document["resumed"] == 22 * run_number
    assert journal_counts(journal) == {"accepted": 21, "refused": 1}
    assert len(at_gateway(account)) == 21


def test_status_reconciles_and_export_writes_every_row(
    run: Runner, account: Emulator, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "c.csv", 700, extra="0912340003,Failing,X\n0912000101,Wrong,X\n")
    journal = tmp_path / "c.db"
    run("campaign", "send", str(source), "-t", TEMPLATE, "-j", str(journal))
    local = run.json("campaign", "status", "--local", str(journal))
    assert local["reconciled"] is False
    assert local["states"]["accepted"] == 701
    assert local["statuses"] == {"unknown": 701}
    document = run.json("campaign", "status", str(journal))
    assert document["states"]["delivered"] == 700
    assert document["states"]["failed"] == 1
    assert document["states"]["rejected"] == 1
    assert document["statuses"] == {"SentSuccess": 700, "SentFailed": 1}
    assert document["all_final"] is True
    human = run("campaign", "status", str(journal))
    assert "every message is final" in human.stderr
    assert "SentSuccess" in human.stdout
    out = tmp_path / "out.csv"
    assert run.json("campaign", "export", str(journal), str(out))["rows"] == 702
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 702
    assert rows[0]["row"] == "1"
    assert rows[0]["state"] == "delivered"
    assert rows[0]["sms_status_name"] == "SentSuccess"
    assert rows[700]["state"] == "failed"
    assert rows[701]["state"] == "rejected"
    piped = run("campaign", "export", str(journal), "-")
    assert piped.stdout.splitlines()[0].startswith("row,guid,phone,state")
    assert len(piped.stdout.splitlines()) == 703


def test_progress_shows_the_counts(run: Runner, account: Emulator, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "c.csv", 3000)
    result = run(
        "campaign", "send", str(source), "-t", TEMPLATE, "-j", str(tmp_path / "c.db"), "--progress"
    )
    assert "sending" in result.stderr
    assert "accepted 3000" in result.stderr
    assert "3000/3000" in result.stderr


def test_campaign_usage_errors(run: Runner, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "c.csv", 3)
    (tmp_path / "t.txt").write_text("Chào {name}\n", encoding="utf-8")
    run(
        "campaign",
        "send",
        str(source),
        "-t",
        "x",
        "--template-file",
        str(tmp_path / "t.txt"),
        code=2,
    )
    assert "not a column" in run("campaign", "send", str(source), "-t", "{nope}", code=5).stderr
    run("campaign", "resume", str(tmp_path / "missing.db"), code=5)
    run("campaign", "export", str(tmp_path / "missing.db"), "-", code=5)
    run("campaign", "send", str(source), "--bulk", "--sender", "ACME", "-t", "x", code=2)
    result = run(
        "--json",
        "campaign",
        "send",
        str(source),
        "--template-file",
        str(tmp_path / "t.txt"),
        "-j",
        str(tmp_path / "t.db"),
    )
    assert json.loads(result.stdout)["accepted"] == 3


# --- the proof: kill -9, three times ---------------------------------------------------------


def _accepted(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(journal, timeout=5) as conn:
            row = conn.execute("SELECT COUNT(*) FROM message WHERE state = 'accepted'").fetchone()
    except sqlite3.OperationalError:
        return 0  # the schema is not there yet
    return int(row[0])


@pytest.mark.slow
def test_a_campaign_killed_three_times_sends_everything_exactly_once(
    account: Emulator, env: dict[str, str], tmp_path: Path
) -> None:
    total = 50_000
    source = write_csv(tmp_path / "big.csv", total)
    journal = tmp_path / "big.db"
    environment = {k: v for k, v in os.environ.items() if k not in CLEARED} | env
    rng = random.Random()
    send = [
        str(FIBO_BIN),
        "campaign",
        "send",
        str(source),
        "-t",
        TEMPLATE,
        "-j",
        str(journal),
        "--chunk-size",
        "500",
        "--concurrency",
        "4",
        "--settle",
        "0.3",
        "--quiet",
    ]
    resume = [str(FIBO_BIN), "campaign", "resume", str(journal), "--quiet"]
    started = time.monotonic()
    kills: list[int] = []
    for run_number in range(3):
        if run_number:
            # Faults mid-campaign too: answers lost after the gateway stored the chunk, 500s.
            account.fault("close_after", method="SendSMSWithMultiMessage", times=2)
            account.fault("http_500", method="SendSMSWithMultiMessage", protocol="soap11", times=2)
        before = _accepted(journal)
        process = subprocess.Popen(send if run_number == 0 else resume, env=environment)
        try:
            target = before + rng.randint(4_000, 9_000)
            while _accepted(journal) < target:
                assert process.poll() is None, f"run {run_number + 1} ended before it was killed"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.25))
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        kills.append(_accepted(journal))
    assert kills[-1] < total, "the campaign finished before the third kill"
    finish = subprocess.run(resume, env=environment, capture_output=True, text=True, timeout=120)
    assert finish.returncode == 0, finish.stderr
    status = subprocess.run(
        [str(FIBO_BIN), "--json", "campaign", "status", str(journal)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(status.stdout)
    account.faults.clear()
    # Every message at the gateway exactly once, under the GUID its row fixes.
    with sqlite3.connect(journal) as conn:
        campaign_id = json.loads(
            conn.execute("SELECT value FROM meta WHERE key = 'campaign_id'").fetchone()[0]
        )
        states = Counter(dict(conn.execute("SELECT state, COUNT(*) FROM message GROUP BY state")))
    stored = at_gateway(account)
    expected = {str(uuid.uuid5(uuid.UUID(campaign_id), str(i))) for i in range(total)}
    assert set(stored) == expected
    assert set(stored.values()) == {1}
    # Every journal row final.
    assert states == {"delivered": total}
    assert report["all_final"] is True
    assert report["statuses"] == {"SentSuccess": total}
    assert time.monotonic() - started < 90
