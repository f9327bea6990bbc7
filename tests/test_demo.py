"""The demo walks every operation against the bundled emulator and exits 0."""

from __future__ import annotations

import io
import re

from rich.console import Console

from fibo_soap.demo import PROTOCOLS, run_demo


def test_demo_walks_every_step_over_each_protocol() -> None:
    out = io.StringIO()
    assert run_demo(Console(file=out, width=200, color_system=None)) == 0
    text = out.getvalue()
    for _, label in PROTOCOLS:
        assert label in text
    for step in range(1, 8):
        assert text.count(f"{step}. ") >= len(PROTOCOLS)
    # Delivery moved on: the ordinary message succeeded, the magic 0003 number failed, and the
    # free test channel never left Pending.
    assert re.search(r"PENDING\s*│\s*SENT_SUCCESS", text)
    assert re.search(r"PENDING\s*│\s*SENT_FAILED", text)
    assert re.search(r"PENDING\s*│\s*PENDING", text)
    assert "rejected" in text
    assert "Done." in text


def test_fibo_sms_demo_command_exits_zero() -> None:
    from typer.testing import CliRunner

    from fibo_soap.cli import app

    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "Done." in result.output
