"""Large lists: the fast row decoder against a plain reference decode, the streaming decoder
(``codec.RowStream``) against both, the client's ``iter_*`` methods against ``get_*_list`` (and
``iter_incoming`` against ``get_incoming``) over the emulator on every protocol, and the memory
the streaming decode takes (tracemalloc, never a clock).

The reference decoder below is written the plain way, independently of the codec: a whole tree
from an ordinary lxml parse, each column found by its lower-case local name, its text taken as
the XPath string value, converted field by field.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from structlog.testing import capture_logs
from test_client_e2e import PROTOCOLS

from fibo_soap import AsyncFiboClient, FiboClient, Message, RetryPolicy, codec
from fibo_soap.codec import (
    RowStream,
    decode_http_body,
    decode_result,
    encode_http_body,
    encode_rows,
    streamed,
)
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.errors import (
    AuthenticationError,
    InvalidInputError,
    ProtocolError,
    ResponseTooLargeError,
)
from fibo_soap.models import IncomingSms, IncomingStatus, SentSms, SmsStatus, StatusDocument
from fibo_soap.operations import OPERATIONS, Kind, Operation

TEMPURI = "http://tempuri.org/"
ICT = timezone(timedelta(hours=7))  # written here, so that the codec's zone is checked
LIST_OPERATIONS = sorted(name for name, op in OPERATIONS.items() if op.row is not None)
SENT = OPERATIONS["GetSMSSentList"]

#: Retries without waiting to speak of.
FAST = RetryPolicy(
    attempts=3, deadline=10.0, backoff_initial=0.001, backoff_max=0.005, jitter=0.001, settle=0.0
)


# --- the reference decoder -------------------------------------------------------------------


def _reference_value(kind: Kind, text: str) -> Any:
    if kind is Kind.RAW:
        return text
    text = text.strip()
    if not text:
        return None
    if kind is Kind.TEXT:
        return text
    if kind is Kind.INT:
        return int(text)
    if kind in (Kind.TIME, Kind.VN_TIME):
        if "(" in text:
            return datetime.strptime(text, "%d/%m/%Y(%H:%M:%S)").replace(tzinfo=ICT)
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=ICT) if value.tzinfo is None else value.astimezone(ICT)
    number = int(text)
    enum = SmsStatus if kind is Kind.SMS_STATUS else IncomingStatus
    return enum(number) if number in {member.value for member in enum} else number


def reference_rows(op: Operation, text: str) -> list[Any]:
    """The rows of a list document, decoded the plain way."""
    assert op.row is not None
    root = etree.fromstring(text.encode("utf-8"), etree.XMLParser(resolve_entities=False))
    columns = {column.element.lower(): column for column in op.columns}
    fields = [field.name for field in dataclasses.fields(op.row)]
    rows = []
    for row in root:
        if not isinstance(row.tag, str):
            continue
        values: dict[str, Any] = dict.fromkeys(fields)
        for child in row:
            if not isinstance(child.tag, str):
                continue
            column = columns.get(etree.QName(child).localname.lower())
            if column is not None:
                values[column.field] = _reference_value(column.kind, str(child.xpath("string()")))
        rows.append(op.row(**values))
    return rows


def assert_same_rows(got: list[Any], want: list[Any]) -> None:
    """Field by field: the same type (an IntEnum, not a bare int), value and UTC offset."""
    assert len(got) == len(want)
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        assert type(a) is type(b), index
        for field in dataclasses.fields(b):
            x, y = getattr(a, field.name), getattr(b, field.name)
            where = f"row {index}, {field.name}: {x!r} != {y!r}"
            assert type(x) is type(y), where
            assert x == y, where
            if isinstance(y, datetime):
                assert x.utcoffset() == y.utcoffset() == timedelta(hours=7), where


def stream_rows(op: Operation, text: str, **options: Any) -> list[Any]:
    decoded = decode_result(streamed(op), text, **options)
    if isinstance(decoded, RowStream):
        return [row for batch in decoded.batches() for row in batch]
    assert isinstance(decoded, list)
    return decoded


def pulled_rows(op: Operation, text: str, chunk: int) -> tuple[list[Any], list[Any]]:
    """The rows of decode_result and of the stream, both through the pull parser fed ``chunk``
    characters at a time (so that slices end anywhere: inside a tag, a text, a reference)."""
    with mock.patch.object(codec, "_PULL_FROM", 0), mock.patch.object(codec, "_PULL_CHUNK", chunk):
        listed = decode_result(op, text)
        assert isinstance(listed, list)
        return listed, stream_rows(op, text)


# --- generated documents ---------------------------------------------------------------------

# Any text XML can carry (no surrogates or C0 controls but tab, newline, carriage return), with
# the awkward cases drawn often: markup characters, CDATA's end, blanks, astral characters.
_XML_CHAR = st.characters(blacklist_categories=("Cs", "Cc", "Cn"), whitelist_characters="\t\n\r")
_ODD = st.sampled_from(
    [
        "",
        " ",
        "  padded  ",
        "<&>\"'",
        "]]>",
        "😀 Mã OTP của bạn là 123456",
        "Đặng Thị Ánh",
        "a\u0301\u200b\u202e",
        "\r\n",
        "line\nbreak",
        "&amp;&lt;",
    ]
)
_TEXT = st.one_of(st.none(), _ODD, st.text(_XML_CHAR, max_size=24))
_ZONES = st.sampled_from([UTC, ICT, timezone(timedelta(hours=-9, minutes=-30)), None])
_TIME = st.one_of(
    st.none(),
    st.builds(
        lambda moment, zone: moment.replace(tzinfo=zone or ICT),
        st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)),
        _ZONES,
    ),
)
_INT = st.one_of(st.none(), st.integers(-(2**40), 2**40))
_BY_KIND: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.RAW: _TEXT,
    Kind.TEXT: _TEXT,
    Kind.INT: _INT,
    Kind.TIME: _TIME,
    Kind.VN_TIME: _TIME,
    Kind.SMS_STATUS: st.one_of(st.none(), st.sampled_from(SmsStatus), st.integers(12, 999)),
    Kind.INCOMING_STATUS: st.one_of(
        st.none(), st.sampled_from(IncomingStatus), st.integers(6, 999)
    ),
}


def model_rows(op: Operation) -> st.SearchStrategy[list[Any]]:
    """Rows of ``op``'s model; fields the operation has no column for stay None."""
    assert op.row is not None
    kinds = {column.field: column.kind for column in op.columns}
    fields = {
        field.name: _BY_KIND[kinds[field.name]] if field.name in kinds else st.none()
        for field in dataclasses.fields(op.row)
    }
    return st.lists(st.fixed_dictionaries(fields).map(lambda v: op.row(**v)), max_size=12)


def reshaped(document: str, data: st.DataObject) -> str:
    """The document with what servers vary: element names in another case or a namespace,
    comments inside values, unknown and repeated elements, columns out of order, layout."""
    root = etree.fromstring(document.encode("utf-8"))
    for row in list(root):
        children = list(row)
        if data.draw(st.booleans(), "shuffle"):
            order = data.draw(st.permutations(range(len(children))))
            for child in children:
                row.remove(child)
            for index in order:
                row.append(children[index])
        for child in list(row):
            spelling = data.draw(st.sampled_from(["same", "upper", "lower", "ns"]), "case")
            if spelling == "upper":
                child.tag = child.tag.upper()
            elif spelling == "lower":
                child.tag = child.tag.lower()
            elif spelling == "ns":
                child.tag = f"{{urn:x}}{child.tag}"
            text = child.text or ""
            if text and data.draw(st.booleans(), "comment"):
                cut = data.draw(st.integers(0, len(text)))
                child.text = text[:cut]
                comment = etree.Comment(" split ")
                comment.tail = text[cut:]
                child.append(comment)
            if data.draw(st.booleans(), "repeat") and len(row):
                # A repeated column: the last one is the value.
                row.append(etree.fromstring(etree.tostring(child)))
        if data.draw(st.booleans(), "unknown"):
            etree.SubElement(row, "Extra").text = "ignored"
        if data.draw(st.booleans(), "layout"):
            row.tail = "\n  "
    return etree.tostring(root, encoding="unicode")


@pytest.mark.parametrize("name", LIST_OPERATIONS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_decoding_equals_the_reference_decode(name: str, data: st.DataObject) -> None:
    op = OPERATIONS[name]
    document = encode_rows(op, data.draw(model_rows(op), "rows"))
    if data.draw(st.booleans(), "reshape"):
        document = reshaped(document, data)
    expected = reference_rows(op, document)

    listed = decode_result(op, document)
    assert isinstance(listed, list)
    assert_same_rows(listed, expected)
    assert_same_rows(stream_rows(op, document), expected)
    chunk = data.draw(st.integers(1, 97), "chunk")
    for rows in pulled_rows(op, document, chunk):
        assert_same_rows(rows, expected)
    # And through the outer layer, as GET and POST carry it.
    body = encode_http_body(op, document, TEMPURI)
    assert_same_rows(stream_rows(op, decode_http_body(body)), expected)


# --- the streaming decoder's edges -----------------------------------------------------------


def _sent_document(count: int, extra: str = "") -> str:
    rows = "".join(
        f"<SMSLIST><SMSID>{i}</SMSID><MSGUID>g-{i}</MSGUID><PhoneNumber>0909{i:06d}</PhoneNumber>"
        f"<Message>Mã OTP {i} 😀</Message><CreatedDate>2024-05-09T07:35:{i % 60:02d}+07:00"
        f"</CreatedDate><SMSStatus>{i % 12}</SMSStatus></SMSLIST>"
        for i in range(count)
    )
    return f"<DocumentElement>{rows}{extra}</DocumentElement>"


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_a_comment_inside_a_value_does_not_cut_it_short_on_any_slice(chunk: int) -> None:
    text = (
        "<DocumentElement><SMSLIST><SMSID>2<!---->00</SMSID><Message>a<!-- x -->b</Message>"
        "<SMSStatus>1<!---->1</SMSStatus></SMSLIST></DocumentElement>"
    )
    want = [SentSms(200, None, None, "ab", None, None, SmsStatus.RESTORE_TO_ACCOUNT_CLIENT)]
    for rows in pulled_rows(SENT, text, chunk):
        assert_same_rows(rows, want)


def test_the_stream_yields_the_rows_before_a_fault_then_raises_naming_the_operation() -> None:
    text = _sent_document(300) + "<SMSLIST>"  # content after the root: not well-formed
    got: list[Any] = []
    with mock.patch.object(codec, "_PULL_CHUNK", 4096):
        decoded = decode_result(streamed(SENT), text)
        assert isinstance(decoded, RowStream)
        with pytest.raises(ProtocolError) as caught:  # noqa: PT012 - rows come before the fault
            for batch in decoded.batches():
                got.extend(batch)
    assert 200 < len(got) < 300
    assert caught.value.operation == "GetSMSSentList"
    assert "malformed XML" in str(caught.value)
    assert [row.id for row in got] == list(range(len(got)))
    # decode_result of the same text gives no rows at all: the whole list or the error.
    with mock.patch.object(codec, "_PULL_FROM", 0), pytest.raises(ProtocolError):
        decode_result(SENT, text)


def test_a_stream_parses_each_time_text_once_across_its_slices() -> None:
    # 600 rows over 60 distinct CreatedDate texts, read a few rows per slice: a time met in an
    # earlier slice is not parsed again (the cost of a list is in its rows' conversions).
    text = _sent_document(600)
    with (
        mock.patch.object(codec, "_PULL_CHUNK", 1024),
        mock.patch.object(codec, "parse_time", wraps=codec.parse_time) as parse_time,
    ):
        decoded = decode_result(streamed(SENT), text)
        assert isinstance(decoded, RowStream)
        batches = list(decoded.batches())
    assert len(batches) > 60
    assert sum(len(batch) for batch in batches) == 600
    assert parse_time.call_count == 60


def test_a_bad_value_far_into_a_stream_is_a_protocol_error_naming_the_element() -> None:
    text = _sent_document(
        2_000, "<SMSLIST><CreatedDate>31/02/2009(16:37:00)</CreatedDate></SMSLIST>"
    )
    with pytest.raises(ProtocolError) as caught:
        stream_rows(SENT, text)
    assert caught.value.operation == "GetSMSSentList"
    assert "CreatedDate" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<SMS><Code>301</Code><Message> No SMS! </Message></SMS>", StatusDocument(301, "No SMS!")),
        ("<SMS><Code>1<!---->00</Code><Message>x</Message></SMS>", StatusDocument(100, "x")),
    ],
)
def test_a_status_document_for_a_streamed_list_is_decoded_whole(
    text: str, expected: StatusDocument
) -> None:
    assert decode_result(streamed(SENT), text) == expected
    assert decode_result(streamed(SENT), f'<?xml version="1.0" encoding="utf-16"?>\n{text}\n') == (
        expected
    )


def test_an_undeclared_prefix_is_refused_by_the_pull_parser_too() -> None:
    text = _sent_document(10, "<SMSLIST><x:SMSID>1</x:SMSID></SMSLIST>")
    with pytest.raises(ProtocolError) as caught:
        stream_rows(SENT, text)
    assert caught.value.operation == "GetSMSSentList"
    with mock.patch.object(codec, "_PULL_FROM", 0), pytest.raises(ProtocolError):
        decode_result(SENT, text)


def test_the_bound_is_checked_before_a_row_for_ascii_and_as_it_is_read_otherwise() -> None:
    ascii_text = _sent_document(50).replace("😀", ":)").replace("Mã", "Ma")
    assert ascii_text.isascii()
    with pytest.raises(ResponseTooLargeError) as caught:
        decode_result(streamed(SENT), ascii_text, max_bytes=len(ascii_text) - 1)
    assert caught.value.operation == "GetSMSSentList"
    assert len(stream_rows(SENT, ascii_text, max_bytes=len(ascii_text))) == 50

    text = _sent_document(50)
    size = len(text.encode("utf-8"))
    assert len(stream_rows(SENT, text, max_bytes=size)) == 50
    for decode in (
        lambda: stream_rows(SENT, text, max_bytes=size - 1),
        lambda: decode_result(SENT, text, max_bytes=size - 1),
    ):
        with mock.patch.object(codec, "_PULL_FROM", 0), pytest.raises(ResponseTooLargeError):
            decode()


def test_lists_past_the_pull_threshold_decode_as_the_small_ones_do() -> None:
    text = _sent_document(3_000)
    assert len(text) >= codec._PULL_FROM
    listed = decode_result(SENT, text)
    assert isinstance(listed, list)
    assert_same_rows(listed, reference_rows(SENT, text))


# --- memory: what the stream holds, counted by tracemalloc -----------------------------------

_OTP = "Mã OTP của bạn là {:06d}. Không chia sẻ mã này."
_OTP_ASCII = "Ma OTP cua ban la {:06d}. Khong chia se ma nay."


def _big_body(count: int, message: str = _OTP) -> bytes:
    created = datetime(2024, 5, 9, 7, 35, tzinfo=ICT)
    rows = [
        SentSms(
            10_000_000 + i,
            f"5f0c2a7e-{i % 10_000:04d}-4c1d-9e2b-{i:012d}",
            f"0909{i:06d}",
            message.format(i),
            created + timedelta(seconds=i),
            created + timedelta(seconds=i + 30),
            SmsStatus.SENT_SUCCESS,
        )
        for i in range(count)
    ]
    return encode_http_body(SENT, encode_rows(SENT, rows), TEMPURI)


def _peak(work: Any) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def _count(text: str) -> int:
    decoded = decode_result(streamed(SENT), text)
    assert isinstance(decoded, RowStream)
    return sum(len(batch) for batch in decoded.batches())


def test_streaming_a_10k_row_reply_peaks_under_twice_its_size() -> None:
    # What Python allocates, from the body to the last row: the result text (the str the
    # protocols hand over), one slice, one slice's rows. tracemalloc does not see libxml2's own
    # buffers; bench/bulk.py measures the process's whole peak. The messages are ASCII here: a
    # str of Vietnamese text takes two bytes a character, so the text alone is 1.5x such a body
    # (the next test bounds what the decoding adds to it).
    body = _big_body(10_000, _OTP_ASCII)
    count, peak = _peak(lambda: _count(decode_http_body(body)))
    assert count == 10_000
    assert peak <= 2 * len(body)


def test_the_stream_adds_little_to_the_text_while_a_list_holds_every_row() -> None:
    body = _big_body(10_000)
    text = decode_http_body(body)
    count, streaming = _peak(lambda: _count(text))
    rows, listing = _peak(lambda: decode_result(SENT, text))
    assert count == len(rows) == 10_000  # type: ignore[arg-type]
    del rows
    assert streaming <= len(body) // 4
    assert listing >= 4 * streaming  # the measure tells the two apart


# --- the client's iterators against the emulator ---------------------------------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with run_emulator(delivery_delay=0) as emulator:
        emulator.set_balance(1_000_000)
        texts = [
            "Mã OTP của bạn là {i:06d}",
            '<&> ]]> "quoted" 😀 {i}',
            "  padded {i}  ",
            "dòng một\ndòng hai {i}",
        ]
        with emulator.client(protocol="post", retry=None) as client:
            for start in range(0, 1_200, 400):
                client.send_multi_message(
                    [
                        Message(f"0912{i:06d}", texts[i % len(texts)].format(i=i))
                        for i in range(start, start + 400)
                    ]
                )
        for i in range(150):
            emulator.inject_incoming(f"8491312{i:04d}", f"FIBO DEMO {i} ✓", service_type_id=229)
        emulator.advance(0)
        yield emulator


@pytest.fixture(autouse=True)
def _fresh(emu: Emulator) -> Iterator[None]:
    emu.faults.clear()
    yield
    emu.faults.clear()
    # capture_logs leaves structlog marked as configured; the library must go silent again.
    structlog.reset_defaults()


def sclient(emu: Emulator, **options: Any) -> FiboClient:
    options.setdefault("retry", FAST)
    return FiboClient(emu.client_no, emu.client_pass, endpoint=emu.endpoint, **options)


def aclient(emu: Emulator, **options: Any) -> AsyncFiboClient:
    options.setdefault("retry", FAST)
    return AsyncFiboClient(emu.client_no, emu.client_pass, endpoint=emu.endpoint, **options)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_iterators_yield_exactly_the_rows_of_the_lists(emu: Emulator, protocol: str) -> None:
    with sclient(emu, protocol=protocol) as client:
        sent = client.get_sent_list(60)
        assert len(sent) > 1_000
        assert_same_rows(list(client.iter_sent_list(60)), sent)
        incoming = client.get_incoming_list(60)
        assert len(incoming) == 150
        assert all(type(row) is IncomingSms for row in incoming)
        assert_same_rows(list(client.iter_incoming_list(60)), incoming)


@pytest.mark.parametrize("protocol", ["soap11", "get"])
def test_the_async_iterators_yield_the_rows_of_the_lists(emu: Emulator, protocol: str) -> None:
    async def both() -> tuple[list[Any], ...]:
        async with aclient(emu, protocol=protocol) as client:
            sent = await client.get_sent_list(60)
            streamed_sent = [row async for row in client.iter_sent_list(60)]
            incoming = await client.get_incoming_list(60)
            streamed_incoming = [row async for row in client.iter_incoming_list(60)]
            return sent, streamed_sent, incoming, streamed_incoming

    sent, streamed_sent, incoming, streamed_incoming = asyncio.run(both())
    assert len(sent) > 1_000
    assert_same_rows(streamed_sent, sent)
    assert_same_rows(streamed_incoming, incoming)


def _shape(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    timing = {"duration_ms", "wait_ms"}
    return [{k: v for k, v in e.items() if k not in timing} for e in events]


@pytest.mark.parametrize(
    ("fault", "protocols"),
    [("http_500", ("get",)), ("bad_inner_xml", ("get", "post")), ("close_before", ("soap11",))],
)
def test_an_iterator_retries_and_logs_as_the_list_does(
    emu: Emulator, fault: str, protocols: tuple[str, ...]
) -> None:
    with sclient(emu, protocols=protocols) as client:
        expected = client.get_sent_list(60)
        emu.fault(fault, method="GetSMSSentList", times=1)
        with capture_logs() as listed_events:
            assert_same_rows(client.get_sent_list(60), expected)
        emu.fault(fault, method="GetSMSSentList", times=1)
        with capture_logs() as streamed_events:
            rows = client.iter_sent_list(60)  # the call, its retry and its events happen here
            logged = len(streamed_events)
            assert_same_rows(list(rows), expected)
    assert logged == len(streamed_events)
    assert _shape(streamed_events) == _shape(listed_events)
    assert [e["event"] for e in listed_events].count("fibo.attempt") >= 1
    assert listed_events[-1]["event"] == "fibo.call"
    assert listed_events[-1]["attempts"] == 2


def test_a_refusal_raises_its_typed_error_when_the_iterator_is_made(emu: Emulator) -> None:
    client = FiboClient(emu.client_no, "not-the-password", endpoint=emu.endpoint, retry=None)
    with client:
        for make in (client.iter_sent_list, client.iter_incoming_list):
            with pytest.raises(AuthenticationError) as caught:
                make(5)
            assert caught.value.code == 100
            assert "not-the-password" not in str(caught.value)
        with pytest.raises(InvalidInputError):
            client.iter_sent_list(0)

    async def refused() -> None:
        async with AsyncFiboClient(
            emu.client_no, "not-the-password", endpoint=emu.endpoint, retry=None
        ) as aclient_:
            with pytest.raises(InvalidInputError):
                aclient_.iter_sent_list(0)  # checked when called, before any iteration
            rows = aclient_.iter_incoming_list(5)
            with pytest.raises(AuthenticationError):
                await rows.__anext__()

    asyncio.run(refused())


def test_an_empty_list_is_an_empty_iterator(emu: Emulator) -> None:
    emu.add_account("CL9999", "pw-9999")
    with FiboClient("CL9999", "pw-9999", endpoint=emu.endpoint, retry=None) as client:
        assert client.get_sent_list(5) == []
        assert list(client.iter_sent_list(5)) == []
        assert list(client.iter_incoming_list(5)) == []


def test_an_iterator_left_part_way_leaves_the_client_usable(emu: Emulator) -> None:
    with sclient(emu, protocol="get") as client:
        rows = client.iter_sent_list(60)
        first = [next(rows) for _ in range(3)]
        del rows
        assert_same_rows(first, client.get_sent_list(60)[:3])


# --- iter_incoming: the streaming twin of get_incoming (a date range, unpaged) ---------------

RANGED = "GetClientCommingSMSNotDividePage"
#: The days the range tests fill: long before the "last 60 minutes" of the tests above.
RANGE_FIRST = date(2023, 3, 6)
RANGE_DAYS = 4
RANGE_LAST = RANGE_FIRST + timedelta(days=RANGE_DAYS - 1)
#: Characters of an answer read at a time by the range tests: every answer they stream is read
#: in several slices, so the rows of one slice are yielded before the next is parsed.
SMALL_SLICE = 4096


@dataclasses.dataclass(frozen=True)
class Injected:
    """An incoming message as the test made it arrive."""

    id: int
    phone: str
    message: str
    status: IncomingStatus
    service_type_id: int
    service_type_name: str
    created: datetime

    @property
    def day(self) -> date:
        return self.created.astimezone(ICT).date()


@pytest.fixture(scope="module")
def inbox(emu: Emulator) -> list[Injected]:
    """800 incoming messages over RANGE_DAYS days, with every status, three service types, and
    the key "yes" (in any case) in some of them: what was injected, oldest first."""
    texts = [
        "YES {i}",
        "Mã OTP của bạn là {i:06d}",
        '<&> ]]> "quoted" 😀 {i} yes',
        "  padded {i}  ",
        "dòng một\ndòng hai {i} Yes",
    ]
    services = [(229, "8022(FIBO)"), (230, "8122(FIBO)"), (1, "+841223100690")]
    statuses = list(IncomingStatus)
    made = []
    for i in range(800):
        day = RANGE_FIRST + timedelta(days=i % RANGE_DAYS)
        created = datetime(day.year, day.month, day.day, 8, tzinfo=ICT) + timedelta(seconds=37 * i)
        service_type_id, service_type_name = services[(i // 7) % len(services)]
        status = statuses[i % len(statuses)]
        phone, message = f"8491400{i:04d}", texts[i % len(texts)].format(i=i)
        row_id = emu.inject_incoming(
            phone,
            message,
            service_type_id=service_type_id,
            service_type_name=service_type_name,
            status=status,
            created=created,
        )
        made.append(
            Injected(row_id, phone, message, status, service_type_id, service_type_name, created)
        )
    return sorted(made, key=lambda m: (m.created, m.id))


def wanted(
    inbox: list[Injected],
    from_date: date,
    to_date: date,
    *,
    status: IncomingStatus | int | None = None,
    service_type: str | int | None = None,
    key: str = "",
) -> list[tuple[Any, ...]]:
    """What get_incoming must give for these arguments, from what was injected."""
    first = from_date.date() if isinstance(from_date, datetime) else from_date
    last = to_date.date() if isinstance(to_date, datetime) else to_date
    needle = key.casefold()
    return [
        (m.id, m.phone, m.message, m.service_type_id, m.service_type_name, m.created)
        for m in inbox
        if first <= m.day <= last
        and (status is None or m.status == status)
        and (service_type is None or m.service_type_id == int(service_type))
        and (needle in m.phone.casefold() or needle in m.message.casefold())
    ]


def seen(rows: list[IncomingSms]) -> list[tuple[Any, ...]]:
    """The columns GetClientCommingSMSNotDividePage carries (it has no status)."""
    return [
        (r.id, r.phone, r.message, r.service_type_id, r.service_type_name, r.created) for r in rows
    ]


#: Ranges and filters of the equality tests, each with enough rows to be read in many slices.
RANGE_CASES: list[tuple[tuple[date, date], dict[str, Any]]] = [
    ((RANGE_FIRST, RANGE_LAST), {}),
    ((RANGE_FIRST + timedelta(days=1), RANGE_FIRST + timedelta(days=2)), {"status": 2}),
    ((RANGE_LAST, RANGE_LAST), {"service_type": 230}),
    ((RANGE_FIRST, RANGE_LAST), {"service_type": "229", "key": "YES"}),
    (
        (RANGE_FIRST, RANGE_LAST),
        {"status": IncomingStatus.EXPIRED, "service_type": 1, "key": "yes"},
    ),
    (
        (datetime(2023, 3, 7, 23, 59, tzinfo=ICT), datetime(2023, 3, 8, 0, 1, tzinfo=ICT)),
        {"status": IncomingStatus.JUST_RECEIVED},
    ),
]


@contextlib.contextmanager
def sliced() -> Iterator[mock.MagicMock]:
    """Answers streamed SMALL_SLICE characters at a time; the spy counts the slices with rows."""
    with (
        mock.patch.object(codec, "_PULL_CHUNK", SMALL_SLICE),
        mock.patch.object(codec, "_typed_rows", wraps=codec._typed_rows) as slices,
    ):
        yield slices


def check_range(
    inbox: list[Injected],
    dates: tuple[date, date],
    filters: dict[str, Any],
    listed: list[IncomingSms],
    streamed_rows: list[IncomingSms],
    slices: int,
) -> None:
    expected = wanted(inbox, *dates, **filters)
    assert len(expected) >= 20, (dates, filters)  # a case that says something
    assert seen(listed) == expected
    assert all(type(row) is IncomingSms for row in streamed_rows)
    assert_same_rows(streamed_rows, listed)
    assert slices > 1, (dates, filters)  # the stream was read a slice at a time


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_iter_incoming_yields_exactly_the_rows_of_get_incoming(
    emu: Emulator, inbox: list[Injected], protocol: str
) -> None:
    with sclient(emu, protocol=protocol) as client:
        for dates, filters in RANGE_CASES:
            listed = client.get_incoming(*dates, **filters)
            with sliced() as slices:
                streamed_rows = list(client.iter_incoming(*dates, **filters))
            check_range(inbox, dates, filters, listed, streamed_rows, slices.call_count)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_iter_incoming_yields_exactly_the_rows_of_get_incoming(
    emu: Emulator, inbox: list[Injected], protocol: str
) -> None:
    async def each() -> list[tuple[list[IncomingSms], list[IncomingSms], int]]:
        got = []
        async with aclient(emu, protocol=protocol) as client:
            for dates, filters in RANGE_CASES:
                listed = await client.get_incoming(*dates, **filters)
                with sliced() as slices:
                    rows = [row async for row in client.iter_incoming(*dates, **filters)]
                got.append((listed, rows, slices.call_count))
        return got

    for (dates, filters), (listed, rows, slices) in zip(
        RANGE_CASES, asyncio.run(each()), strict=True
    ):
        check_range(inbox, dates, filters, listed, rows, slices)


#: Ranges with no message (FIBO answers code 301): a month before the inbox, and a key none has.
EMPTY_CASES: list[tuple[tuple[date, date], dict[str, Any]]] = [
    ((RANGE_FIRST - timedelta(days=40), RANGE_FIRST - timedelta(days=30)), {}),
    ((RANGE_FIRST, RANGE_LAST), {"key": "no message says this"}),
]


def _codes(events: list[dict[str, Any]]) -> list[Any]:
    return [e["fibo_code"] for e in events if e["event"] == "fibo.call"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_empty_range_is_no_rows_for_iter_incoming_as_for_get_incoming(
    emu: Emulator, inbox: list[Injected], protocol: str
) -> None:
    for dates, filters in EMPTY_CASES:
        assert wanted(inbox, *dates, **filters) == []
        with sclient(emu, protocol=protocol) as client, capture_logs() as events:
            assert client.get_incoming(*dates, **filters) == []
            assert list(client.iter_incoming(*dates, **filters)) == []
        assert _codes(events) == [301, 301]  # FIBO's "no messages", not an error

        async def both(dates: tuple[date, date], filters: dict[str, Any]) -> tuple[list[Any], ...]:
            async with aclient(emu, protocol=protocol) as client:
                listed = await client.get_incoming(*dates, **filters)
                return listed, [row async for row in client.iter_incoming(*dates, **filters)]

        with capture_logs() as events:
            assert asyncio.run(both(dates, filters)) == ([], [])
        assert _codes(events) == [301, 301]


BAD_RANGES = [
    pytest.param((RANGE_LAST, RANGE_FIRST), {}, "from_date", id="from-after-to"),
    pytest.param(
        (datetime(2023, 3, 7, 0, 0, tzinfo=ICT), datetime(2023, 3, 6, 23, 59, tzinfo=ICT)),
        {},
        "from_date",
        id="datetimes-from-after-to",
    ),
    pytest.param(
        # 01:00 on 8 March in Vietnam, then 23:00 on 7 March there: the same day in UTC.
        (datetime(2023, 3, 7, 18, 0, tzinfo=UTC), datetime(2023, 3, 7, 23, 0, tzinfo=ICT)),
        {},
        "from_date",
        id="after-as-days-in-vietnam",
    ),
    pytest.param(("2023-03-06", RANGE_LAST), {}, "from_date", id="text-date"),
    pytest.param((RANGE_FIRST, 20230309), {}, "to_date", id="number-date"),
    pytest.param((RANGE_FIRST, RANGE_LAST), {"status": "Confirmed"}, "status", id="status-name"),
    pytest.param((RANGE_FIRST, RANGE_LAST), {"status": 999}, "status", id="status-unknown"),
    pytest.param((RANGE_FIRST, RANGE_LAST), {"status": True}, "status", id="status-bool"),
    pytest.param((RANGE_FIRST, RANGE_LAST), {"service_type": "x1"}, "service_type", id="type"),
    pytest.param((RANGE_FIRST, RANGE_LAST), {"key": "a\x00b"}, "key", id="key"),
]


@pytest.mark.parametrize(("dates", "filters", "field"), BAD_RANGES)
def test_iter_incoming_refuses_what_get_incoming_refuses_when_called_sending_nothing(
    emu: Emulator, dates: tuple[date, date], filters: dict[str, Any], field: str
) -> None:
    emu.app.recorded.clear()
    with sclient(emu) as client:
        with pytest.raises(InvalidInputError) as listed:
            client.get_incoming(*dates, **filters)
        with pytest.raises(InvalidInputError) as streamed_error:
            client.iter_incoming(*dates, **filters)  # when called, before any iteration
    assert listed.value.field == streamed_error.value.field == field
    assert str(streamed_error.value) == str(listed.value)

    async def refused() -> None:
        async with aclient(emu) as client:
            with pytest.raises(InvalidInputError) as awaited:
                await client.get_incoming(*dates, **filters)
            with pytest.raises(InvalidInputError) as made:
                client.iter_incoming(*dates, **filters)  # not on the first __anext__
        assert awaited.value.field == made.value.field == field

    asyncio.run(refused())
    assert emu.recorded == []


def test_a_range_is_read_as_days_in_vietnam(emu: Emulator, inbox: list[Injected]) -> None:
    # 01:00 on 7 March in Vietnam to 03:00 on 7 March there (20:00 UTC on the 6th): one day,
    # though the second bound's own date is the day before the first's.
    first = datetime(2023, 3, 7, 1, 0, tzinfo=ICT)
    last = datetime(2023, 3, 6, 20, 0, tzinfo=UTC)
    day = first.date()
    expected = wanted(inbox, day, day)
    assert expected
    with sclient(emu) as client:
        assert seen(client.get_incoming(first, last)) == expected
        assert seen(list(client.iter_incoming(first, last))) == expected


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_range_broken_part_way_gives_its_first_rows_then_a_protocol_error(
    emu: Emulator, inbox: list[Injected], protocol: str
) -> None:
    # Half way through the emulator's answer, a row whose date cannot be: the list call gets no
    # row, the stream the rows of the slices before it, then the error; and it is not asked again.
    encode_rows_ = codec.encode_rows
    bad_row = "<SMSLIST><createddate>31/02/2009(16:37:00)</createddate></SMSLIST>"
    before: list[int] = []  # how many rows the answer has before the bad one

    def broken(op: Operation, rows: Any) -> str:
        document = encode_rows_(op, rows)
        if op.name != RANGED:
            return document
        parts = document.split("<SMSLIST>")  # the root's start tag, then a part per row
        half = len(parts) // 2
        before.append(half - 1)
        head, tail = "<SMSLIST>".join(parts[:half]), "<SMSLIST>".join(parts[half:])
        return f"{head}{bad_row}<SMSLIST>{tail}"

    expected = wanted(inbox, RANGE_FIRST, RANGE_LAST)

    def check(rows: list[IncomingSms], error: ProtocolError) -> None:
        assert before[-1] == len(expected) // 2 - 1
        assert 0 < len(rows) <= before[-1]
        assert seen(rows) == expected[: len(rows)]
        assert error.operation == RANGED
        assert "createddate" in str(error)

    with mock.patch.object(codec, "encode_rows", broken), sclient(emu, protocol=protocol) as client:
        with pytest.raises(ProtocolError):
            client.get_incoming(RANGE_FIRST, RANGE_LAST)
        emu.app.recorded.clear()
        got: list[IncomingSms] = []
        with sliced(), pytest.raises(ProtocolError) as caught:  # noqa: PT012 - rows, then fault
            for row in client.iter_incoming(RANGE_FIRST, RANGE_LAST):
                got.append(row)
        check(got, caught.value)
        assert [r.operation for r in emu.recorded] == [RANGED]

        async def stream() -> tuple[list[IncomingSms], ProtocolError]:
            rows: list[IncomingSms] = []
            async with aclient(emu, protocol=protocol) as aclient_:
                with sliced(), pytest.raises(ProtocolError) as failed:  # noqa: PT012
                    async for row in aclient_.iter_incoming(RANGE_FIRST, RANGE_LAST):
                        rows.append(row)
            return rows, failed.value

        emu.app.recorded.clear()
        check(*asyncio.run(stream()))
        assert [r.operation for r in emu.recorded] == [RANGED]
