"""The pytest plugin (fibo_soap.testing): seeded GUIDs, the fixtures, cassette scrubbing and the
FIBO matchers; and the README's example test, recorded and replayed by a pytest of its own."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import vcr
import yaml
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.request import Request

from fibo_soap import FiboClient, Message
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.logs import secret_forms
from fibo_soap.testing import (
    MATCH_ON,
    REPLAY_ENDPOINT,
    CassetteScrubber,
    canonical_request,
    cassette_config,
    fibo_action,
    fibo_body,
    mask_digits,
    register_matchers,
    seeded_guids,
)

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PROTOCOLS = ("soap11", "soap12", "get", "post")
TRICKY = "Tr1cky&<pass>+%/ \"word'"
CLIENT_NO = "CLSECRET42"
PHONE = "0909128628"
PHONE_2 = "0903636635"
INCOMING = "84913122005"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "http://tempuri.org/"


# --- seeded GUIDs and the fixtures -----------------------------------------------------------


def test_seeded_guids_repeat_for_a_seed() -> None:
    first, again, other = seeded_guids(7), seeded_guids(7), seeded_guids(8)
    made = [first() for _ in range(100)]
    assert made == [again() for _ in range(100)]
    assert made[0] != other()
    assert len(set(made)) == 100
    for guid in made:
        parsed = uuid.UUID(guid)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, guid)


def test_fibo_client_makes_seeded_guids(fibo_client: FiboClient, fibo_emulator: Emulator) -> None:
    receipt = fibo_client.send_sms(PHONE, "xin chào")
    assert receipt.guid == seeded_guids(0)()
    assert len(fibo_emulator.received(guid=receipt.guid)) == 1


@pytest.mark.parametrize("fibo_guid_seed", [42])
def test_the_guid_seed_is_a_fixture(fibo_client: FiboClient) -> None:
    assert fibo_client.send_sms(PHONE, "xin chào").guid == seeded_guids(42)()


def test_fibo_vcr_config_removes_the_password_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("FIBO_CLIENT_PASS", "env-secret-123")
    config = request.getfixturevalue("fibo_vcr_config")
    assert config["match_on"] == MATCH_ON
    answer = _answer("<string>echo env-secret-123 and env-secret-123</string>")
    assert b"env-secret-123" not in config["before_record_response"](answer)["body"]["string"]


# --- requests as they travel -----------------------------------------------------------------


def _soap_body(
    method: str,
    params: list[tuple[str, str]],
    *,
    env: str = "soap-env",
    prefix: str = "ns0",
    indent: str = "",
) -> bytes:
    open_call = (
        f"<{prefix}:{method} xmlns:{prefix}={NS!r}>" if prefix else f"<{method} xmlns={NS!r}>"
    )
    close_call = f"</{prefix}:{method}>" if prefix else f"</{method}>"
    tag = f"{prefix}:" if prefix else ""
    inner = "".join(f"{indent}<{tag}{name}>{value}</{tag}{name}>" for name, value in params)
    return (
        f"<?xml version='1.0' encoding='utf-8'?>\n<{env}:Envelope xmlns:{env}={SOAP11!r}>"
        f"<{env}:Body>{open_call}{inner}{indent}{close_call}</{env}:Body></{env}:Envelope>"
    ).encode()


def _soap(method: str, params: list[tuple[str, str]], **options: Any) -> Request:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NS}{method}"'}
    return Request(
        "POST", "http://127.0.0.1:5000/Service.asmx", _soap_body(method, params, **options), headers
    )


def _form(method: str, body: str, host: str = "127.0.0.1:5000") -> Request:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return Request("POST", f"http://{host}/Service.asmx/{method}", body.encode(), headers)


def _get(method: str, query: str) -> Request:
    return Request("GET", f"http://127.0.0.1:5000/Service.asmx/{method}?{query}", None, {})


def _answer(body: str, content_type: str = "text/xml; charset=utf-8") -> dict[str, Any]:
    data = body.encode()
    return {
        "status": {"code": 200, "message": "OK"},
        "headers": {
            "Content-Type": [content_type],
            "Content-Length": [str(len(data))],
            "Date": ["Wed, 22 Apr 2009 09:37:00 GMT"],
        },
        "body": {"string": data},
    }


def _escaped(xml: str) -> str:
    return xml.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


DOCUMENT = (
    '<Document><ListMobilePhone a="1" b="2"><PhoneNumber>0903636635</PhoneNumber>'
    "<MSGUID>g-1</MSGUID></ListMobilePhone></Document>"
)
DOCUMENT_REFORMATTED = (
    '<Document>\n  <ListMobilePhone b="2" a="1">\n    <PhoneNumber>0903636635</PhoneNumber>\n'
    "    <MSGUID>g-1</MSGUID>\n  </ListMobilePhone>\n</Document>"
)


def _list_send(document: str, password: str = "pw-one", **options: Any) -> Request:  # noqa: S107
    return _soap(
        "SendSMSToListMobilePhone",
        [
            ("clientNo", "CL0001"),
            ("clientPass", password),
            ("senderName", "n/a"),
            ("smsContent", "hello  world"),
            ("listPhoneNumber", _escaped(document)),
            ("serviceType", "1"),
        ],
        **options,
    )


# --- matching --------------------------------------------------------------------------------


def test_soap_matches_across_prefixes_whitespace_attribute_order_and_password() -> None:
    recorded = _list_send(DOCUMENT)
    sent = _list_send(DOCUMENT_REFORMATTED, "pw-two", env="s", prefix="", indent="\n  ")
    sent.uri = "http://center.fibosms.com/Service.asmx"
    fibo_body(sent, recorded)
    fibo_action(sent, recorded)


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        (lambda doc: doc.replace("g-1", "g-2"), "listPhoneNumber"),
        (lambda doc: doc.replace("0903636635", "0903636636"), "listPhoneNumber"),
        (lambda doc: doc.replace('a="1"', 'a="9"'), "listPhoneNumber"),
    ],
)
def test_a_changed_request_document_does_not_match(
    change: Callable[[str], str], parameter: str
) -> None:
    with pytest.raises(AssertionError, match=f"^{parameter}: sent"):
        fibo_body(_list_send(change(DOCUMENT)), _list_send(DOCUMENT))


def test_text_whitespace_counts() -> None:
    changed = _list_send(DOCUMENT)
    changed.body = changed.body.replace(b"hello  world", b"hello world")
    with pytest.raises(AssertionError, match=r"^smsContent: sent 'hello world'"):
        fibo_body(changed, _list_send(DOCUMENT))


def test_soap_parameter_order_and_nil_count() -> None:
    base = [("clientNo", "CL0001"), ("clientPass", "x"), ("serviceType", "1")]
    swapped = [base[0], base[2], base[1]]
    with pytest.raises(AssertionError, match="parameter order"):
        fibo_body(_soap("GetClientBalance", swapped), _soap("GetClientBalance", base))
    nil = _soap("GetClientBalance", base)
    nil.body = nil.body.replace(
        b"<ns0:serviceType>1</ns0:serviceType>",
        b'<ns0:serviceType xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>',
    )
    empty = _soap("GetClientBalance", [*base[:2], ("serviceType", "")])
    with pytest.raises(AssertionError, match="serviceType: sent None"):
        fibo_body(nil, empty)


def test_form_and_query_fields_match_by_name_in_any_encoding() -> None:
    fibo_body(
        _form("SendSMS", "clientNo=CL0001&clientPass=a&smsMessage=x+y&serviceType=1"),
        _form("SendSMS", "serviceType=1&smsMessage=x%20y&clientPass=b&clientNo=CL0001"),
    )
    fibo_body(
        _get("GetSMSSentList", "minutes=5&clientPass=a"),
        _get("GetSMSSentList", "clientPass=b&minutes=5"),
    )
    with pytest.raises(AssertionError, match="minutes: sent '6'"):
        fibo_body(_get("GetSMSSentList", "minutes=6"), _get("GetSMSSentList", "minutes=5"))
    with pytest.raises(AssertionError, match="protocol"):
        fibo_body(_form("GetSMSSentList", "minutes=5"), _get("GetSMSSentList", "minutes=5"))


def test_the_action_and_media_type_count() -> None:
    recorded = _soap("About", [])
    other = _soap("About", [])
    other.headers["SOAPAction"] = '"http://tempuri.org/CheckClient"'
    with pytest.raises(AssertionError):
        fibo_action(other, recorded)
    soap12 = _soap("About", [])
    soap12.headers["Content-Type"] = (
        'application/soap+xml; charset=utf-8; action="http://tempuri.org/About"'
    )
    del soap12.headers["SOAPAction"]
    with pytest.raises(AssertionError, match="application/soap"):
        fibo_action(soap12, recorded)


def test_other_requests_match_on_the_whole_uri_and_body() -> None:
    mine = Request(
        "POST", "https://api.example.com/hook", b'{"a": 1}', {"Content-Type": "application/json"}
    )
    theirs = Request(
        "POST", "https://other.example.com/hook", b'{"a": 1}', {"Content-Type": "application/json"}
    )
    fibo_body(mine, mine)
    fibo_action(mine, theirs)
    with pytest.raises(AssertionError):
        fibo_body(mine, theirs)
    assert canonical_request(mine)[0] == "other"


@pytest.mark.parametrize(
    "request_",
    [
        Request("GET", "http://127.0.0.1:5000/Service.asmx?WSDL", None, {}),
        Request("GET", "http://127.0.0.1:5000/Service.asmx/NoSuchMethod?a=1", None, {}),
        Request("POST", "http://127.0.0.1:5000/Service.asmx/NoSuchMethod", b"a=1", FORM),
        Request("POST", "http://127.0.0.1:5000/Service.asmx", b"<html><p>", {}),
        Request("POST", "http://127.0.0.1:5000/Service.asmx", b"plain", {}),
        Request("POST", "http://127.0.0.1:5000/Service.asmx", bytearray(b"<a/>"), {}),
        Request("POST", "http://127.0.0.1:5000/Service.asmx", iter([b"x"]), {}),
        Request("DELETE", "http://127.0.0.1:5000/Service.asmx/About", None, {}),
        _soap("NoSuchMethod", [("clientPass", "secret-value")]),
    ],
)
def test_requests_that_are_not_fibo_calls_are_left_alone(request_: Request) -> None:
    assert canonical_request(request_)[0] == "other"
    scrubbed = CassetteScrubber(phones=True).request(request_)
    assert scrubbed.uri == request_.uri
    fibo_body(request_, request_)


def test_a_value_that_only_looks_like_xml_is_compared_as_text() -> None:
    fibo_body(_form("SendSMS", "smsMessage=%3Cnot+xml"), _form("SendSMS", "smsMessage=%3Cnot+xml"))
    with pytest.raises(AssertionError, match="smsMessage"):
        fibo_body(_form("SendSMS", "smsMessage=%3Cnot+xml"), _form("SendSMS", "smsMessage=%3Cnot"))


def test_a_missing_parameter_is_named() -> None:
    base = [("clientNo", "CL0001"), ("clientPass", "x")]
    with pytest.raises(AssertionError, match=r"^parameters: sent \['clientNo', 'clientPass'\]"):
        fibo_body(_soap("CheckClient", base), _soap("CheckClient", [*base, ("extra", "1")]))


def test_byte_headers_are_read() -> None:
    request = _soap("About", [])
    request.headers["SOAPAction"] = b'"http://tempuri.org/About"'
    fibo_action(request, _soap("About", []))


# --- scrubbing -------------------------------------------------------------------------------


def _forms_in(text: str, secret: str) -> list[str]:
    return [form for form in secret_forms(secret) if form in text]


def test_the_password_goes_from_soap_form_and_query() -> None:
    scrub = CassetteScrubber().request
    soap = scrub(_list_send(DOCUMENT, password=_escaped(TRICKY)))
    assert b"<ns0:clientPass>***</ns0:clientPass>" in soap.body
    from urllib.parse import quote_plus

    encoded = quote_plus(TRICKY)
    form = scrub(_form("CheckClient", f"clientNo=CL0001&clientPass={encoded}"))
    assert form.body == b"clientNo=CL0001&clientPass=***"
    query = scrub(_get("CheckClient", f"clientNo=CL0001&clientPass={encoded}"))
    assert query.uri == "http://127.0.0.1:1/Service.asmx/CheckClient?clientNo=CL0001&clientPass=***"
    for request in (soap, form, query):
        assert not _forms_in(f"{request.uri} {request.body!r}", TRICKY)
        assert scrub(request).body == request.body, "scrubbing twice changes nothing"


def test_the_password_goes_from_the_rest_of_the_request_too() -> None:
    # A message that quotes the password (a test's typo, a template filled with the wrong field):
    # it goes from the request as it goes from the answers, in every spelling.
    from urllib.parse import quote_plus

    scrubber = CassetteScrubber()
    secret = "s3cret & <pw>"
    text = f"your password is {secret}"
    soap = scrubber.request(
        _soap(
            "SendSMS",
            [
                ("clientNo", "CL0001"),
                ("clientPass", _escaped(secret)),
                ("smsMessage", _escaped(text)),
            ],
        )
    )
    query = f"clientNo=CL0001&clientPass={quote_plus(secret)}&smsMessage={quote_plus(text)}"
    got = scrubber.request(_get("SendSMS", query))
    # Learned once, it goes from a later request that does not carry it in clientPass.
    later = scrubber.request(_form("SendSMS", f"clientPass=x&smsMessage={quote_plus(text)}"))
    for request in (soap, got, later):
        assert not _forms_in(f"{request.uri} {request.body!r}", secret), request.body
    assert b"your password is ***" in soap.body
    assert got.uri.endswith("smsMessage=your+password+is+***")
    # A short one stays where it is not the password field: it would mangle other text.
    short = CassetteScrubber().request(_get("SendSMS", "clientPass=1000&smsMessage=pay+1000"))
    assert short.uri.endswith("clientPass=***&smsMessage=pay+1000")


def test_a_password_the_pattern_misses_goes_in_every_spelling() -> None:
    request = _soap(
        "CheckClient", [("clientNo", "CL0001"), ("clientPass", "<![CDATA[pw<&>secret]]>")]
    )
    scrubbed = CassetteScrubber().request(request)
    assert b"pw<&>secret" not in scrubbed.body
    assert b"<ns0:clientPass><![CDATA[***]]></ns0:clientPass>" in scrubbed.body


def test_phones_and_client_numbers_go_when_asked() -> None:
    request = _list_send(DOCUMENT)
    plain = CassetteScrubber().request(request)
    assert b"0903636635" in plain.body
    assert b"CL0001" in plain.body
    scrubbed = CassetteScrubber(phones=True, client_numbers=True).request(request)
    assert b"0903636635" not in scrubbed.body
    assert b"0903***635" in scrubbed.body
    assert b"<ns0:clientNo>***</ns0:clientNo>" in scrubbed.body
    query = CassetteScrubber(phones=True).request(
        _get("SendSMS", "clientNo=CL0001&clientPass=x&phoneNumber=%2B84909128628&smsMessage=m")
    )
    assert "phoneNumber=%2B8490***628" in query.uri


def test_phones_in_free_text_go_and_other_numbers_stay() -> None:
    amount, order = "10000000", "123456789012"  # digit runs that are no phone number
    text = f"Goi {PHONE} ve don {order}, so tien {amount}"
    scrubber = CassetteScrubber(phones=True)
    query = scrubber.request(_get("GetTotalPageOfClientSMS", f"clientNo=CL0001&key={PHONE}"))
    assert query.uri.endswith(f"key={mask_digits(PHONE)}")
    form = scrubber.request(
        _form("SendSMS", urlencode({"phoneNumber": PHONE_2, "smsMessage": text}))
    )
    assert parse_qs(form.body.decode())["smsMessage"] == [text.replace(PHONE, mask_digits(PHONE))]
    multi = (
        f"<Document><ListMobilePhone><PhoneNumber>{PHONE_2}</PhoneNumber><MSGUID>g-1</MSGUID>"
        f"<Message>{text}</Message></ListMobilePhone></Document>"
    )
    soap = scrubber.request(_soap("SendSMSWithMultiMessage", [("smsMessage", _escaped(multi))]))
    body = soap.body.decode()
    assert PHONE not in body
    assert PHONE_2 not in body
    assert f"{mask_digits(PHONE)} ve don {order}, so tien {amount}" in body
    # A number a request held is masked in the answers too.
    answer = scrubber.response(_answer(f"<string>{PHONE} {amount}</string>"))
    assert answer["body"]["string"].decode() == f"<string>{mask_digits(PHONE)} {amount}</string>"


@pytest.mark.parametrize(
    "spelled",
    [
        "{a} {b} {c}",  # as people write one: 0909 128 628
        "{a}-{b}-{c}",
        "{a}.{b}.{c}",
        "+84 {a1} {b} {c}",
    ],
)
def test_a_phone_number_written_in_groups_is_masked_in_every_encoding(spelled: str) -> None:
    a, b, c = PHONE[:4], PHONE[4:7], PHONE[7:]
    written = spelled.format(a=a, a1=a[1:], b=b, c=c)
    digits = re.sub(r"\D", "", written)
    masked = ("+" if written.startswith("+") else "") + mask_digits(digits)  # a "+" stays
    amount = "10 000 000"  # groups of digits that are no phone number
    text = f"Goi {written}, so tien {amount}"
    scrubber = CassetteScrubber(phones=True)
    for query in (urlencode({"key": text}), urlencode({"key": text}, quote_via=quote)):
        scrubbed = scrubber.request(_get("GetTotalPageOfClientSMS", f"clientNo=CL0001&{query}"))
        assert parse_qs(urlsplit(scrubbed.uri).query)["key"] == [f"Goi {masked}, so tien {amount}"]
    form = scrubber.request(
        _form("SendSMS", urlencode({"phoneNumber": PHONE_2, "smsMessage": text}))
    )
    assert parse_qs(form.body.decode())["smsMessage"] == [f"Goi {masked}, so tien {amount}"]
    soap = scrubber.request(_soap("SendSMS", [("phoneNumber", PHONE_2), ("smsMessage", text)]))
    assert written not in soap.body.decode()
    assert f"Goi {masked}, so tien {amount}" in soap.body.decode()
    # The answers that echo it, spelled either way, lose it too.
    for echoed, expected in ((written, masked), (digits, mask_digits(digits))):
        answer = scrubber.response(_answer(f"<string>{echoed}</string>"))
        assert answer["body"]["string"].decode() == f"<string>{expected}</string>"


def test_grouped_phone_numbers_side_by_side_are_each_masked() -> None:
    def grouped(number: str) -> str:
        return f"{number[:4]} {number[4:7]} {number[7:]}"

    # Only spaces between the two, then a count: one run of groups, no number as a whole.
    text = f"Goi {grouped(PHONE)} {grouped(PHONE_2)} 12 lan, so tien 10 000 000"
    expected = f"Goi {mask_digits(PHONE)} {mask_digits(PHONE_2)} 12 lan, so tien 10 000 000"
    scrubber = CassetteScrubber(phones=True)
    scrubbed = scrubber.request(_get("GetTotalPageOfClientSMS", urlencode({"key": text})))
    assert parse_qs(urlsplit(scrubbed.uri).query)["key"] == [expected]
    soap = scrubber.request(_soap("SendSMS", [("phoneNumber", PHONE), ("smsMessage", text)]))
    assert expected in soap.body.decode()


def _recorder(folder: Path) -> vcr.VCR:
    """A VCR.py recorder of cassettes in ``folder``, with the plugin's matchers."""
    recorder = vcr.VCR(cassette_library_dir=str(folder))
    register_matchers(recorder)
    return recorder


def _replaying(protocol: str, client_no: str = "CL0001", secret: str | None = None) -> FiboClient:
    """A client of no real service, for a replay: any account, the GUIDs of the recording."""
    return FiboClient(
        client_no,
        secret or "any password",
        endpoint=REPLAY_ENDPOINT,
        protocol=protocol,
        service_type=1,
        guid_factory=seeded_guids(3),
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_phone_number_as_search_key_is_masked_and_replays(tmp_path: Path, protocol: str) -> None:
    recorder = _recorder(tmp_path)
    config = cassette_config(phones=True)

    def searches(client: FiboClient, key: str) -> list[Any]:
        return [
            [row.guid for row in client.get_sent_page(1, key=key)],
            client.get_total_pages(key=key),
            [row.id for row in client.get_incoming(date(2000, 1, 1), date(2100, 1, 1), key=key)],
        ]

    with run_emulator(delivery_delay=0) as emu:
        emu.inject_incoming(PHONE, "hello")
        with (
            recorder.use_cassette("c.yaml", record_mode="once", **config),
            emu.client(protocol=protocol, guid_factory=seeded_guids(3)) as client,
        ):
            client.send_sms(PHONE, "hello")
            recorded = searches(client, PHONE)
    assert all(recorded), "each search found the number"
    text = (tmp_path / "c.yaml").read_text("utf-8")
    strings = [text, *(str(s) for s in _strings(yaml.safe_load(text)))]
    assert not any(PHONE in s for s in strings)
    assert mask_digits(PHONE) in text

    with (
        recorder.use_cassette("c.yaml", record_mode="none", **config),
        _replaying(protocol) as client,
    ):
        client.send_sms(PHONE, "hello")
        assert searches(client, PHONE) == recorded
        with pytest.raises(CannotOverwriteExistingCassetteException):
            client.get_total_pages(key=PHONE_2)  # another key is another request


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_grouped_phone_number_as_search_key_is_masked_and_replays(
    tmp_path: Path, protocol: str
) -> None:
    recorder = _recorder(tmp_path)
    config = cassette_config(phones=True)
    key = f"{PHONE[:4]} {PHONE[4:7]} {PHONE[7:]}"  # as people write one
    with (
        run_emulator(delivery_delay=0) as emu,
        recorder.use_cassette("c.yaml", record_mode="once", **config),
        emu.client(protocol=protocol, guid_factory=seeded_guids(3)) as client,
    ):
        client.send_sms(PHONE_2, f"Goi {key}")
        recorded = [row.guid for row in client.get_sent_page(1, key=key)]
    assert recorded, "the search found the message"
    text = (tmp_path / "c.yaml").read_text("utf-8")
    strings = [text, *(str(s) for s in _strings(yaml.safe_load(text)))]
    for spelling in (PHONE, key, quote(key), key.replace(" ", "+")):
        assert not any(spelling in s for s in strings), spelling
    with (
        recorder.use_cassette("c.yaml", record_mode="none", **config),
        _replaying(protocol) as client,
    ):
        client.send_sms(PHONE_2, f"Goi {key}")
        assert [row.guid for row in client.get_sent_page(1, key=key)] == recorded


def test_answers_lose_the_secrets_seen_and_their_phones() -> None:
    scrubber = CassetteScrubber(phones=True, secrets=["token-xyz"])
    scrubber.request(_form("CheckClient", "clientNo=CL0001&clientPass=learned-pw"))
    rows = _escaped(
        "<DocumentElement><SMSLIST><PhoneNumber>84913122005</PhoneNumber>"
        "<message>call 0909128628</message></SMSLIST></DocumentElement>"
    )
    echo = scrubber.response(_answer("<string>learned-pw, token-xyz</string>"))
    assert echo["body"]["string"] == b"<string>***, ***</string>"
    answer = scrubber.response(_answer(f"<string>{rows}</string>"))
    body = answer["body"]["string"].decode()
    assert "8491***005" in body
    assert "call 0909128628" in body, "only phone fields and numbers seen in requests are masked"
    assert "Date" not in answer["headers"]
    assert answer["headers"]["Content-Length"] == [str(len(answer["body"]["string"]))]


@pytest.mark.parametrize(
    "answer",
    [
        {"status": {"code": 204, "message": "No Content"}, "headers": {}, "body": {"string": b""}},
        _answer("<html><p>not well-formed", "text/plain"),
        _answer(
            "<string>&lt;DocumentElement&gt;&lt;!-- none --&gt;&lt;/DocumentElement&gt;</string>"
        ),
    ],
)
def test_answers_without_phones_pass_through(answer: dict[str, Any]) -> None:
    body = answer["body"]["string"]
    assert CassetteScrubber(phones=True).response(answer)["body"]["string"] == body


def test_a_nil_parameter_is_no_phone() -> None:
    nil = _soap("SendSMS", [("clientNo", "CL0001"), ("clientPass", "x"), ("phoneNumber", "")])
    nil.body = nil.body.replace(
        b"<ns0:phoneNumber></ns0:phoneNumber>",
        b'<ns0:phoneNumber xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="1"/>',
    )
    assert CassetteScrubber(phones=True).request(nil).body == nil.body.replace(b">x<", b">***<")


def test_other_answers_keep_their_date_and_short_passwords_stay_in_answers() -> None:
    scrubber = CassetteScrubber()
    scrubber.request(_form("CheckClient", "clientNo=CL0001&clientPass=1000"))
    answer = scrubber.response(_answer('{"balance": 1000}', "application/json"))
    assert answer["body"]["string"] == b'{"balance": 1000}'
    assert "Date" in answer["headers"]


def test_only_fibo_requests_to_loopback_get_the_stable_origin() -> None:
    scrubber = CassetteScrubber()
    assert scrubber.request(_get("About", "")).uri.startswith("http://127.0.0.1:1/")
    other = Request("GET", "http://127.0.0.1:8000/health", None, {})
    assert scrubber.request(other).uri == "http://127.0.0.1:8000/health"
    remote = _form("About", "", host="center.fibosms.com")
    assert scrubber.request(remote).uri == "http://center.fibosms.com/Service.asmx/About"
    assert (
        CassetteScrubber(loopback_origin=None)
        .request(_get("About", ""))
        .uri.startswith("http://127.0.0.1:5000/")
    )


# --- a round trip through VCR.py -------------------------------------------------------------


def _conversation(client: FiboClient) -> list[Any]:
    return [
        client.check_client(),
        client.send_sms(PHONE, "Mã OTP 123456").guid,
        client.send_to_list([PHONE_2, "0909120101"], "hello").rejected,
        client.send_multi_message([Message(PHONE, "một"), Message(PHONE_2, "hai")]).accepted,
        [(row.phone, row.message) for row in client.get_incoming_list(10)],
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_cassette_keeps_no_secret_and_replays_for_another_account(
    tmp_path: Path, protocol: str
) -> None:
    recorder = _recorder(tmp_path)
    options = {"phones": True, "client_numbers": True}
    with run_emulator(client_no=CLIENT_NO, client_pass=TRICKY, delivery_delay=0) as emu:
        emu.inject_incoming(INCOMING, "FIBO DEMO")
        with (
            recorder.use_cassette("c.yaml", record_mode="once", **cassette_config(**options)),
            emu.client(protocol=protocol, guid_factory=seeded_guids(3)) as client,
        ):
            recorded = _conversation(client)

    text = (tmp_path / "c.yaml").read_text("utf-8")
    strings = [text, *(str(s) for s in _strings(yaml.safe_load(text)))]
    for needle in (*secret_forms(TRICKY), "Tr1cky", CLIENT_NO, PHONE, PHONE_2, INCOMING):
        assert not any(needle in s for s in strings), needle

    with (
        recorder.use_cassette("c.yaml", record_mode="none", **cassette_config(**options)),
        _replaying(protocol, "CL7777", "another password") as client,
    ):
        replayed = _conversation(client)
        with pytest.raises(CannotOverwriteExistingCassetteException):
            client.check_client()  # every recorded answer is played once
    assert replayed[:4] == recorded[:4]
    assert replayed[4] == [(mask_digits(INCOMING), "FIBO DEMO")]
    assert recorded[4] == [(INCOMING, "FIBO DEMO")]


def _recorded_methods(cassette: Path) -> list[str]:
    interactions = yaml.safe_load(cassette.read_text("utf-8"))["interactions"]
    return [canonical_request(_as_request(i["request"]))[2] for i in interactions]


def _as_request(recorded: dict[str, Any]) -> Request:
    return Request(recorded["method"], recorded["uri"], recorded["body"], recorded["headers"])


def test_a_connection_kept_from_before_a_cassette_is_not_used_inside_it(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path)
    guid = seeded_guids(5)()
    with run_emulator(delivery_delay=0) as emu, emu.client() as client:
        client.check_client()  # leaves a kept-alive connection in the client's pool
        with recorder.use_cassette("c.yaml", record_mode="once", **cassette_config()):
            recorded = client.send_sms(PHONE, "hello", guid=guid)
        client.check_client()  # after the cassette: not recorded, and still answered
        assert _recorded_methods(tmp_path / "c.yaml") == ["SendSMS"]

        client.check_client()
        with recorder.use_cassette("c.yaml", record_mode="none", **cassette_config()):
            replayed = client.send_sms(PHONE, "hello", guid=guid)
        assert replayed == recorded
        assert len(emu.received(guid=guid)) == 1, "the replay was answered by the cassette"


def _strings(node: object) -> list[object]:
    if isinstance(node, dict):
        return [item for pair in node.items() for part in pair for item in _strings(part)]
    if isinstance(node, list):
        return [item for part in node for item in _strings(part)]
    return [node]


# --- the README's example, run as a user would -----------------------------------------------


def _readme_example() -> str:
    for name in ("README.md", "README.testing.md"):
        path = ROOT / name
        text = path.read_text("utf-8") if path.exists() else ""
        if "## Testing your integration" in text:
            section = text.split("## Testing your integration", 1)[1]
            found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
            assert found, "the section has a python example"
            return found.group(1)
    pytest.fail("no README has a 'Testing your integration' section")


def test_a_test_file_that_only_uses_the_fixture_records(pytester: pytest.Pytester) -> None:
    # Nothing of the client is imported before the test runs: the client's modules are first
    # imported by the fixture, while the cassette has patched http.client.
    pytester.makepyfile(
        test_fixture_only=f"""
        import pytest

        @pytest.fixture
        def vcr_config(fibo_vcr_config):
            return fibo_vcr_config

        @pytest.mark.vcr
        def test_send(fibo_client):
            guid = fibo_client.send_sms("{PHONE}", "hello").guid
            assert [row.guid for row in fibo_client.get_sms_status([guid])] == [guid]
        """
    )
    recorded = pytester.runpytest_subprocess("--record-mode=once", "-p", "no:cacheprovider")
    recorded.assert_outcomes(passed=1)
    cassette = pytester.path / "cassettes" / "test_fixture_only" / "test_send.yaml"
    assert _recorded_methods(cassette) == ["SendSMS", "GetSMSStatus"]
    replayed = pytester.runpytest_subprocess("--block-network", "-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=1)


def test_the_readme_example_records_replays_and_catches_a_change(pytester: pytest.Pytester) -> None:
    example = _readme_example()
    pytester.makepyfile(test_reminders=example)

    recorded = pytester.runpytest_subprocess("--record-mode=once", "-p", "no:cacheprovider")
    recorded.assert_outcomes(passed=1)
    cassette = pytester.path / "cassettes" / "test_reminders" / "test_reminder_is_delivered.yaml"
    interactions = yaml.safe_load(cassette.read_text("utf-8"))["interactions"]
    bodies = [i["request"]["body"] for i in interactions]
    assert len(bodies) == 2
    # The password element, in whatever prefix the envelope gives it, holds the placeholder.
    assert all(re.search(r"<(\w+:)?clientPass>\*\*\*</(\w+:)?clientPass>", b) for b in bodies)
    assert {i["request"]["uri"] for i in interactions} == {"http://127.0.0.1:1/Service.asmx"}

    replayed = pytester.runpytest_subprocess("--block-network", "-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=1)

    pytester.makepyfile(test_reminders=example.replace("9:00", "10:00"))
    changed = pytester.runpytest_subprocess("--block-network", "-p", "no:cacheprovider")
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*CannotOverwriteExistingCassetteException*"])
    changed.stdout.fnmatch_lines(["*smsMessage: sent*"])
