"""``fibo-sms demo``: every operation through the real client against the bundled emulator.

It starts the emulator on a free loopback port, then walks the account check, balances, an
estimate, each kind of send, a rejected recipient, delivery statuses moving to SentSuccess, an
incoming SMS and paging, over SOAP 1.1 and over HTTP GET, printing a table per step. It needs no
account and no network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from fibo_soap.client import FiboClient
from fibo_soap.models import VN_TZ, Message, SmsStatus

OTP_TEXT = "Mã OTP của bạn là 123456. Không chia sẻ mã này cho bất kỳ ai."
PROTOCOLS = (("soap11", "SOAP 1.1"), ("get", "HTTP GET"))
DELIVERY_DELAY = 4.0


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold cyan")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, SmsStatus):
        return value.name
    if isinstance(value, datetime):
        return value.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _walk(client: FiboClient, emu: Any, label: str, console: Console) -> None:
    console.rule(f"[bold]{label}[/bold] — {client.endpoint}")
    console.print(
        _table(
            "1. Reachability and account",
            ("call", "answer"),
            [("about()", client.about()), ("check_client()", client.check_client())],
        )
    )
    console.print(
        _table(
            "2. Balances",
            ("service type", "balance"),
            [(h.service_type_name, h.balance) for h in client.get_hosting_balances()]
            + [("get_balance(1)", client.get_balance(1))],
        )
    )
    planned = [
        Message("0909 128 628", OTP_TEXT),
        Message("+84 912 345 678", "Don hang #1024 da giao. Cam on quy khach!"),
    ]
    estimate = client.estimate(planned)
    console.print(
        _table(
            "3. Estimate before sending",
            ("phone", "encoding", "characters", "parts"),
            [
                (m.phone, s.encoding.value, s.characters, s.parts)
                for m, s in zip(planned, estimate.messages, strict=True)
            ]
            + [("total", "", "", f"{estimate.total_parts} of balance {estimate.balance}")],
        )
    )
    otp = client.send_sms(planned[0].phone, planned[0].text)
    test = client.send_test_sms("0909128628", "Tin nhắn thử nghiệm (service type 3)")
    masked = client.send_masked_sms("0912345678", "Xin chào từ FiboSMS", sender_name="FiboSMS")
    bulk = client.send_bulk_sms([("0937100759", "Message 1"), ("0937100759", "Message 2")])
    failing = client.send_sms("0909120003", "This one will fail delivery")
    batch = client.send_to_list(["0903636635", "0903636636", "0909120101"], "Khuyến mãi 20%")
    multi = client.send_multi_message(
        [Message("0903636635", "Chào An"), Message("0903636636", "Chào Bình")],
    )
    console.print(
        _table(
            "4. Sends",
            ("operation", "result"),
            [
                ("send_sms (OTP)", f"{otp.code} {otp.message} guid={otp.guid}"),
                ("send_test_sms (type 3, free)", f"{test.code} guid={test.guid}"),
                ("send_masked_sms (brand name)", f"{masked.code} guid={masked.guid}"),
                ("send_bulk_sms (no GUIDs)", f"{bulk.code} {bulk.count} messages"),
                ("send_sms to magic 0003", f"{failing.code} guid={failing.guid}"),
                (
                    "send_to_list (one rejected)",
                    f"accepted {len(batch.accepted)}, rejected {list(batch.rejected)}",
                ),
                ("send_multi_message", f"accepted {len(multi.accepted)}"),
            ],
        )
    )
    guids = [otp.guid, masked.guid, failing.guid, test.guid]
    before = client.get_sms_status(guids)
    emu.advance(DELIVERY_DELAY)
    after = {row.guid: row.status for row in client.get_sms_status(guids)}
    console.print(
        _table(
            f"5. Delivery statuses (emulator clock advanced {DELIVERY_DELAY:g} s)",
            ("guid", "before", "after"),
            [(row.guid, row.status, after.get(row.guid)) for row in before],
        )
    )
    emu.inject_incoming("84913122005", "FIBO DEMODGN 50", service_type_id=229)
    now = datetime.now(VN_TZ)
    incoming = client.get_incoming_list(10)
    ranged = client.get_incoming(now - timedelta(days=1), now, key="DEMO")
    console.print(
        _table(
            "6. Incoming SMS",
            ("via", "id", "phone", "message", "received"),
            [("get_incoming_list", r.id, r.phone, r.message, r.created) for r in incoming]
            + [("get_incoming", r.id, r.phone, r.message, r.sent) for r in ranged],
        )
    )
    pages = client.get_total_pages()
    first = client.get_sent_page(1)
    console.print(
        _table(
            f"7. Paging: {pages} page(s) of 20; page 1 (newest first)",
            ("id", "phone", "message", "status", "sent"),
            [(r.id, r.phone, r.message, r.status, r.sent) for r in first[:8]],
        )
    )
    recent = client.get_sent_list(5)
    console.print(f"get_sent_list(5): {len(recent)} messages in the last 5 minutes\n")


def run_demo(console: Console | None = None) -> int:
    """Run the demo; the exit status (0 when every step worked)."""
    from fibo_soap.emulator import run_emulator

    console = console or Console()
    with run_emulator(delivery_delay=DELIVERY_DELAY) as emu:
        console.print(
            f"[bold green]FIBO emulator[/bold green] at {emu.endpoint}, "
            f"account {emu.client_no} (password not shown)\n"
        )
        for protocol, label in PROTOCOLS:
            with emu.client(protocol=protocol) as client:
                _walk(client, emu, label, console)
        stored = len(emu.received())
        console.print(f"[bold green]Done.[/bold green] The emulator stored {stored} messages.")
    return 0
