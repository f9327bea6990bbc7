"""client.estimate and the text options every send goes through, against the emulator."""

from __future__ import annotations

import pytest

from fibo_soap import InvalidPhoneNumberError, Message, MessageTooLongError
from fibo_soap.emulator import Emulator
from fibo_soap.text import Encoding

OTP = "Mã OTP của bạn là 123456"  # 24 characters, UCS-2 because of the Vietnamese letters
GSM_161 = "a" * 161  # one character past a single GSM-7 message: two parts of 153


def test_estimate_counts_parts_per_message_and_compares_with_the_balance(
    fibo_emulator: Emulator,
) -> None:
    fibo_emulator.set_balance(3)
    with fibo_emulator.client() as client:
        estimate = client.estimate([Message("0909128628", OTP), ("0909128629", GSM_161), "ok"])
    assert [(s.encoding, s.characters, s.parts) for s in estimate.messages] == [
        (Encoding.UCS2, 24, 1),
        (Encoding.GSM7, 161, 2),
        (Encoding.GSM7, 2, 1),
    ]
    assert estimate.total_parts == 4
    assert estimate.balance == 3
    assert estimate.enough is False
    assert estimate.service_type == "1"


def test_estimate_sends_nothing(fibo_emulator: Emulator) -> None:
    with fibo_emulator.client() as client:
        client.estimate([OTP], check_balance=False)
    assert fibo_emulator.received() == []
    assert fibo_emulator.recorded == []


def test_estimate_refuses_what_a_send_would_refuse(fibo_emulator: Emulator) -> None:
    with fibo_emulator.client(max_parts=1) as client:
        with pytest.raises(MessageTooLongError) as too_long:
            client.estimate([GSM_161], check_balance=False)
        assert "2" in str(too_long.value)
        with pytest.raises(InvalidPhoneNumberError) as bad:
            client.estimate([Message("0909 12", OTP), Message("8122", OTP)], check_balance=False)
    assert [phone for phone, _ in bad.value.invalid] == ["0909 12", "8122"]


def test_strip_if_shorter_strips_only_when_it_saves_parts(fibo_emulator: Emulator) -> None:
    # 80 Vietnamese letters need two UCS-2 parts (70 per single part) but one GSM-7 part stripped.
    long_vietnamese = "Chúc mừng năm mới " * 4 + "an khang"
    short_vietnamese = "Xin chào"
    with fibo_emulator.client(accents="strip-if-shorter") as client:
        long_receipt = client.send_sms("0909128628", long_vietnamese)
        short_receipt = client.send_sms("0909128628", short_vietnamese)
    [long_sent] = fibo_emulator.received(guid=long_receipt.guid)
    [short_sent] = fibo_emulator.received(guid=short_receipt.guid)
    assert long_sent.message == "Chuc mung nam moi " * 4 + "an khang"
    assert short_sent.message == short_vietnamese


def test_strip_always_strips(fibo_emulator: Emulator) -> None:
    with fibo_emulator.client(accents="strip") as client:
        receipt = client.send_sms("0909128628", "Đặng Thị Ngọc Ánh")
    [sent] = fibo_emulator.received(guid=receipt.guid)
    assert sent.message == "Dang Thi Ngoc Anh"


def test_wire_format_international_puts_84_on_the_wire(fibo_emulator: Emulator) -> None:
    with fibo_emulator.client(wire_format="international") as client:
        receipt = client.send_sms("0909 128 628", OTP)
        batch = client.send_to_list(["0168 123 4567"], OTP)
    assert [s.phone for s in fibo_emulator.received(guid=receipt.guid)] == ["84909128628"]
    [guid] = batch.accepted
    assert [s.phone for s in fibo_emulator.received(guid=guid)] == ["84381234567"]
