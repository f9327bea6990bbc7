"""`fibo-sms` run for real: in-process through typer's CliRunner and, for a few, as a subprocess,
against the emulator over loopback sockets. Every subcommand, its --json document, every exit
code, the password never printed, and a 10,000-line bulk send with its progress bar.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import http.server
import json
import os
import random
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from fibo_soap import cli, config
from fibo_soap.cli import ExitCode, app, exit_code_for
from fibo_soap.config import ConfigError, Flags
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.errors import (
    AmbiguousSendError,
    AuthenticationError,
    ConnectError,
    GatewayError,
    InsufficientBalanceError,
    InvalidInputError,
    InvalidPhoneNumberError,
    InvalidServiceTypeError,
    MessageTooLongError,
    ProtocolError,
    SoapFaultError,
    TimeoutError,
    UnexpectedCodeError,
    ZeroBalanceError,
)
from fibo_soap.models import SmsStatus

pytestmark = pytest.mark.e2e

PHONE_A = "0909128628"
PHONE_B = "0912345678"
REFUSED = "0909120101"  # the emulator's magic suffix 0101: FIBO refuses the number
FIBO_BIN = Path(sys.executable).with_name("fibo-sms")
GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Every setting a developer's shell may carry, cleared for each run (None unsets it).
CLEARED: dict[str, str | None] = {
    name: None
    for name in (
        "FIBO_CLIENT_NO",
        "FIBO_CLIENT_PASS",
        "FIBO_PASSWORD_FILE",
        "FIBO_ENDPOINT",
        "FIBO_SERVICE_TYPE",
        "FIBO_PROTOCOL",
        "FIBO_WSDL",
        "TTY_COMPATIBLE",
        "FORCE_COLOR",
        "NO_COLOR",
    )
}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """One emulator for the module (tests that change its balances restore them)."""
    with run_emulator(delivery_delay=0) as emulator:
        yield emulator


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home: no config file, no cached WSDL."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def env(emu: Emulator, home: Path) -> dict[str, str | None]:
    """The environment of a configured user of the emulator's seeded account."""
    return CLEARED | {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "FIBO_ENDPOINT": emu.endpoint,
        "FIBO_CLIENT_NO": emu.client_no,
        "FIBO_CLIENT_PASS": emu.client_pass,
        "FIBO_SERVICE_TYPE": "1",
        "COLUMNS": "200",
    }


@pytest.fixture(autouse=True)
def _unconfigure_logs() -> Iterator[None]:
    """--verbose configures structlog for the process, bound to the runner's stderr of the
    moment; the next test starts unconfigured."""
    yield
    import structlog

    structlog.reset_defaults()


@pytest.fixture
def faults(emu: Emulator) -> Iterator[Emulator]:
    """The emulator, its fault rules cleared after the test."""
    yield emu
    emu.faults.clear()


@pytest.fixture
def restore_balance(emu: Emulator) -> Iterator[None]:
    before = {st: emu.balance(st) for st in (1, 2, 3)}
    yield
    for st, value in before.items():
        assert value is not None
        emu.set_balance(value, st)


class Runner:
    """Runs `fibo-sms` in-process; every run is checked for the password in its output."""

    def __init__(self, env: Mapping[str, str | None], secrets: tuple[str, ...]) -> None:
        self.env = dict(env)
        self.secrets = secrets

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        env: Mapping[str, str | None] | None = None,
        code: int = 0,
    ) -> Result:
        result = CliRunner().invoke(app, list(args), input=input, env={**self.env, **(env or {})})
        for secret in self.secrets:
            assert secret not in result.stdout, "the password was printed on stdout"
            assert secret not in result.stderr, "the password was printed on stderr"
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        result = self("--json", *args, **kwargs)
        return json.loads(result.stdout)


@pytest.fixture
def run(env: dict[str, str | None], emu: Emulator) -> Runner:
    return Runner(env, (emu.client_pass,))


def error_doc(result: Result) -> dict[str, Any]:
    """The JSON error document --json writes on stderr."""
    document = json.loads(result.stderr.strip().splitlines()[-1])
    assert set(document) == {"error"}
    assert set(document["error"]) == {"type", "exit_code", "message", "hint", "operation", "code"}
    return dict(document["error"])


def _free_port() -> int:
    """A loopback port that nothing listens on (bound once, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def subprocess_env(env: Mapping[str, str | None], **extra: str) -> dict[str, str]:
    merged = {k: v for k, v in os.environ.items() if k not in env}
    merged.update({k: v for k, v in env.items() if v is not None})
    merged.update(extra)
    return merged


# --- help, start-up, completion ------------------------------------------------------------------

COMMANDS = [
    ["about"],
    ["check"],
    ["balance"],
    ["senders"],
    ["send"],
    ["send-list"],
    ["send-bulk"],
    ["status"],
    ["sent"],
    ["sent-page"],
    ["pages"],
    ["incoming"],
    ["incoming-range"],
    ["estimate"],
    ["emulator"],
    ["wsdl", "refresh"],
    ["wsdl", "show"],
]


def test_root_help_lists_every_command_and_the_exit_codes(run: Runner) -> None:
    result = run("--help")
    for command in {c[0] for c in COMMANDS}:
        assert command in result.stdout
    for code in ExitCode:
        if code is not ExitCode.INTERRUPTED:
            assert f"{int(code)} " in result.stdout
    assert "Exit codes" in result.stdout
    assert "--install-completion" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help_with_an_example(run: Runner, command: list[str]) -> None:
    result = run(*command, "--help")
    assert "Example" in result.stdout
    assert f"$ fibo-sms {' '.join(command)}" in result.stdout
    assert "--json" in result.stdout
    assert "--quiet" in result.stdout


def test_no_arguments_shows_the_help(run: Runner) -> None:
    result = run(code=2)
    assert "Usage" in result.stdout + result.stderr


def test_the_password_is_never_an_option(run: Runner) -> None:
    for command in COMMANDS:
        text = run(*command, "--help").stdout
        assert "--password " not in text
        assert "--client-pass" not in text


def test_shell_completion_script(run: Runner) -> None:
    result = run("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert "complete" in result.stdout
    assert "fibo" in result.stdout.lower()


HELP_PROBE = """
import sys
from fibo_soap.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
names = set(sys.modules)
loaded = sorted({m.split(".")[0] for m in names} | {m for m in names if "emulator" in m})
print(" ".join(loaded), file=sys.stderr)
"""


def test_help_imports_neither_zeep_nor_the_emulator() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, check=True
    )
    loaded = probe.stderr.split()
    assert "zeep" not in loaded
    assert not [m for m in loaded if "emulator" in m]
    assert "starlette" not in loaded
    assert "uvicorn" not in loaded
    assert "Usage" in probe.stdout


def test_help_imports_no_lxml() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, check=True
    )
    assert "lxml" not in probe.stderr.split()


HELP_MODULES_PROBE = """
import sys
from fibo_soap.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)), file=sys.stderr)
"""


def test_root_help_loads_neither_rich_nor_the_models_nor_pydantic() -> None:
    """What keeps `fibo-sms --help` within target 4 of issue 10: typer's rich help formatter,
    the result models and typer's pydantic coercion of option values are not loaded."""
    probe = subprocess.run(
        [sys.executable, "-c", HELP_MODULES_PROBE, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(probe.stderr.split())
    assert "Usage" in probe.stdout
    assert not {m for m in loaded if m.split(".")[0] in ("rich", "pydantic", "tomllib")}
    assert not {"fibo_soap.models", "fibo_soap.client", "typer.rich_utils"} & loaded


def test_help_is_plain_text_with_the_options_in_sections(run: Runner) -> None:
    text = run("send", "--help").stdout
    for markup in ("[b]", "[/b]", "[cyan]", "[/"):
        assert markup not in text
    sections = [
        line[:-1] for line in text.splitlines() if line and line[0] != " " and line[-1] == ":"
    ]
    assert sections == ["Arguments", "Options", "Output", "Account and connection"]
    account = text.split("Account and connection:")[1]
    for option in ("--config", "--client-no", "--password-file", "--endpoint", "--protocol"):
        assert option in account
    output = text.split("Output:")[1].split("Account and connection:")[0]
    for option in ("--json", "--quiet", "--progress", "--verbose"):
        assert option in output
    # The examples are kept one a line, as typed.
    assert "\n    $ fibo-sms send --masked --sender ACME 0909128628 'Sale ends today'\n" in text


def test_root_help_lists_the_exit_codes_one_a_line(run: Runner) -> None:
    lines = [line.strip() for line in run("--help").stdout.splitlines()]
    assert "Exit codes:" in lines
    for code in ExitCode:
        if code is not ExitCode.INTERRUPTED:
            assert any(line.startswith(f"{int(code)}  ") for line in lines), code


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (
            "fibo-sms sent-page 1 --status Sen",
            ["Sending", "SentSuccess", "SentFailed", "SendMTFailed"],
        ),
        ("fibo-sms incoming-range --status Con", ["Confirmed"]),
        ("fibo-sms send --protocol so", ["soap11", "soap12"]),
        ("fibo-sms sent-", ["sent-page"]),
    ],
)
def test_shell_completion_of_values(words: str, expected: list[str]) -> None:
    done = subprocess.run(
        [str(FIBO_BIN)],
        env={
            **os.environ,
            "_FIBO_SMS_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == expected


def test_version(run: Runner) -> None:
    assert run("--version").stdout.startswith("fibo-sms ")


# --- account and connection commands -------------------------------------------------------------


def test_about_needs_no_account(run: Runner, emu: Emulator) -> None:
    no_account = {"FIBO_CLIENT_NO": None, "FIBO_CLIENT_PASS": None}
    assert run("about", env=no_account).stdout.strip() == "www.Fibovietnam.com"
    assert run.json("about", env=no_account) == {"about": "www.Fibovietnam.com"}


def test_check(run: Runner, emu: Emulator) -> None:
    assert run("check").stdout.strip() == f"{emu.client_no}: Nguyen Van A"
    assert run.json("check") == {"client_no": emu.client_no, "name": "Nguyen Van A"}


@pytest.mark.parametrize("protocol", ["soap11", "soap12", "get", "post"])
def test_every_protocol_from_the_flag_and_the_environment(run: Runner, protocol: str) -> None:
    assert run.json("check", "--protocol", protocol)["name"] == "Nguyen Van A"
    assert run.json("check", env={"FIBO_PROTOCOL": protocol})["name"] == "Nguyen Van A"


def test_balance(run: Runner, emu: Emulator) -> None:
    left = emu.balance(1)
    assert run.json("balance") == {"service_type": "1", "balance": left}
    assert run.json("balance", "--service-type", "2") == {
        "service_type": "2",
        "balance": emu.balance(2),
    }
    assert run("balance").stdout.strip() == f"{left} messages left on service type 1"


def test_balance_all(run: Runner, emu: Emulator) -> None:
    document = run.json("balance", "--all")
    assert [s["service_type_name"] for s in document["services"]] == [
        "+841223100690",
        "FiboSMS brand name",
        "Email (Free for testing)",
    ]
    assert document["services"][1] == {
        "service_type_name": "FiboSMS brand name",
        "balance": emu.balance(2),
    }
    lines = run("balance", "--all").stdout.splitlines()
    assert lines[0] == "Service\tBalance"
    assert lines[2] == f"FiboSMS brand name\t{emu.balance(2)}"


def test_senders(run: Runner) -> None:
    document = run.json("senders")
    assert [s["name"] for s in document["senders"]] == ["FiboSMS", "SenderName1"]
    assert set(document["senders"][0]) == {"name", "status", "created"}
    datetime.fromisoformat(document["senders"][0]["created"])


def test_tables_on_a_terminal(run: Runner) -> None:
    run("send", PHONE_A, "shown in a table")
    result = run("sent", "--minutes", "5", env={"TTY_COMPATIBLE": "1", "NO_COLOR": "1"})
    assert "┃" in result.stdout or "│" in result.stdout
    assert "SentSuccess" in result.stdout
    assert "shown in a table" in result.stdout


# --- sending -------------------------------------------------------------------------------------


def test_send(run: Runner, emu: Emulator) -> None:
    document = run.json("send", PHONE_A, "Xin chào")
    assert set(document) == {"operation", "guid", "code", "message", "service_type", "test"}
    assert document["operation"] == "SendSMS"
    assert document["code"] == 200
    assert document["service_type"] == "1"
    assert GUID_RE.fullmatch(document["guid"])
    [stored] = emu.received(guid=document["guid"])
    assert (stored.phone, stored.message, stored.service_type_id) == (PHONE_A, "Xin chào", 1)
    human = run("send", PHONE_A, "hello")
    guid = GUID_RE.search(human.stdout)
    assert guid is not None
    assert human.stdout.startswith(f"accepted {guid.group(0)}")
    assert f"fibo-sms status {guid.group(0)}" in human.stderr


def test_send_with_own_guid_text_from_stdin_and_service_type(run: Runner, emu: Emulator) -> None:
    guid = "b2c1b9f4-0000-4000-8000-000000000001"
    document = run.json("send", "--guid", guid, "-s", "2", PHONE_B, "-", input="from stdin\n")
    assert document["guid"] == guid
    [stored] = emu.received(guid=guid)
    assert (stored.message, stored.service_type_id) == ("from stdin", 2)


def test_send_masked(run: Runner, emu: Emulator) -> None:
    document = run.json("send", "--sender", "FiboSMS", PHONE_A, "brand")
    assert document["operation"] == "SendMaskedSMS"
    [stored] = emu.received(guid=document["guid"])
    assert stored.sender_name == "FiboSMS"
    assert [r.operation for r in emu.recorded if r.params.get("smsGUID") == document["guid"]] == [
        "SendMaskedSMS"
    ]
    document = run.json("send", "--masked", PHONE_A, "no brand")
    assert document["operation"] == "SendMaskedSMS"


def test_send_test_channel(run: Runner, emu: Emulator) -> None:
    before = emu.balance(3)
    document = run.json("send", "--test", PHONE_A, "free")
    assert (document["service_type"], document["test"]) == ("3", True)
    [stored] = emu.received(guid=document["guid"])
    assert stored.service_type_id == 3
    assert stored.status is SmsStatus.PENDING
    assert emu.balance(3) == before


def test_send_test_with_masked_is_a_usage_error(run: Runner) -> None:
    result = run("send", "--test", "--masked", PHONE_A, "x", code=2)
    assert "--test cannot be combined" in result.stderr


def test_send_list(run: Runner, emu: Emulator) -> None:
    document = run.json("send-list", "--to", f"{PHONE_A},{PHONE_B}", "--to", REFUSED, "hi all")
    assert document["operation"] == "SendSMSToListMobilePhone"
    assert [a["phone"] for a in document["accepted"]] == [PHONE_A, PHONE_B]
    assert [r["phone"] for r in document["rejected"]] == [REFUSED]
    for entry in document["accepted"]:
        [stored] = emu.received(guid=entry["guid"])
        assert stored.message == "hi all"
    assert emu.received(guid=document["rejected"][0]["guid"]) == []
    result = run("send-list", "--to", PHONE_A, "--to", REFUSED, "again")
    assert "1 accepted, 1 rejected" in result.stderr
    assert re.search(rf"{REFUSED}\t{GUID_RE.pattern}\trejected", result.stdout)


def test_send_list_every_recipient_rejected_exits_5(run: Runner) -> None:
    result = run("--json", "send-list", "--to", REFUSED, "nobody", code=5)
    assert json.loads(result.stdout)["accepted"] == []
    assert error_doc(result)["type"] == "InvalidPhoneNumberError"


# --- send-bulk -----------------------------------------------------------------------------------


def _bulk_csv(path: Path, count: int, *, header: bool = False) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        if header:
            handle.write("phone,message\n")
        for i in range(count):
            handle.write(f"0912{i:06d},Tin nhắn số {i}\n")
    return path


def test_send_bulk_10000_lines_with_progress(
    run: Runner, emu: Emulator, tmp_path: Path, restore_balance: None
) -> None:
    emu.set_balance(20000, 1)
    source = _bulk_csv(tmp_path / "campaign.csv", 10000)
    result = run("--json", "send-bulk", "--progress", str(source))
    document = json.loads(result.stdout)
    # Line 102 is 0912000101: the emulator's refused suffix.
    assert (document["rows"], document["accepted"], document["rejected"]) == (10000, 9999, 1)
    assert document["operation"] == "SendSMSWithMultiMessage"
    assert document["parts"] == 10000
    assert len(document["messages"]) == 10000
    rejected = [m for m in document["messages"] if m["result"] == "rejected"]
    assert [(m["line"], m["phone"]) for m in rejected] == [(102, "0912000101")]
    guids = [m["guid"] for m in document["messages"]]
    assert len(set(guids)) == 10000
    assert all(GUID_RE.fullmatch(g) for g in guids)
    assert emu.balance(1) == 20000 - 9999
    sample = document["messages"][4321]
    [stored] = emu.received(guid=sample["guid"])
    assert (stored.phone, stored.message) == ("0912004321", "Tin nhắn số 4321")
    assert stored.operation == "SendSMSWithMultiMessage"
    # The progress bar ran on stderr and reached the end.
    assert "sending" in result.stderr
    assert "10000/10000" in result.stderr


def test_send_bulk_without_a_terminal_shows_no_progress(
    run: Runner, emu: Emulator, tmp_path: Path
) -> None:
    source = _bulk_csv(tmp_path / "small.csv", 30, header=True)
    result = run("send-bulk", "--chunk-size", "7", str(source))
    assert "sending" not in result.stderr
    assert "30 rows sent with SendSMSWithMultiMessage (30 SMS parts): 30 accepted" in result.stdout


def test_send_bulk_json_lines_from_stdin_with_guids(run: Runner, emu: Emulator) -> None:
    lines = [
        {"phone": PHONE_A, "text": "one", "guid": "aaaaaaaa-0000-4000-8000-000000000001"},
        {"phone": PHONE_B, "message": "two"},
    ]
    body = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    document = run.json("send-bulk", "-", input=body)
    assert document["format"] == "jsonl"
    assert document["file"] == "-"
    assert document["accepted"] == 2
    first, second = document["messages"]
    assert first["guid"] == "aaaaaaaa-0000-4000-8000-000000000001"
    assert [s.message for s in emu.received(guid=first["guid"])] == ["one"]
    assert [s.message for s in emu.received(guid=second["guid"])] == ["two"]


def test_send_bulk_csv_with_header_and_guid_column(
    run: Runner, emu: Emulator, tmp_path: Path
) -> None:
    source = tmp_path / "with-guids.csv"
    source.write_text(
        'guid,phone,text\nbbbbbbbb-0000-4000-8000-000000000001,0909128628,"comma, inside"\n',
        encoding="utf-8",
    )
    document = run.json("send-bulk", "--sender", "FiboSMS", str(source))
    [message] = document["messages"]
    assert (message["line"], message["guid"]) == (2, "bbbbbbbb-0000-4000-8000-000000000001")
    [stored] = emu.received(guid=message["guid"])
    assert (stored.message, stored.sender_name) == ("comma, inside", "FiboSMS")


def test_send_bulk_invalid_rows_stop_everything(run: Runner, emu: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(
        "0909128628,fine\n12345,bad phone\n0912345678,\n0909128628,x,dup\n0912345678,y,dup\n"
        "a,b,c,d\n",
        encoding="utf-8",
    )
    before = len(emu.received())
    result = run("--json", "send-bulk", str(source), code=5)
    document = json.loads(result.stdout)
    assert len(emu.received()) == before
    assert (document["rows"], document["invalid"], document["not_sent"]) == (6, 4, 2)
    by_line = {m["line"]: m for m in document["messages"]}
    assert by_line[2]["result"] == "invalid"
    assert "12345" in by_line[2]["reason"]
    assert by_line[3]["result"] == "invalid"
    assert "empty" in by_line[3]["reason"]
    assert by_line[5]["result"] == "invalid"
    assert "already on line 4" in by_line[5]["reason"]
    assert by_line[6]["result"] == "invalid"
    assert "columns" in by_line[6]["reason"]
    assert by_line[1]["result"] == by_line[4]["result"] == "not_sent"
    error = error_doc(result)
    assert "nothing was sent" in error["message"]
    assert error["exit_code"] == 5


def test_send_bulk_skip_invalid_sends_the_rest(run: Runner, emu: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "mixed.csv"
    source.write_text("0909128628,good\n12345,bad phone\n", encoding="utf-8")
    result = run("send-bulk", "--skip-invalid", str(source))
    assert "1 accepted, 1 invalid" in result.stdout
    assert re.search(r"^2\t12345\t\tinvalid\t", result.stdout, re.MULTILINE)


def test_send_bulk_check_sends_nothing(run: Runner, emu: Emulator, tmp_path: Path) -> None:
    source = _bulk_csv(tmp_path / "check.csv", 50)
    before = len(emu.received())
    document = run.json("send-bulk", "--check", str(source))
    assert (document["dry_run"], document["valid"], document["parts"]) == (True, 50, 50)
    assert len(emu.received()) == before


def test_send_bulk_with_sendbulksms(run: Runner, emu: Emulator, tmp_path: Path) -> None:
    source = _bulk_csv(tmp_path / "bulk.csv", 12)
    document = run.json("send-bulk", "--bulk", "--chunk-size", "5", str(source))
    assert (document["operation"], document["accepted"]) == ("SendBulkSMS", 12)
    assert all(m["guid"] is None for m in document["messages"])
    assert run("send-bulk", "--bulk", "--sender", "X", str(source), code=2)


def test_send_bulk_stops_when_the_balance_runs_out(
    run: Runner, emu: Emulator, tmp_path: Path, restore_balance: None
) -> None:
    emu.set_balance(15, 1)
    source = _bulk_csv(tmp_path / "too-many.csv", 25)
    result = run("--json", "send-bulk", "--chunk-size", "10", str(source), code=4)
    document = json.loads(result.stdout)
    assert (document["accepted"], document["not_sent"], document["unknown"]) == (10, 15, 0)
    error = error_doc(result)
    assert error["type"] == "InsufficientBalanceError"
    assert emu.balance(1) == 5
    # The first chunk went: the hint says which rows did, not that nothing was sent.
    assert "nothing was sent" not in error["hint"]
    assert f"the {document['accepted']} rows marked accepted were sent" in error["hint"]
    assert "the others were not" in error["hint"]
    # Refused from the first chunk on, nothing went, and the hint says so.
    refused = run("--json", "send-bulk", "--chunk-size", "10", str(source), code=4)
    assert json.loads(refused.stdout)["accepted"] == 0
    assert "nothing was sent" in error_doc(refused)["hint"]
    assert emu.balance(1) == 5


def test_send_bulk_uncertain_failure_hints_at_the_unknown_guids(
    run: Runner, faults: Emulator, tmp_path: Path
) -> None:
    # The request reaches the gateway and its answer is an HTTP 500: the row's fate is unknown,
    # and the hint says to look it up first, as `send` does.
    faults.fault("http_500", method="SendSMSWithMultiMessage")
    source = _bulk_csv(tmp_path / "one.csv", 1)
    result = run(
        "--json", "send-bulk", "--protocol", "soap11", "--attempts", "1", str(source), code=6
    )
    [row] = json.loads(result.stdout)["messages"]
    assert row["result"] == "unknown"
    hint = error_doc(result)["hint"]
    assert f"run `fibo-sms status {row['guid']}` before sending again" in hint
    assert "FIBO_ENDPOINT" not in hint


def test_subprocess_send_bulk_interrupted_mid_send_hints_at_the_unknown_guids(
    env: dict[str, str | None], faults: Emulator, tmp_path: Path
) -> None:
    guid = f"abababab-0000-4000-8000-{random.getrandbits(48):012x}"
    source = tmp_path / "one.csv"
    source.write_text(f"phone,text,guid\n{PHONE_A},interrupted,{guid}\n", encoding="utf-8")
    faults.fault("latency", method="SendSMSWithMultiMessage", seconds=2.0, times=1)
    sending = subprocess.Popen(
        [str(FIBO_BIN), "send-bulk", str(source)],
        env=subprocess_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Ctrl-C once the request is at the gateway, which holds its answer back.
        deadline = time.monotonic() + 20
        while not any(guid in str(r.params) for r in faults.recorded):
            assert time.monotonic() < deadline, "the request never reached the emulator"
            time.sleep(0.02)
        sending.send_signal(signal.SIGINT)
        out, err = sending.communicate(timeout=20)
    finally:
        if sending.poll() is None:
            sending.kill()
            sending.wait()
    assert sending.returncode == ExitCode.INTERRUPTED, (out, err)
    assert re.search(rf"^2\t{PHONE_A}\t{guid}\tunknown", out, re.MULTILINE), out
    assert f"run `fibo-sms status {guid}` before resending" in err
    time.sleep(2.0)  # let the delayed answer drain


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            "\ufeff" + json.dumps({"phone": PHONE_A, "text": "có BOM"}) + "\n", id="jsonl-bom"
        ),
        pytest.param(f"\ufeffphone,text\n{PHONE_A},có BOM\n", id="csv-bom"),
        pytest.param(f'phone,text\r\n{PHONE_A},"hai\r\ndòng"\r\n', id="csv-crlf"),
    ],
)
def test_send_bulk_reads_stdin_as_it_reads_a_file(run: Runner, tmp_path: Path, data: str) -> None:
    # The same bytes, named (no suffix: the format is told from the content) and on stdin.
    raw = data.encode("utf-8")
    named = tmp_path / "messages"
    named.write_bytes(raw)
    from_file = run.json("send-bulk", "--check", str(named))
    from_stdin = run.json("send-bulk", "--check", "-", input=raw)
    shown = ("format", "rows", "parts", "valid", "invalid")
    assert [from_stdin[k] for k in shown] == [from_file[k] for k in shown]
    assert from_file["valid"] == 1
    assert [m["line"] for m in from_stdin["messages"]] == [m["line"] for m in from_file["messages"]]


def test_send_bulk_refuses_stdin_that_is_not_utf8_as_it_refuses_such_a_file(
    run: Runner, tmp_path: Path
) -> None:
    raw = f"phone,text\n{PHONE_A},café\n".encode("latin-1")
    named = tmp_path / "latin1.csv"
    named.write_bytes(raw)
    from_file = run("--json", "send-bulk", "--check", str(named), code=5)
    from_stdin = run("--json", "send-bulk", "--check", "-", input=raw, code=5)
    assert error_doc(from_file)["type"] == error_doc(from_stdin)["type"] == "InvalidInputError"
    assert "is not UTF-8 text" in error_doc(from_file)["message"]
    assert "stdin is not UTF-8 text" in error_doc(from_stdin)["message"]


def test_send_bulk_refuses_a_row_with_more_cells_than_the_header(
    run: Runner, emu: Emulator, tmp_path: Path
) -> None:
    cut = "Hello, your code is 1234"  # an unquoted comma: three cells under a two-name header
    source = tmp_path / "comma.csv"
    source.write_text(
        f'phone,text\n{PHONE_A},{cut}\n{PHONE_B},"{cut}"\n{PHONE_A},trailing,\n{PHONE_B}\n',
        encoding="utf-8",
    )
    before = len(emu.received())
    result = run("--json", "send-bulk", str(source), code=5)
    assert len(emu.received()) == before
    by_line = {m["line"]: m for m in json.loads(result.stdout)["messages"]}
    header = 2
    cells = len(next(csv.reader([f"{PHONE_A},{cut}"])))
    assert cells > header
    assert by_line[2]["result"] == "invalid"
    assert by_line[2]["phone"] == PHONE_A
    assert f"line 2: {cells} cells, the header has {header}" in by_line[2]["reason"]
    assert "quote" in by_line[2]["reason"]
    # Quoted, the comma is text; an empty cell past the header cuts nothing.
    assert by_line[3]["result"] == by_line[4]["result"] == "not_sent"
    assert by_line[5]["result"] == "invalid"
    assert by_line[5]["reason"] == f"line 5: 1 cell, the header has {header}"
    document = run.json("send-bulk", "--skip-invalid", str(source))
    sent = {m["line"]: m for m in document["messages"] if m["result"] == "accepted"}
    assert set(sent) == {3, 4}
    [stored] = emu.received(guid=sent[3]["guid"])
    assert stored.message == cut


def test_send_bulk_missing_file(run: Runner, tmp_path: Path) -> None:
    result = run("send-bulk", str(tmp_path / "nope.csv"), code=5)
    assert "no such file" in result.stderr


def test_campaign_dry_run_json_lists_every_refusal_and_the_table_says_how_to_see_them(
    run: Runner, emu: Emulator, tmp_path: Path
) -> None:
    source = tmp_path / "many-bad.csv"
    bad = [f"{1200 + i}" for i in range(cli._SHOWN_REFUSALS + 5)]  # short codes: refused
    lines = ["phone,name", *(f"{number},n{i}" for i, number in enumerate(bad)), f"{PHONE_A},ok"]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ("campaign", "send", str(source), "--template", "Hi {name}", "--dry-run")
    document = run.json(*args)
    assert document["refused"] == len(bad)
    assert [r["phone"] for r in document["refusals"]] == bad
    assert all(r["reason"] for r in document["refusals"])
    human = run(*args)
    cells = [line.split("\t") for line in human.stdout.splitlines()]
    shown = [row for row in cells if len(row) > 1 and row[1] in bad]
    assert len(shown) == cli._SHOWN_REFUSALS
    assert f"... and {len(bad) - cli._SHOWN_REFUSALS} more refused rows" in human.stderr
    assert "--json lists them all" in human.stderr
    assert not list(tmp_path.glob("*.campaign.db"))


# --- follow-up -----------------------------------------------------------------------------------


def test_status(run: Runner, emu: Emulator) -> None:
    sent = run.json("send", PHONE_A, "status me")["guid"]
    failed = run.json("send", "0909120003", "will fail")["guid"]  # suffix 0003: SentFailed
    document = run.json("status", sent, failed, "not-a-known-guid")
    assert document["unknown"] == ["not-a-known-guid"]
    assert document["all_final"] is False
    rows = {row["guid"]: row for row in document["statuses"]}
    assert rows[sent] == {
        "guid": sent,
        "status": 2,
        "status_name": "SentSuccess",
        "final": True,
        "sender_name": rows[sent]["sender_name"],
    }
    assert rows[failed]["status_name"] == "SentFailed"
    from_stdin = run.json("status", "-", input=f"{sent}\n{failed}\n")
    assert from_stdin["all_final"] is True
    # Read as every other stdin: a BOM is no part of the first GUID, bad UTF-8 a typed error.
    with_bom = run.json("status", "-", input=b"\xef\xbb\xbf" + f"{sent}\r\n{failed}".encode())
    assert [row["guid"] for row in with_bom["statuses"]] == [sent, failed]
    assert with_bom["unknown"] == []
    refused = run("--json", "status", "-", input=b"\xff" + sent.encode(), code=5)
    assert "stdin is not UTF-8" in error_doc(refused)["message"]


def test_status_wait_polls_until_final(env: dict[str, str | None], tmp_path: Path) -> None:
    with run_emulator(delivery_delay=0.6) as slow:
        runner = Runner(
            env | {"FIBO_ENDPOINT": slow.endpoint, "FIBO_CLIENT_PASS": slow.client_pass},
            (slow.client_pass,),
        )
        guid = runner.json("send", PHONE_A, "wait for me")["guid"]
        assert runner.json("status", guid)["all_final"] is False
        result = runner("--json", "status", "--wait", "--interval", "0.1", "--progress", guid)
        assert json.loads(result.stdout)["statuses"][0]["status_name"] == "SentSuccess"
        assert "delivered" in result.stderr
        # The test channel never delivers: --max-wait gives up.
        test_guid = runner.json("send", "--test", PHONE_A, "never")["guid"]
        document = runner.json(
            "status", "--wait", "--interval", "0.1", "--max-wait", "0.3", test_guid
        )
        assert document["all_final"] is False


def test_sent_and_local_times(run: Runner, emu: Emulator, env: dict[str, str | None]) -> None:
    guid = run.json("send", PHONE_B, "listed")["guid"]
    document = run.json("sent", "--minutes", "5")
    [row] = [m for m in document["messages"] if m["guid"] == guid]
    assert set(row) == {
        "id",
        "guid",
        "phone",
        "message",
        "created",
        "sent",
        "status",
        "status_name",
    }
    assert (row["phone"], row["message"], row["status_name"]) == (PHONE_B, "listed", "SentSuccess")
    created = datetime.fromisoformat(row["created"])
    assert created.utcoffset() is not None
    # A table shows times in the local zone: run it in a subprocess with TZ set.
    for zone, offset in (("UTC0", 0), ("ICT-7", 7)):
        shown = subprocess.run(
            [str(FIBO_BIN), "sent", "--minutes", "5"],
            env=subprocess_env(env, TZ=zone),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        [line] = [line for line in shown.splitlines() if guid in line]
        local = created.astimezone(timezone(timedelta(hours=offset)))
        assert local.strftime("%Y-%m-%d %H:%M:%S") in line


def test_sent_page_and_pages(run: Runner, emu: Emulator) -> None:
    run.json("send", PHONE_A, "paged promo")
    total = run.json("pages")
    assert total["pages"] >= 1
    assert total["key"] == ""
    assert run.json("pages", "--key", "paged promo")["pages"] == 1
    document = run.json("sent-page", "1", "--key", "paged promo", "--status", "sent-success")
    assert document["page"] == 1
    assert [m["message"] for m in document["messages"]] == ["paged promo"]
    today = datetime.now().strftime("%Y-%m-%d")
    assert (
        run.json("sent-page", "1", "--from", "2001-01-01", "--to", "2001-01-02")["messages"] == []
    )
    assert run.json(
        "sent-page",
        "1",
        "--from",
        today,
        "--to",
        "2099-01-01",
        "--key",
        "paged promo",
        "--status",
        "2",
    )["messages"]
    result = run("sent-page", "1", "--status", "Bogus", code=2)
    assert "not a status" in result.stderr


def test_incoming(run: Runner, emu: Emulator) -> None:
    emu.inject_incoming("0909128628", "YES please")
    document = run.json("incoming", "--minutes", "5")
    [row] = [m for m in document["messages"] if m["message"] == "YES please"]
    assert row["status_name"] == "JustReceived"
    assert set(row) == {
        "id",
        "phone",
        "message",
        "status",
        "status_name",
        "created",
        "sent",
        "service_type_id",
        "service_type_name",
    }
    table = run("incoming", "--minutes", "5").stdout
    assert "YES please" in table
    assert "JustReceived" in table


def test_incoming_range(run: Runner, emu: Emulator) -> None:
    emu.inject_incoming("0909128628", "range me")
    document = run.json(
        "incoming-range",
        "--from",
        "2000-01-01",
        "--to",
        "2099-12-31",
        "--key",
        "range me",
        "--status",
        "JustReceived",
    )
    assert [m["message"] for m in document["messages"]] == ["range me"]
    assert (document["from"], document["to"]) == ("2000-01-01", "2099-12-31")
    assert (
        run.json("incoming-range", "--from", "2001-01-01", "--to", "2001-01-02")["messages"] == []
    )
    result = run("incoming-range", "--from", "2020-02-02", "--to", "2020-01-01", code=5)
    assert "after" in result.stderr
    assert run("incoming-range", "--from", "01/02/2020", "--to", "2020-01-01", code=2)


# --- estimate ------------------------------------------------------------------------------------


def test_estimate_offline(run: Runner) -> None:
    no_account = {
        "FIBO_CLIENT_NO": None,
        "FIBO_CLIENT_PASS": None,
        "FIBO_ENDPOINT": "http://127.0.0.1:9/x",
    }
    document = run.json("estimate", "Hello", env=no_account)
    assert document == {
        "encoding": "gsm7",
        "characters": 5,
        "parts": 1,
        "per_part": 160,
        "accents": "keep",
        "too_long": False,
        "without_accents": None,
        "service_type": None,
        "balance": None,
        "enough": None,
    }
    vietnamese = "Xin chào, hẹn gặp lại bạn vào thứ hai tuần sau nhé. " * 2
    document = run.json("estimate", vietnamese, env=no_account)
    assert (document["encoding"], document["parts"]) == ("ucs2", 2)
    assert document["without_accents"]["encoding"] == "gsm7"
    assert document["without_accents"]["parts"] == 1
    assert run.json("estimate", "--accents", "strip", vietnamese, env=no_account)["parts"] == 1
    human = run("estimate", vietnamese, env=no_account)
    assert human.stdout.startswith("2 parts, UCS-2")
    assert "--accents strip" in human.stderr
    assert run.json("estimate", "-", input="x" * 1200, env=no_account)["too_long"] is True


def test_a_text_from_stdin_is_read_as_a_file_is(run: Runner, emu: Emulator) -> None:
    # UTF-8, with a BOM dropped (it would make the text UCS-2) and one final line end, LF or
    # CRLF; what is not UTF-8 is refused as bad input, and nothing is sent.
    no_account = {"FIBO_CLIENT_NO": None, "FIBO_CLIENT_PASS": None}
    text = "Hẹn gặp lại"
    typed = run.json("estimate", text, env=no_account)
    for raw in (text.encode(), b"\xef\xbb\xbf" + text.encode() + b"\r\n", text.encode() + b"\n"):
        assert run.json("estimate", "-", input=raw, env=no_account) == typed
    before = len(emu.received())
    result = run("--json", "send", PHONE_A, "-", input="Café".encode("latin-1"), code=5)
    assert "stdin is not UTF-8" in error_doc(result)["message"]
    assert len(emu.received()) == before
    guid = run.json("send", PHONE_A, "-", input=b"\xef\xbb\xbf" + text.encode() + b"\n")["guid"]
    [stored] = emu.received(guid=guid)
    assert stored.message == text


def test_estimate_with_balance(run: Runner, emu: Emulator) -> None:
    document = run.json("estimate", "--balance", "hi")
    assert (document["service_type"], document["balance"], document["enough"]) == (
        "1",
        emu.balance(1),
        True,
    )


# --- wsdl ----------------------------------------------------------------------------------------


def test_wsdl_refresh_stores_and_the_client_uses_it(run: Runner, emu: Emulator, home: Path) -> None:
    document = run.json("wsdl", "refresh", emu.endpoint)
    cached = home / ".cache" / "fibo-sms" / "Service.wsdl"
    assert document["path"] == str(cached)
    assert document["source"] == emu.endpoint + "?WSDL"
    assert document["default"] is True
    assert document["namespace"] == "http://tempuri.org/"
    assert all(document["bindings"].values())
    assert emu.endpoint.encode() in cached.read_bytes()
    shown = run.json("wsdl", "show")
    assert shown["location"] == str(cached)
    assert "cached" in shown["source"]
    assert shown["missing"] == []
    assert run.json("check")["name"] == "Nguyen Van A"
    # --out keeps the default untouched and says how to use it.
    other = home / "other.wsdl"
    result = run("wsdl", "refresh", "--out", str(other), emu.endpoint + "?WSDL")
    assert other.is_file()
    assert f"FIBO_WSDL={other}" in result.stderr


def _broken_wsdl(path: Path) -> Path:
    """The bundled WSDL without SendSMS and GetSMSStatus, at ``path``."""
    from lxml import etree

    from fibo_soap import wsdl

    tree = etree.parse(str(wsdl.bundled_wsdl_path()))
    w = "{http://schemas.xmlsoap.org/wsdl/}"
    for binding in tree.getroot().iterfind(f"{w}binding"):
        for element in list(binding.iterfind(f"{w}operation")):
            if element.get("name") in ("SendSMS", "GetSMSStatus"):
                binding.remove(element)
    tree.write(str(path))
    return path


def test_wsdl_refresh_refuses_a_wsdl_lacking_methods(run: Runner, home: Path) -> None:
    broken = _broken_wsdl(home / "broken.wsdl")
    result = run("--json", "wsdl", "refresh", str(broken), code=7)
    error = error_doc(result)
    assert "SendSMS" in error["message"]
    assert "GetSMSStatus" in error["message"]
    assert "nothing was stored" in error["message"]
    assert not (home / ".cache" / "fibo-sms" / "Service.wsdl").exists()
    assert list((home / ".cache" / "fibo-sms").iterdir()) == []


def test_wsdl_refresh_http_error(run: Runner, emu: Emulator) -> None:
    result = run("wsdl", "refresh", emu.endpoint.replace("Service.asmx", "Nothing.asmx"), code=6)
    assert "HTTP 404" in result.stderr


@pytest.mark.parametrize("failure", ["lacking", "unreadable", "refused", "absent"])
def test_wsdl_refresh_hints_name_its_argument_not_the_client_settings(
    run: Runner, emu: Emulator, home: Path, failure: str
) -> None:
    closed = _free_port()
    argument, location, code = {
        "lacking": (str(_broken_wsdl(home / "broken.wsdl")),) * 2 + (ExitCode.PROTOCOL,),
        "unreadable": (str(home / "missing.wsdl"),) * 2 + (ExitCode.INVALID_INPUT,),
        "refused": (
            f"http://127.0.0.1:{closed}/Service.asmx",
            f"http://127.0.0.1:{closed}/Service.asmx?WSDL",
            ExitCode.TRANSPORT,
        ),
        "absent": (
            emu.endpoint.replace("Service.asmx", "Nothing.asmx"),
            emu.endpoint.replace("Service.asmx", "Nothing.asmx") + "?WSDL",
            ExitCode.TRANSPORT,
        ),
    }[failure]
    hint = error_doc(run("--json", "wsdl", "refresh", argument, code=code))["hint"]
    assert location in hint
    assert "argument" in hint
    assert "nothing was stored" in hint
    # wsdl refresh uses neither: a hint about them would send the user the wrong way.
    for unused in ("FIBO_ENDPOINT", "FIBO_PROTOCOL", "--protocol", "nothing was sent"):
        assert unused not in hint


def test_wsdl_refresh_timeout_hint_names_its_own_timeout(run: Runner) -> None:
    with socket.socket() as silent:  # takes the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/Service.asmx"
        result = run("--json", "wsdl", "refresh", "--timeout", "0.2", url, code=6)
    hint = error_doc(result)["hint"]
    assert f"{url}?WSDL did not answer in time" in hint
    assert "`wsdl refresh --timeout`" in hint
    # What it does not know about is left to the general hints.
    assert cli._wsdl_refresh_hint(RuntimeError("x"), location=url) is None


def test_a_wsdl_setting_that_cannot_be_read_is_a_configuration_error(
    run: Runner, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.wsdl"
    for args, env, setting in (
        (("--wsdl", str(missing)), {}, "--wsdl"),
        ((), {"FIBO_WSDL": str(missing)}, "FIBO_WSDL"),
    ):
        error = error_doc(run("--json", "check", *args, env=env, code=ExitCode.USAGE))
        assert error["type"] == "ConfigError"
        assert f"cannot read the WSDL {missing} ({setting})" in error["message"]
        assert setting in error["hint"]
    result = run("wsdl", "show", "--wsdl", str(tmp_path), code=ExitCode.USAGE)
    assert f"cannot read the WSDL {tmp_path} (--wsdl)" in result.stderr


def test_a_wsdl_path_in_the_config_file_is_expanded_and_relative_to_it(
    run: Runner, home: Path, tmp_path: Path
) -> None:
    from fibo_soap import wsdl

    bundled = wsdl.bundled_wsdl_path().read_bytes()
    (home / "wsdls").mkdir()
    (home / "wsdls" / "home.wsdl").write_bytes(bundled)
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "beside.wsdl").write_bytes(bundled)
    cases = (
        ("~/wsdls/home.wsdl", home / "wsdls" / "home.wsdl"),
        ("beside.wsdl", folder / "beside.wsdl"),
    )
    for setting, path in cases:
        config_file = folder / "fibo.toml"
        config_file.write_text(f'wsdl = "{setting}"\n', encoding="utf-8")
        shown = run.json("wsdl", "show", "--config", str(config_file))
        assert shown["location"] == str(path)
        assert shown["source"] == f"wsdl in {config_file}"
        checked = run.json("check", "--config", str(config_file), "--protocol", "soap11")
        assert checked["name"] == "Nguyen Van A"
    # Relative to the file, not to the working directory: from there it is missing.
    config_file.write_text('wsdl = "elsewhere.wsdl"\n', encoding="utf-8")
    assert not Path("elsewhere.wsdl").exists()
    result = run("check", "--config", str(config_file), code=ExitCode.USAGE)
    assert f"{folder / 'elsewhere.wsdl'} (wsdl in {config_file})" in result.stderr


def test_wsdl_show_bundled(run: Runner) -> None:
    document = run.json("wsdl", "show")
    assert document["source"] == "bundled"
    assert set(document["bindings"]) == {"soap11", "soap12", "get", "post"}
    names = [op["name"] for op in document["operations"]]
    assert "SendSMSWithMultiMessage" in names
    [send] = [op for op in document["operations"] if op["name"] == "SendSMS"]
    assert send["params"] == [
        "clientNo",
        "clientPass",
        "phoneNumber",
        "smsMessage",
        "smsGUID",
        "serviceType",
    ]
    assert send["bindings"] == ["soap11", "soap12", "get", "post"]
    assert send["used_by_client"] is True


def _secret_file(path: Path, text: str) -> Path:
    """A password file as the CLI wants one: ``text``, readable by its owner only."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


# --- configuration -------------------------------------------------------------------------------


def test_password_file_and_client_no_flags(run: Runner, emu: Emulator, tmp_path: Path) -> None:
    secret = _secret_file(tmp_path / "pass", emu.client_pass + "\n")
    unset = {"FIBO_CLIENT_PASS": None, "FIBO_CLIENT_NO": None}
    result = run("check", "--client-no", emu.client_no, "--password-file", str(secret), env=unset)
    assert "Nguyen Van A" in result.stdout
    assert "warning" not in result.stderr
    assert run.json(
        "check", env=unset | {"FIBO_CLIENT_NO": emu.client_no, "FIBO_PASSWORD_FILE": str(secret)}
    )


def test_commands_that_need_no_account_read_no_password_source(run: Runner, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-password"
    broken = {"FIBO_CLIENT_PASS": None, "FIBO_PASSWORD_FILE": str(missing)}
    assert run.json("about", env=broken) == {"about": "www.Fibovietnam.com"}
    assert run.json("wsdl", "show", env=broken)["missing"] == []
    assert run.json("about", "--password-file", str(missing), env=broken)["about"]
    # A command that needs the account still reads it, and says what is wrong.
    result = run("check", env=broken, code=ExitCode.USAGE)
    assert f"cannot read the password file {missing} (FIBO_PASSWORD_FILE)" in result.stderr


def test_a_readable_password_file_draws_a_warning(
    run: Runner, emu: Emulator, tmp_path: Path
) -> None:
    secret = tmp_path / "pass"
    secret.write_text(emu.client_pass, encoding="utf-8")
    secret.chmod(0o644)
    result = run("check", "--password-file", str(secret), env={"FIBO_CLIENT_PASS": None})
    assert f"chmod 600 {secret}" in result.stderr


def test_config_file_and_precedence(run: Runner, emu: Emulator, home: Path, tmp_path: Path) -> None:
    secret = _secret_file(tmp_path / "pass", emu.client_pass)
    config_dir = home / ".config" / "fibo-sms"
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text(
        f'client_no = "{emu.client_no}"\nendpoint = "{emu.endpoint}"\nservice_type = 2\n'
        f'protocol = "post"\npassword_file = "{secret}"\ntimeout = 5\n',
        encoding="utf-8",
    )
    only_file = {
        k: None
        for k in ("FIBO_CLIENT_NO", "FIBO_CLIENT_PASS", "FIBO_ENDPOINT", "FIBO_SERVICE_TYPE")
    }
    assert run.json("balance", env=only_file)["service_type"] == "2"
    # The environment wins over the file, a flag over both.
    assert run.json("balance", env=only_file | {"FIBO_SERVICE_TYPE": "3"})["service_type"] == "3"
    assert (
        run.json("balance", "-s", "1", env=only_file | {"FIBO_SERVICE_TYPE": "3"})["service_type"]
        == "1"
    )
    # A wrong endpoint in the environment beats the right one in the file.
    assert run(
        "about", env=only_file | {"FIBO_ENDPOINT": "http://127.0.0.1:9/Service.asmx"}, code=6
    )


def test_client_pass_in_a_readable_config_file_warns(
    run: Runner, emu: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "fibo.toml"
    path.write_text(f'client_pass = "{emu.client_pass}"\n', encoding="utf-8")
    path.chmod(0o644)
    result = run("check", "--config", str(path), env={"FIBO_CLIENT_PASS": None})
    assert "other users can read it" in result.stderr
    path.chmod(0o600)
    result = run("check", "--config", str(path), env={"FIBO_CLIENT_PASS": None})
    assert "warning" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("client_no = [", "not valid TOML"),
        ('colour = "blue"', "unknown keys: colour"),
        ('protocol = "smtp"', "use one of soap11"),
        ('service_type = "one"', "must be a number"),
        ("timeout = -1", "more than 0"),
    ],
)
def test_bad_config_files_exit_2(run: Runner, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content + "\n", encoding="utf-8")
    unset = {"FIBO_SERVICE_TYPE": None}
    result = run("check", "--config", str(path), env=unset, code=2)
    assert message in result.stderr


def test_missing_explicit_config_exits_2(run: Runner, tmp_path: Path) -> None:
    result = run("check", "--config", str(tmp_path / "none.toml"), code=2)
    assert "does not exist" in result.stderr


def test_no_password_exits_2_and_says_where_to_put_it(run: Runner) -> None:
    result = run("check", env={"FIBO_CLIENT_PASS": None}, code=2)
    assert "FIBO_CLIENT_PASS" in result.stderr
    assert "--password-file" in result.stderr


def test_password_prompt_is_hidden(run: Runner, emu: Emulator) -> None:
    result = run(
        "check", "--ask-password", input=emu.client_pass + "\n", env={"FIBO_CLIENT_PASS": None}
    )
    assert "FIBO password" in result.stdout + result.stderr
    assert "Nguyen Van A" in result.stdout


def test_verbose_logs_carry_no_password(run: Runner) -> None:
    result = run("-v", "check")
    assert "fibo.call" in result.stderr or "CheckClient" in result.stderr


# --- exit codes ----------------------------------------------------------------------------------


def test_exit_3_authentication(run: Runner) -> None:
    result = run("check", env={"FIBO_CLIENT_PASS": "wrong-password"}, code=3)
    assert "check FIBO_CLIENT_NO and FIBO_CLIENT_PASS" in result.stderr
    result = run("--json", "balance", env={"FIBO_CLIENT_PASS": "wrong-password"}, code=3)
    error = error_doc(result)
    assert (error["type"], error["code"], error["exit_code"]) == ("AuthenticationError", 100, 3)
    assert result.stdout == ""


def test_exit_4_balance(run: Runner, emu: Emulator, restore_balance: None) -> None:
    emu.set_balance(0, 1)
    result = run("send", PHONE_A, "no money", code=4)
    assert "balance 0 on service 1" in result.stderr
    emu.set_balance(1, 1)
    result = run("--json", "send-list", "--to", f"{PHONE_A},{PHONE_B}", "two", code=4)
    assert error_doc(result)["code"] == 104


def test_exit_5_invalid_input(run: Runner) -> None:
    local = run("--json", "send", "12345", "x", code=5)
    assert error_doc(local)["type"] == "InvalidPhoneNumberError"
    remote = run("--json", "send", REFUSED, "x", code=5)
    assert error_doc(remote)["code"] == 101
    service = run("send", "-s", "99", PHONE_A, "x", code=5)
    assert "see `fibo-sms balance --all`" in service.stderr
    assert run("balance", "-s", "99", code=5)
    missing = run("send", PHONE_A, "x", env={"FIBO_SERVICE_TYPE": None}, code=5)
    assert "FIBO_SERVICE_TYPE" in missing.stderr


def test_exit_6_transport(run: Runner, faults: Emulator) -> None:
    closed = _free_port()
    result = run("check", env={"FIBO_ENDPOINT": f"http://127.0.0.1:{closed}/Service.asmx"}, code=6)
    assert "cannot reach" in result.stderr
    assert "FIBO_ENDPOINT" in result.stderr
    faults.fault("latency", method="CheckClient", seconds=1.0)
    result = run(
        "--json", "check", "--timeout", "0.2", "--attempts", "1", "--protocol", "soap11", code=6
    )
    assert error_doc(result)["type"] == "TimeoutError"
    faults.faults.clear()
    time.sleep(1.0)  # let the delayed answer drain


def test_a_send_that_went_out_is_resolved_by_its_guid(run: Runner, faults: Emulator) -> None:
    faults.fault("close_after", method="SendSMS", times=1)
    guid = "cccccccc-0000-4000-8000-000000000001"
    document = run.json("send", "--guid", guid, PHONE_A, "did it go?")
    assert document["guid"] == guid
    assert len(faults.received(guid=guid)) == 1


def test_exit_9_ambiguous_send(run: Runner, faults: Emulator) -> None:
    # The send runs but its answer is lost, and the status look-up fails too.
    faults.fault("close_after", method="SendSMS")
    faults.fault("soap_fault", method="GetSMSStatus")
    faults.fault("http_500", method="GetSMSStatus")
    guid = "eeeeeeee-0000-4000-8000-000000000001"
    result = run("--json", "send", "--guid", guid, "--attempts", "1", PHONE_A, "lost?", code=9)
    error = error_doc(result)
    assert error["type"] == "AmbiguousSendError"
    assert f"fibo-sms status {guid}" in error["hint"]
    assert len(faults.received(guid=guid)) == 1


def test_exit_9_bulk_send_reports_the_unknown_rows(
    run: Runner, faults: Emulator, tmp_path: Path
) -> None:
    faults.fault("close_after", method="SendBulkSMS")
    source = _bulk_csv(tmp_path / "lost.csv", 4)
    result = run("--json", "send-bulk", "--bulk", "--chunk-size", "2", str(source), code=9)
    document = json.loads(result.stdout)
    assert (document["unknown"], document["not_sent"], document["accepted"]) == (2, 2, 0)
    assert "fibo-sms sent" in error_doc(result)["hint"]


def test_send_bulk_says_which_messages_of_a_broken_chunk_were_not_taken(
    run: Runner, faults: Emulator, tmp_path: Path, restore_balance: None
) -> None:
    # The gateway already holds the chunk's first message. The first attempt is lost before it
    # arrives, GetSMSStatus finds that message, and FIBO refuses the other two (104): they were
    # certainly not taken, so they are not_sent, not unknown.
    guids = [f"ffffffff-0000-4000-8000-{random.getrandbits(48):012x}" for _ in range(3)]
    source = tmp_path / "partial.csv"
    lines = [f"0912{i:06d},partial {i},{guid}\n" for i, guid in enumerate(guids)]
    source.write_text("".join(lines), encoding="utf-8")
    run.json("send", "--guid", guids[0], "0912000000", "partial 0")
    faults.set_balance(1, 1)
    faults.fault("close_before", method="SendSMSWithMultiMessage", times=1)
    result = run("--json", "send-bulk", "--chunk-size", "3", str(source), code=9)
    document = json.loads(result.stdout)
    counts = faults.store.count_by_guid(faults.client_no)
    held = {guid: counts.get(guid, 0) for guid in guids}
    assert held == {guids[0]: 1, guids[1]: 0, guids[2]: 0}
    results = {m["guid"]: m["result"] for m in document["messages"]}
    assert results == {g: "accepted" if held[g] else "not_sent" for g in guids}
    assert (document["accepted"], document["not_sent"], document["unknown"]) == (1, 2, 0)
    hint = error_doc(result)["hint"]
    assert "can be sent again" in hint
    assert guids[1] in hint
    assert guids[0] not in hint


def test_exit_7_protocol(run: Runner, faults: Emulator) -> None:
    faults.fault("soap_fault", method="CheckClient", protocol="soap11")
    result = run("--json", "check", "--protocol", "soap11", "--attempts", "1", code=7)
    assert error_doc(result)["type"] == "SoapFaultError"
    # The default protocol list falls back to the next protocol and succeeds.
    assert run.json("check", "--protocol", "soap11,get")["name"] == "Nguyen Van A"


def test_exit_8_and_9_and_1_from_the_facade(
    run: Runner, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fibo_soap.client import FiboClient

    def gateway(self: FiboClient) -> str:
        raise GatewayError("busy", operation="CheckClient", code=202)

    monkeypatch.setattr(FiboClient, "check_client", gateway)
    assert error_doc(run("--json", "check", code=8))["code"] == 202

    def ambiguous(self: FiboClient, *args: Any, **kwargs: Any) -> Any:
        raise AmbiguousSendError("lost", guids=[str(kwargs["guid"])], operation="SendSMS")

    monkeypatch.setattr(FiboClient, "send_sms", ambiguous)
    result = run("send", "--guid", "dddddddd-0000-4000-8000-000000000001", PHONE_A, "x", code=9)
    assert "fibo-sms status dddddddd-0000-4000-8000-000000000001" in result.stderr

    def bug(self: FiboClient) -> str:
        raise RuntimeError(f"a bug that mentions {self._password}")

    monkeypatch.setattr(FiboClient, "about", bug)
    result = run("about", code=1)
    assert "unexpected error: RuntimeError" in result.stderr
    result = run("-v", "about", code=1)
    assert "Traceback" in result.stderr


def test_exit_2_usage(run: Runner) -> None:
    assert "No such option" in run("check", "--nope", code=2).stderr
    assert run("send", PHONE_A, code=2)
    assert run("sent", "--minutes", "0", code=2)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), ExitCode.USAGE),
        (AuthenticationError("x", code=100), ExitCode.AUTHENTICATION),
        (ZeroBalanceError("x", code=102), ExitCode.BALANCE),
        (InsufficientBalanceError("x", code=104), ExitCode.BALANCE),
        (InvalidInputError("x"), ExitCode.INVALID_INPUT),
        (MessageTooLongError("x"), ExitCode.INVALID_INPUT),
        (InvalidPhoneNumberError("x", code=101), ExitCode.INVALID_INPUT),
        (InvalidServiceTypeError("x", code=103), ExitCode.INVALID_INPUT),
        (ConnectError("x"), ExitCode.TRANSPORT),
        (TimeoutError("x"), ExitCode.TRANSPORT),
        (ProtocolError("x"), ExitCode.PROTOCOL),
        (SoapFaultError("x", fault_code="Server"), ExitCode.PROTOCOL),
        (GatewayError("x", code=202), ExitCode.FIBO_OTHER),
        (UnexpectedCodeError("x", code=999), ExitCode.FIBO_OTHER),
        (AmbiguousSendError("x"), ExitCode.AMBIGUOUS_SEND),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (ValueError("x"), ExitCode.UNEXPECTED),
    ],
)
def test_exit_code_for_each_error_class(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) is code


def test_the_module_docstring_documents_every_exit_code() -> None:
    doc = cli.__doc__ or ""
    for code in range(10):
        assert re.search(rf"^{code}\s+\S", doc, re.MULTILINE), code


def test_quiet_prints_nothing(run: Runner) -> None:
    result = run("-q", "send", PHONE_A, "quiet")
    assert result.stdout == ""
    assert result.stderr == ""
    assert run("-q", "check", env={"FIBO_CLIENT_PASS": "bad"}, code=3).stderr


# --- unit: configuration -------------------------------------------------------------------------


def test_resolve_sources_and_precedence(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('client_no = "FILE"\nendpoint = "http://file"\n', encoding="utf-8")
    env = {"FIBO_CLIENT_NO": "ENV", "FIBO_CLIENT_PASS": "pw", "HOME": str(tmp_path)}
    settings = config.resolve(Flags(config=path), env)
    assert (settings.client_no, settings.endpoint) == ("ENV", "http://file")
    assert settings.source("client_no") == "FIBO_CLIENT_NO"
    assert settings.source("endpoint") == f"endpoint in {path}"
    assert settings.source("password") == "FIBO_CLIENT_PASS"
    assert "pw" not in repr(settings)
    flagged = config.resolve(Flags(config=path, client_no="FLAG"), env)
    assert flagged.client_no == "FLAG"


def test_resolve_prompts_only_when_asked_or_nothing_else(tmp_path: Path) -> None:
    env = {"FIBO_CLIENT_NO": "C", "FIBO_CLIENT_PASS": "from-env", "HOME": str(tmp_path)}
    asked = config.resolve(Flags(ask_password=True), env, prompt=lambda: "typed")
    assert (asked.password, asked.source("password")) == ("typed", "the prompt")
    assert config.resolve(Flags(), env, prompt=lambda: "typed").password == "from-env"
    no_pass = {"FIBO_CLIENT_NO": "C", "HOME": str(tmp_path)}
    assert config.resolve(Flags(), no_pass, prompt=lambda: "typed").password == "typed"
    with pytest.raises(ConfigError, match="no password"):
        config.resolve(Flags(), no_pass)
    with pytest.raises(ConfigError, match="no account number"):
        config.resolve(Flags(), {"HOME": str(tmp_path)})
    assert config.resolve(Flags(), {"HOME": str(tmp_path)}, need_account=False).password is None


def test_password_file_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret\r\nignored\n", encoding="utf-8")
    (tmp_path / "secret").chmod(stat.S_IRUSR | stat.S_IWUSR)
    path = tmp_path / "c.toml"
    path.write_text('client_no = "C"\npassword_file = "secret"\n', encoding="utf-8")
    settings = config.resolve(Flags(config=path), {"HOME": str(tmp_path)})
    assert settings.password == "s3cret"
    assert settings.warnings == ()


def test_resolve_reads_no_password_source_without_an_account(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "FIBO_PASSWORD_FILE": str(tmp_path / "missing")}
    settings = config.resolve(Flags(password_file=tmp_path / "missing"), env, need_account=False)
    assert settings.password is None
    assert settings.source("password") is None
    with pytest.raises(ConfigError, match="cannot read the password file"):
        config.resolve(Flags(client_no="C"), env)


def test_resolve_takes_a_wsdl_url_as_it_is(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/Service.asmx?WSDL"
    settings = config.resolve(Flags(wsdl=url), {"HOME": str(tmp_path)}, need_account=False)
    assert (settings.wsdl, settings.source("wsdl")) == (url, "--wsdl")


def test_default_paths_follow_xdg(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "c"), "XDG_CACHE_HOME": str(tmp_path / "k")}
    assert config.default_config_path(env) == tmp_path / "c" / "fibo-sms" / "config.toml"
    assert config.cached_wsdl_path(env) == tmp_path / "k" / "fibo-sms" / "Service.wsdl"
    home = {"HOME": str(tmp_path)}
    assert config.default_config_path(home) == tmp_path / ".config" / "fibo-sms" / "config.toml"


# --- subprocess ----------------------------------------------------------------------------------


def test_subprocess_json_and_exit_codes(env: dict[str, str | None], emu: Emulator) -> None:
    ok = subprocess.run(
        [str(FIBO_BIN), "balance", "--json"],
        env=subprocess_env(env),
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"service_type": "1", "balance": emu.balance(1)}
    bad = subprocess.run(
        [str(FIBO_BIN), "check"],
        env=subprocess_env(env, FIBO_CLIENT_PASS="not-it"),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 3
    assert "not-it" not in bad.stdout + bad.stderr
    assert emu.client_pass not in bad.stdout + bad.stderr


def test_subprocess_help() -> None:
    # How long it takes is measured by bench/startup.py, never here.
    done = subprocess.run([str(FIBO_BIN), "--help"], capture_output=True, text=True, check=True)
    assert "Usage" in done.stdout
    assert "Account and connection" not in done.stdout  # the root has no account options
    assert "Commands:" in done.stdout


def _announced(server: subprocess.Popen[str]) -> dict[str, str]:
    """The NAME=value lines `fibo-sms emulator` prints once it listens (the admin URL too)."""
    assert server.stdout is not None
    announced: dict[str, str] = {}
    deadline = time.monotonic() + 20
    while "admin" not in announced and time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        if "=" in line:
            key, _, value = line.strip().partition("=")
            announced[key] = value
        elif line.strip().startswith("admin: "):
            announced["admin"] = line.strip().removeprefix("admin: ")
    return announced


def _check_once_up(client_env: Mapping[str, str | None]) -> subprocess.CompletedProcess[str]:
    """`fibo-sms check --json` against an emulator that may still be starting."""
    for _ in range(100):
        checked = subprocess.run(
            [str(FIBO_BIN), "check", "--json"],
            env=subprocess_env(client_env),
            capture_output=True,
            text=True,
        )
        if checked.returncode != ExitCode.TRANSPORT:
            break
        time.sleep(0.1)
    return checked


def _check_account(
    env: dict[str, str | None], endpoint: str, client_no: str, client_pass: str
) -> subprocess.CompletedProcess[str]:
    """`fibo-sms check --json` with the account an emulator announced: it must pass."""
    client_env = env | {
        "FIBO_ENDPOINT": endpoint,
        "FIBO_CLIENT_NO": client_no,
        "FIBO_CLIENT_PASS": client_pass,
    }
    checked = _check_once_up(client_env)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["name"] == "Nguyen Van A"
    return checked


@contextlib.contextmanager
def _emulator_process(env: dict[str, str | None], *args: str) -> Iterator[subprocess.Popen[str]]:
    """`fibo-sms emulator ARGS` in a process of its own, its output piped as text; stopped when
    the block ends (what it printed is still there for ``communicate``)."""
    server = subprocess.Popen(
        [str(FIBO_BIN), "emulator", *args],
        env=subprocess_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield server
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_subprocess_emulator_command(env: dict[str, str | None], tmp_path: Path) -> None:
    port = _free_port()
    with _emulator_process(
        env, "--port", str(port), "--db", str(tmp_path / "emu.sqlite"), "--delivery-delay", "0"
    ) as server:
        announced = _announced(server)
        assert announced["FIBO_ENDPOINT"] == f"http://127.0.0.1:{port}/Service.asmx"
        checked = _check_account(
            env,
            announced["FIBO_ENDPOINT"],
            announced["FIBO_CLIENT_NO"],
            announced["FIBO_CLIENT_PASS"],
        )
        assert announced["FIBO_CLIENT_PASS"] not in checked.stdout + checked.stderr


def test_subprocess_emulator_on_port_0_shares_the_clients_password_file(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    # README's session: one password file for the emulator and the client; a file may hold more
    # than the password after its first line.
    secret = _secret_file(tmp_path / "fibo-pass", "demo-secret-1\n# rotated 2026-11-01\n")
    with _emulator_process(
        env, "--port", "0", "--db", str(tmp_path / "emu.sqlite"), "--password-file", str(secret)
    ) as server:
        announced = _announced(server)
        endpoint = urllib.parse.urlsplit(announced["FIBO_ENDPOINT"])
        assert endpoint.port, announced  # the port it listens on, not the 0 it was given
        assert urllib.parse.urlsplit(announced["admin"]).port == endpoint.port
        client_env = env | {
            "FIBO_ENDPOINT": announced["FIBO_ENDPOINT"],
            "FIBO_CLIENT_NO": announced["FIBO_CLIENT_NO"],
            "FIBO_CLIENT_PASS": None,
            "FIBO_PASSWORD_FILE": str(secret),
        }
        checked = _check_once_up(client_env)
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["name"] == "Nguyen Van A"


def test_subprocess_emulator_json_is_one_document_a_script_can_use(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    with _emulator_process(env, "--port", "0", "--json") as server:
        assert server.stdout is not None
        document = json.loads(server.stdout.readline())
        assert set(document) == {
            "endpoint",
            "host",
            "port",
            "client_no",
            "client_pass",
            "admin",
            "faults",
        }
        assert document["faults"] == []
        assert document["endpoint"] == f"http://127.0.0.1:{document['port']}/Service.asmx"
        assert document["port"] > 0
        _check_account(env, document["endpoint"], document["client_no"], document["client_pass"])
        assert document["admin"] == f"http://127.0.0.1:{document['port']}/_emulator"
        faults = f"{document['admin']}/faults"
        with urllib.request.urlopen(faults, timeout=10) as answer:  # noqa: S310 -- loopback, above
            assert json.loads(answer.read()) == []
    _, errors = server.communicate(timeout=10)
    assert "Traceback" not in errors


def test_subprocess_emulator_takes_a_connection_the_moment_it_announces(
    env: dict[str, str | None],
) -> None:
    # A script reads the address and connects at once: no retry loop may be needed.
    for _ in range(3):
        with _emulator_process(env, "--port", "0", "--json") as server:
            assert server.stdout is not None
            document = json.loads(server.stdout.readline())
            connection = http.client.HTTPConnection(document["host"], document["port"], timeout=10)
            connection.request("GET", "/Service.asmx/About")
            assert connection.getresponse().status == 200
            connection.close()


def test_subprocess_emulator_quiet_prints_nothing_and_serves(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    secret = _secret_file(tmp_path / "fibo-pass", "quiet-secret-1\n")
    port = _free_port()
    with _emulator_process(
        env, "--port", str(port), "--password-file", str(secret), "-q"
    ) as server:
        client_env = env | {
            "FIBO_ENDPOINT": f"http://127.0.0.1:{port}/Service.asmx",
            "FIBO_CLIENT_NO": "CL0001",
            "FIBO_CLIENT_PASS": None,
            "FIBO_PASSWORD_FILE": str(secret),
        }
        checked = _check_once_up(client_env)
        assert checked.returncode == 0, checked.stderr
    printed, errors = server.communicate(timeout=10)
    assert printed == ""
    assert "warning" not in errors  # the password and the port were given


def test_subprocess_emulator_quiet_warns_of_what_it_hides(env: dict[str, str | None]) -> None:
    with _emulator_process(env, "--port", "0", "--quiet") as server:
        assert server.stderr is not None
        warning = server.stderr.readline()
    printed, _ = server.communicate(timeout=10)
    assert printed == ""
    assert warning.startswith("warning: --quiet hides")
    assert "--password-file" in warning
    assert "--port" in warning


def test_emulator_on_a_db_of_another_password_is_a_configuration_error(
    run: Runner, tmp_path: Path
) -> None:
    db = tmp_path / "emu.sqlite"
    with run_emulator(db=db, client_pass="the-first-one"):
        pass
    other = tmp_path / "other-pass"
    other.write_text("another-one\n", encoding="utf-8")
    other.chmod(0o600)
    result = run(
        "--json",
        "emulator",
        "--port",
        "0",
        "--db",
        str(db),
        "--password-file",
        str(other),
        code=ExitCode.USAGE,
    )
    error = error_doc(result)
    assert error["type"] == "ConfigError"
    assert "another password" in error["message"]
    assert "--db" in error["hint"]
    assert "--password-file" in error["hint"]
    assert "another-one" not in result.stdout + result.stderr


def test_emulator_on_a_db_that_is_no_emulator_database_is_a_configuration_error(
    run: Runner, tmp_path: Path
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n", encoding="utf-8")
    future = tmp_path / "future.sqlite"
    with run_emulator(db=future) as emulator:
        emulator.store._conn.execute("PRAGMA user_version = 99")
    for db, why in (
        (junk, "file is not a database"),
        (tmp_path / "no such folder" / "emu.sqlite", "unable to open database file"),
        (future, "schema version 99"),
    ):
        error = error_doc(run("--json", "emulator", "--port", "0", "--db", str(db), code=2))
        assert error["type"] == "ConfigError"
        assert str(db) in error["message"]
        assert why in error["message"]
        assert "--db" in error["hint"]
    assert junk.read_text(encoding="utf-8") == "not a database\n"


def test_emulator_on_a_port_in_use_is_a_configuration_error(run: Runner, tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("readable\n", encoding="utf-8")
    secret.chmod(0o644)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            "emulator", "--port", str(port), "--password-file", str(secret), code=ExitCode.USAGE
        )
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr
    assert "--port" in result.stderr
    # The file is read as the client reads it, with the same warning.
    assert f"chmod 600 {secret}" in result.stderr


# --- faults from the command line ---------------------------------------------------------------


def test_subprocess_emulator_serves_with_the_faults_it_was_given(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    with _emulator_process(
        env,
        "--port",
        "0",
        "--json",
        "--fault",
        "close_after,method=SendSMS,protocol=get,times=1",
        "--fault",
        "http_500,method=About,protocol=post",
    ) as server:
        assert server.stdout is not None
        document = json.loads(server.stdout.readline())
        rules = document["faults"]
        assert [(r["kind"], r["method"], r["protocol"], r["times"]) for r in rules] == [
            ("close_after", "SendSMS", "get", 1),
            ("http_500", "About", "post", None),
        ]
        base = document["endpoint"]
        query = urllib.parse.urlencode(
            {
                "clientNo": document["client_no"],
                "clientPass": document["client_pass"],
                "phoneNumber": "0909128628",
                "smsMessage": "hi",
                "smsGUID": "g-cli-fault",
                "serviceType": "1",
            }
        )
        # The first SendSMS over GET is stored, then its connection dropped: no answer at all.
        with pytest.raises((ConnectionError, urllib.error.URLError, http.client.HTTPException)):
            urllib.request.urlopen(f"{base}/SendSMS?{query}", timeout=10)  # noqa: S310 -- loopback
        messages = f"{document['admin']}/messages?guid=g-cli-fault"
        with urllib.request.urlopen(messages, timeout=10) as answer:  # noqa: S310 -- loopback
            assert len(json.loads(answer.read())) == 1
        faults = f"{document['admin']}/faults"
        with urllib.request.urlopen(faults, timeout=10) as answer:  # noqa: S310 -- loopback
            assert json.loads(answer.read()) == rules[1:]  # used up; the other one stays
    _, errors = server.communicate(timeout=10)
    assert "Traceback" not in errors


def test_the_announcement_lists_the_faults_set(faults: Emulator) -> None:
    from fibo_soap.emulator.server import announcement

    assert "faults:" not in announcement(faults)
    faults.fault("close_after", method="SendSMS", times=1)
    faults.fault("latency", protocol="get", seconds=0.5)
    assert announcement(faults).splitlines()[-1] == (
        "  faults: close_after,method=SendSMS,times=1 latency,protocol=get,seconds=0.5"
    )


def test_emulator_refuses_a_fault_that_cannot_be_before_it_listens(run: Runner) -> None:
    port = _free_port()
    result = run("emulator", "--port", str(port), "--fault", "close_after,method=SendSms", code=2)
    assert "'close_after,method=SendSms': method must be * or a wire method" in result.stderr
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_fault_add_list_and_clear_a_running_emulator(run: Runner, faults: Emulator) -> None:
    added = run.json(
        "fault",
        "add",
        "http_500,method=About,protocol=get,times=1",
        "latency,method=CheckClient,seconds=0.01",
        "--emulator",
        faults.endpoint,
    )["faults"]
    rules = faults.faults.rules()
    assert added == [rule.to_dict() for rule in rules]
    assert [rule.spec() for rule in rules] == [
        "http_500,method=About,protocol=get,times=1",
        "latency,method=CheckClient,seconds=0.01",
    ]
    # The rule fires on the emulator's next matching call, once.
    statuses = []
    for _ in range(2):
        connection = http.client.HTTPConnection(faults.host, faults.port, timeout=10)
        connection.request("GET", "/Service.asmx/About")
        statuses.append(connection.getresponse().status)
        connection.close()
    assert statuses == [500, 200]
    # Without --emulator, FIBO_ENDPOINT names it (the env fixture sets it to this emulator).
    assert run.json("fault", "list") == {"faults": added[1:]}
    listed = run("fault", "list").stdout.splitlines()
    assert listed[0].split("\t") == ["id", "kind", "method", "protocol", "times", "seconds"]
    assert listed[1].split("\t") == [
        str(added[1]["id"]),
        "latency",
        "CheckClient",
        "*",
        "always",
        "0.01",
    ]
    assert run("fault", "clear").stdout == "no faults\n"
    assert faults.faults.rules() == []
    assert run("fault", "list").stdout == "no faults\n"


def test_fault_add_checks_every_rule_before_adding_any(run: Runner, faults: Emulator) -> None:
    result = run("fault", "add", "latency,seconds=1", "close_after,times=0", code=ExitCode.USAGE)
    assert "'close_after,times=0': times must be a whole number ≥ 1, or always" in result.stderr
    assert faults.faults.rules() == []


def test_fault_where_no_emulator_answers_is_a_transport_error(run: Runner) -> None:
    port = _free_port()
    error = error_doc(
        run(
            "--json",
            "fault",
            "list",
            "--emulator",
            f"http://127.0.0.1:{port}/Service.asmx",
            code=ExitCode.TRANSPORT,
        )
    )
    assert error["type"] == "ConnectError"
    assert error["hint"] == (
        f"no emulator answers at http://127.0.0.1:{port} (from --emulator): start one "
        "(`fibo-sms emulator`), or check --emulator"
    )


def test_fault_where_something_else_answers_is_a_protocol_error(run: Runner) -> None:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        origin = f"http://127.0.0.1:{server.server_address[1]}"
        error = error_doc(
            run("--json", "fault", "list", env={"FIBO_ENDPOINT": origin}, code=ExitCode.PROTOCOL)
        )
    finally:
        server.shutdown()
        server.server_close()
    assert error["type"] == "ProtocolError"
    assert f"GET {origin}/_emulator/faults answered HTTP 404" in error["message"]
    assert error["hint"].startswith(f"no emulator answers at {origin} (from FIBO_ENDPOINT)")


def test_fault_refuses_an_emulator_address_that_is_no_http_url(run: Runner) -> None:
    result = run("fault", "clear", "--emulator", "ftp://127.0.0.1/x", code=ExitCode.USAGE)
    assert "--emulator is not an http(s) URL: 'ftp://127.0.0.1/x'" in result.stderr


@pytest.mark.parametrize("args", [["wsdl", "show"], ["--json", "about"], ["senders"]])
def test_output_whose_reader_has_gone_stops_quietly_with_141(
    env: dict[str, str | None], args: list[str]
) -> None:
    # `fibo-sms … | head -1`: the pipe closes under the command. Not "a bug" (1), and no traceback:
    # the status a program ended by SIGPIPE has, as the shell's own tools end.
    process = subprocess.Popen(
        [str(FIBO_BIN), *args],
        env=subprocess_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # before it writes anything: every write meets a closed pipe
    _, errors = process.communicate(timeout=60)
    assert process.returncode == cli.EXIT_OUTPUT_CLOSED == 141
    assert errors == b""


def test_main_entry_point() -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0


def test_log_format_json_writes_one_event_per_call_on_stderr_without_the_password(
    fibo_emulator: Any,
) -> None:
    import structlog
    from typer.testing import CliRunner

    from fibo_soap.cli import app as cli_app

    env = {
        "FIBO_ENDPOINT": fibo_emulator.endpoint,
        "FIBO_CLIENT_NO": fibo_emulator.client_no,
        "FIBO_CLIENT_PASS": fibo_emulator.client_pass,
        "FIBO_PROTOCOL": "get",
    }
    try:
        result = CliRunner().invoke(cli_app, ["--log-format", "json", "check"], env=env)
    finally:
        structlog.reset_defaults()
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    calls = [e for e in events if e.get("event") == "fibo.call"]
    assert [(e["operation"], e["protocol"], e["outcome"]) for e in calls] == [
        ("CheckClient", "get", "ok")
    ]
    assert fibo_emulator.client_pass not in result.stderr + result.stdout
