"""GUIDs the library makes: the spelling of uuid.UUID, checked against the standard library."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from fibo_soap.emulator import run_emulator
from fibo_soap.models import guid_text, new_guid


@given(raw=st.binary(min_size=16, max_size=24), version=st.integers(min_value=1, max_value=5))
def test_guid_text_spells_what_uuid_spells(raw: bytes, version: int) -> None:
    assert guid_text(raw, version) == str(uuid.UUID(bytes=raw[:16], version=version))


def test_new_guids_are_random_version_4_uuids() -> None:
    made = [new_guid() for _ in range(2000)]
    assert len(set(made)) == len(made)
    for guid in made:
        parsed = uuid.UUID(guid)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, guid)
    # Every hex digit turns up in the random places (not a constant or a short cycle).
    random_part = "".join(g[:8] + g[9:13] + g[15:18] + g[20:23] + g[24:] for g in made)
    assert set(random_part) == set("0123456789abcdef")


def test_a_send_without_a_guid_gets_a_new_one() -> None:
    with run_emulator() as emu, emu.client(retry=None) as client:
        first = client.send_sms("0909128628", "xin chào")
        second = client.send_sms("0909128628", "xin chào")
        assert first.guid != second.guid
        assert uuid.UUID(first.guid).version == 4
        assert [m.guid for m in emu.received(guid=first.guid)] == [first.guid]
