"""The demo walks every operation against the bundled emulator and exits 0."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from fibo_soap import emulator
from fibo_soap.cli import app
from fibo_soap.demo import PROTOCOLS, run_demo
from fibo_soap.models import SmsStatus
from fibo_soap.operations import OPERATIONS

STEPS = 9


def fibo_sms(*args: str, home: Path) -> Result:
    """`fibo-sms` in-process, with an empty home and no FIBO settings."""
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        **dict.fromkeys(("FIBO_CLIENT_NO", "FIBO_CLIENT_PASS", "FIBO_PASSWORD_FILE")),
        **dict.fromkeys(("FIBO_ENDPOINT", "FIBO_PROTOCOL", "FIBO_WSDL", "FIBO_SERVICE_TYPE")),
    }
    return CliRunner().invoke(app, list(args), env=env)


def test_demo_walks_every_step_over_each_protocol() -> None:
    out = io.StringIO()
    assert run_demo(Console(file=out, width=200, color_system=None)) == 0
    text = out.getvalue()
    for _, label in PROTOCOLS:
        assert label in text
    for step in range(1, STEPS + 1):
        assert text.count(f"{step}. ") >= len(PROTOCOLS)
    # Delivery moved on: the ordinary message succeeded, the magic 0003 number failed, and the
    # free test channel never left Pending.
    assert re.search(r"Pending\s*│\s*SentSuccess", text)
    assert re.search(r"Pending\s*│\s*SentFailed", text)
    assert re.search(r"Pending\s*│\s*Pending", text)
    assert "rejected" in text
    assert "SenderName1" in text
    assert "Done." in text


def test_demo_calls_every_wire_method_over_each_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    real = emulator.run_emulator

    @contextlib.contextmanager
    def watched(**options: Any) -> Iterator[Any]:
        with real(**options) as emu:
            started.append(emu)
            yield emu

    monkeypatch.setattr(emulator, "run_emulator", watched)
    assert run_demo(Console(quiet=True)) == 0
    [emu] = started
    for protocol, _ in PROTOCOLS:
        called = {r.operation for r in emu.recorded if r.protocol == protocol}
        assert called >= set(OPERATIONS), (protocol, set(OPERATIONS) - called)


def test_fibo_sms_demo_command_exits_zero(tmp_path: Path) -> None:
    result = fibo_sms("demo", home=tmp_path)
    assert result.exit_code == 0, result.output
    assert "Done." in result.output


def test_fibo_sms_demo_json_is_one_document_of_every_step(tmp_path: Path) -> None:
    result = fibo_sms("demo", "--json", home=tmp_path)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # one document, no table around it
    assert [p["label"] for p in document["protocols"]] == [label for _, label in PROTOCOLS]
    for walk in document["protocols"]:
        titles = [step["title"] for step in walk["steps"]]
        assert [t.split(".")[0] for t in titles] == [str(n) for n in range(1, STEPS + 1)]
        assert set(walk["operations"]) >= set(OPERATIONS)
        senders = next(s for s in walk["steps"] if "Sender" in s["title"])
        assert [row["name"] for row in senders["rows"]] == ["FiboSMS", "SenderName1"]
        # Statuses by FIBO's names, as the other commands' JSON writes them (status_name).
        delivery = next(s for s in walk["steps"] if "Delivery" in s["title"])
        assert {row["before"] for row in delivery["rows"]} == {SmsStatus.PENDING.fibo_name}
        assert {row["after"] for row in delivery["rows"]} == {
            status.fibo_name
            for status in (SmsStatus.SENT_SUCCESS, SmsStatus.SENT_FAILED, SmsStatus.PENDING)
        }
    assert document["stored"] > 0
    assert fibo_sms("--json", "demo", home=tmp_path).stdout.count("\n") == 1


@pytest.mark.parametrize("where", ["after", "before"])
def test_fibo_sms_demo_quiet_prints_nothing(tmp_path: Path, where: str) -> None:
    args = ("demo", "--quiet") if where == "after" else ("--quiet", "demo")
    result = fibo_sms(*args, home=tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == ""
