"""``fibo-sms demo``: every operation through the real client against the bundled emulator.

It starts the emulator on a free loopback port, then walks the account check, the sender names,
balances, an estimate, each kind of send, a rejected recipient, delivery statuses moving to
SentSuccess, an incoming SMS and paging, over SOAP 1.1 and over HTTP GET: all 16 wire methods on
each. Each step is a table, printed as it is done; :meth:`DemoRun.as_dict` is the whole walk as one
JSON document. It needs no account and no network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from fibo_soap.client import FiboClient
from fibo_soap.models import VN_TZ, IncomingStatus, Message, SmsStatus

OTP_TEXT = "Mã OTP của bạn là 123456. Không chia sẻ mã này cho bất kỳ ai."
PROTOCOLS = (("soap11", "SOAP 1.1"), ("get", "HTTP GET"))
DELIVERY_DELAY = 4.0


@dataclass(frozen=True)
class Step:
    """One step of the walk: a title, and the answers as rows of a table."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def table(self) -> Table:
        """The step as a rich table."""
        table = Table(title=self.title, title_justify="left", title_style="bold cyan")
        for column in self.columns:
            table.add_column(column)
        for row in self.rows:
            table.add_row(*(_cell(value) for value in row))
        return table

    def as_dict(self) -> dict[str, Any]:
        """The step as JSON: its title and a list of rows keyed by column."""
        return {
            "title": self.title,
            "rows": [
                {column: _json(value) for column, value in zip(self.columns, row, strict=True)}
                for row in self.rows
            ],
        }


@dataclass
class Walk:
    """The steps over one protocol, and the wire methods the emulator received over it."""

    protocol: str
    label: str
    steps: list[Step] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)


@dataclass
class DemoRun:
    """What the demo did: the emulator it ran, a walk per protocol, the messages it stored."""

    endpoint: str
    client_no: str
    walks: list[Walk] = field(default_factory=list)
    stored: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The demo as one JSON document."""
        return {
            "endpoint": self.endpoint,
            "client_no": self.client_no,
            "protocols": [
                {
                    "protocol": walk.protocol,
                    "label": walk.label,
                    "operations": walk.operations,
                    "steps": [step.as_dict() for step in walk.steps],
                }
                for walk in self.walks
            ],
            "stored": self.stored,
        }


def _cell(value: Any) -> str:
    if isinstance(value, SmsStatus | IncomingStatus):
        return value.fibo_name  # as FIBO and the other commands write it
    if isinstance(value, datetime):
        return value.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _json(value: Any) -> Any:
    if isinstance(value, SmsStatus | IncomingStatus):
        return value.fibo_name
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _steps(client: FiboClient, emu: Any) -> Iterator[Step]:
    """The walk over one client, a step at a time (each step's calls are made as it is asked)."""
    yield Step(
        "1. Reachability and account",
        ("call", "answer"),
        [("about()", client.about()), ("check_client()", client.check_client())],
    )
    senders = client.get_sender_names()
    yield Step(
        "2. Sender (brand) names",
        ("name", "status", "registered"),
        [(s.name, s.status, s.created) for s in senders],
    )
    yield Step(
        "3. Balances",
        ("service type", "balance"),
        [(h.service_type_name, h.balance) for h in client.get_hosting_balances()]
        + [("get_balance(1)", client.get_balance(1))],
    )
    planned = [
        Message("0909 128 628", OTP_TEXT),
        Message("+84 912 345 678", "Don hang #1024 da giao. Cam on quy khach!"),
    ]
    estimate = client.estimate(planned)
    yield Step(
        "4. Estimate before sending",
        ("phone", "encoding", "characters", "parts"),
        [
            (m.phone, s.encoding.value, s.characters, s.parts)
            for m, s in zip(planned, estimate.messages, strict=True)
        ]
        + [("total", "", "", f"{estimate.total_parts} of balance {estimate.balance}")],
    )
    brand = next((s.name for s in senders if s.name), "FiboSMS")
    otp = client.send_sms(planned[0].phone, planned[0].text)
    test = client.send_test_sms("0909128628", "Tin nhắn thử nghiệm (service type 3)")
    masked = client.send_masked_sms("0912345678", "Xin chào từ FiboSMS", sender_name=brand)
    bulk = client.send_bulk_sms([("0937100759", "Message 1"), ("0937100759", "Message 2")])
    failing = client.send_sms("0909120003", "This one will fail delivery")
    batch = client.send_to_list(["0903636635", "0903636636", "0909120101"], "Khuyến mãi 20%")
    multi = client.send_multi_message(
        [Message("0903636635", "Chào An"), Message("0903636636", "Chào Bình")],
    )
    yield Step(
        "5. Sends",
        ("operation", "result"),
        [
            ("send_sms (OTP)", f"{otp.code} {otp.message} guid={otp.guid}"),
            ("send_test_sms (type 3, free)", f"{test.code} guid={test.guid}"),
            (f"send_masked_sms (brand name {brand})", f"{masked.code} guid={masked.guid}"),
            ("send_bulk_sms (no GUIDs)", f"{bulk.code} {bulk.count} messages"),
            ("send_sms to magic 0003", f"{failing.code} guid={failing.guid}"),
            (
                "send_to_list (one rejected)",
                f"accepted {len(batch.accepted)}, rejected {list(batch.rejected)}",
            ),
            ("send_multi_message", f"accepted {len(multi.accepted)}"),
        ],
    )
    guids = [otp.guid, masked.guid, failing.guid, test.guid]
    before = client.get_sms_status(guids)
    emu.advance(DELIVERY_DELAY)
    after = {row.guid: row.status for row in client.get_sms_status(guids)}
    yield Step(
        f"6. Delivery statuses (emulator clock advanced {DELIVERY_DELAY:g} s)",
        ("guid", "before", "after"),
        [(row.guid, row.status, after.get(row.guid)) for row in before],
    )
    emu.inject_incoming("84913122005", "FIBO DEMODGN 50", service_type_id=229)
    now = datetime.now(VN_TZ)
    incoming = client.get_incoming_list(10)
    ranged = client.get_incoming(now - timedelta(days=1), now, key="DEMO")
    yield Step(
        "7. Incoming SMS",
        ("via", "id", "phone", "message", "received"),
        [("get_incoming_list", r.id, r.phone, r.message, r.created) for r in incoming]
        + [("get_incoming", r.id, r.phone, r.message, r.sent) for r in ranged],
    )
    pages = client.get_total_pages()
    first = client.get_sent_page(1)
    yield Step(
        f"8. Paging: {pages} page(s) of 20; page 1 (newest first)",
        ("id", "phone", "message", "status", "sent"),
        [(r.id, r.phone, r.message, r.status, r.sent) for r in first[:8]],
    )
    recent = client.get_sent_list(5)
    yield Step(
        "9. Sent in the last 5 minutes", ("call", "messages"), [("get_sent_list(5)", len(recent))]
    )


def walk_demo(console: Console) -> DemoRun:
    """Run the demo against a fresh emulator, printing each step on ``console`` as it is done
    (on none with ``Console(quiet=True)``); what it did. Raises what a step raises."""
    from fibo_soap.emulator import run_emulator

    with run_emulator(delivery_delay=DELIVERY_DELAY) as emu:
        demo = DemoRun(emu.endpoint, emu.client_no)
        console.print(
            f"[bold green]FIBO emulator[/bold green] at {emu.endpoint}, "
            f"account {emu.client_no} (password not shown)\n"
        )
        for protocol, label in PROTOCOLS:
            walk = Walk(protocol, label)
            demo.walks.append(walk)
            console.rule(f"[bold]{label}[/bold] — {emu.endpoint}")
            with emu.client(protocol=protocol) as client:
                for step in _steps(client, emu):
                    walk.steps.append(step)
                    console.print(step.table())
            called = (r.operation for r in emu.recorded if r.protocol == protocol)
            walk.operations = list(dict.fromkeys(op for op in called if op is not None))
            console.print()
        demo.stored = len(emu.received())
        console.print(f"[bold green]Done.[/bold green] The emulator stored {demo.stored} messages.")
    return demo


def run_demo(console: Console | None = None) -> int:
    """Run the demo, printing each step; the exit status (0 when every step worked)."""
    walk_demo(console or Console())
    return 0
