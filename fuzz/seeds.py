"""The seed inputs of the fuzz targets: every shape FIBO and the emulator write, in every carrier,
plus the hostile documents of tests/hostile.py. Written to a directory per target by fuzz/run.py
before each run (not kept in the repository: they are made from the code).

Each seed follows the layout of fuzz/targets.py: a byte for the operation or shape, a byte for the
status/content type or SOAP version, then the body.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from lxml import etree
from targets import ANSWERS, FUZZ_PASSWORD, OPS, SHAPES

from fibo_soap import codec
from fibo_soap.operations import Result

NS = "http://tempuri.org/"

_ROW = {
    "GetClientCommingSMSNotDividePage": (
        "<ClientCommingSMSID>263011</ClientCommingSMSID><PhoneNumber>84913122005</PhoneNumber>"
        "<message>FIBO DEMODGN 50</message><SentDate>22/04/2009(16:37:00)</SentDate>"
        "<createddate>2009-04-22T16:37:00+07:00</createddate><ServiceTypeID>229</ServiceTypeID>"
        "<servicetypeName>8022(FIBO)</servicetypeName>"
    ),
    "GetClientSMSListOfPage": (
        "<SMSID>492</SMSID><MSGUID /><PhoneNumber>0909626922</PhoneNumber>"
        "<Message>Message 42</Message><CreateDate>2008-05-16T09:23:00+07:00</CreateDate>"
        "<SentDate>2008-05-16T09:32:00+07:00</SentDate><SMSStatus>2</SMSStatus>"
    ),
    "GetSMSSentList": (
        "<SMSID>493</SMSID><MSGUID>g-1</MSGUID><PhoneNumber>0909128628</PhoneNumber>"
        "<Message>Message 43</Message><CreatedDate>2008-05-16T09:23:00+07:00</CreatedDate>"
        "<SentDate /><SMSStatus>12</SMSStatus>"
    ),
    "GetCommingSMSList": (
        "<ClientCommingSMSID>62</ClientCommingSMSID><PhoneNumber>+84909128628</PhoneNumber>"
        "<message>Testing </message><ClientCommingSMSStatus>2</ClientCommingSMSStatus>"
        "<createddate>2008-05-27T19:17:00+07:00</createddate><ServiceTypeID>1</ServiceTypeID>"
        "<serviceTypename>19001733</serviceTypename>"
    ),
    "GetSMSStatus": "<msguid>1</msguid><smsStatus>3</smsStatus><sendername>+841215</sendername>",
    "GetClientSenderNameList": (
        "<clientSenderName> SenderName2</clientSenderName>"
        "<clientSenderNameStatus>1</clientSenderNameStatus>"
        "<Createddate>2008-09-24T11:42:00+07:00</Createddate>"
    ),
    "GetListSMSHostingWithBalance": (
        "<ServiceTypeName>+841223100690</ServiceTypeName><balance>455</balance>"
    ),
}

_HOSTILE_INNER = [
    '<!DOCTYPE SMS [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><SMS><Code>&b;</Code></SMS>',
    '<!DOCTYPE SMS SYSTEM "file:///etc/passwd"><SMS><Code>0</Code></SMS>',
    '<!DOCTYPE SMS [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x"> %p;]><SMS/>',
    "<SMS><Code>2<!-- c -->00</Code><Message>a<?pi x?>b</Message></SMS>",
    "<SMS><Code>200</Code><Message><![CDATA[<x>]]></Message></SMS>",
    "<SMS><Code> 0 </Code><Message>Nguyễn</Message><Time/></SMS>",
    "<DocumentElement><SMSLIST><msguid>a<b/>c</msguid></SMSLIST></DocumentElement>",
    "<ListWrongPhoneNumber><MSGUID>g</MSGUID><MSGUID> h </MSGUID></ListWrongPhoneNumber>",
    '<?xml version="1.0" encoding="utf-16"?><SMS><Code>101</Code></SMS>',
]


def results() -> Iterator[tuple[int, str]]:
    """(operation index, result text) for every operation: its usual answers and odd ones."""
    for index, op in enumerate(OPS):
        yield index, codec.encode_status(200, "Sending...")
        yield index, codec.encode_status(100, "Please check your account!")
        if op.result is Result.TEXT:
            yield index, "www.Fibovietnam.com"
        if op.result in (Result.INT, Result.BALANCE):
            yield index, "529"
            yield index, "-1"
        row = _ROW.get(op.name)
        if row is not None:
            yield index, f"<DocumentElement><SMSLIST>{row}</SMSLIST></DocumentElement>"
            yield index, "<DocumentElement />"
        if op.sends:
            yield index, codec.encode_wrong_phones(["g-1", "g-2"])
    check_client = [op.name for op in OPS].index("CheckClient")
    for text in _HOSTILE_INNER:
        yield check_client, text


def _selector(status: int, media: str) -> int:
    return ANSWERS.index((status, media))


def response_seeds() -> Iterator[bytes]:
    for index, text in results():
        op = OPS[index]
        body = codec.encode_http_body(op, text, NS) if not op.returns_int else None
        string = (
            f'<?xml version="1.0" encoding="utf-8"?><string xmlns="{NS}">{escape(text)}</string>'
        )
        yield bytes([index, 0]) + (body or string.encode())
        yield bytes([index, 0]) + string.encode("utf-8")
    yield bytes([0, 4]) + b"System.InvalidOperationException: Missing parameter: clientPass."
    yield bytes([0, 5]) + b"<!DOCTYPE html><html><body>login</body></html>"
    yield bytes([0, 0]) + f'<int xmlns="{NS}">25</int>'.encode()
    yield bytes([0, 0]) + "<string>x</string>".encode("utf-16")
    yield from (bytes([0, 0]) + envelope for envelope in _soap_answers())


def _soap_answers() -> Iterator[bytes]:
    for version in ("1.1", "1.2"):
        for index, text in results():
            op = OPS[index]
            yield codec.encode_soap_response(op, text, version=version, namespace=NS)
        yield codec.encode_soap_fault(version, "Server", "Server was unable to process request.")
        yield codec.encode_soap_fault(version, "Client", "Server did not recognize the value.")


def soap_answer_seeds() -> Iterator[bytes]:
    carriers = (
        ("1.1", 0, "text/xml; charset=utf-8"),
        ("1.2", 1, "application/soap+xml; charset=utf-8"),
    )
    for version, soap12, media in carriers:
        ok, fault = _selector(200, media), _selector(500, media)
        for index, text in results():
            op = OPS[index]
            body = codec.encode_soap_response(op, text, version=version, namespace=NS)
            yield bytes([index, ok << 1 | soap12]) + body
        for code in ("Server", "Client"):
            body = codec.encode_soap_fault(version, code, "Server was unable to process request.")
            yield bytes([0, fault << 1 | soap12]) + body


def _soap_request(version: str, method: str, params: dict[str, str]) -> bytes:
    env = codec.soap_namespace(version)
    root = etree.Element(f"{{{env}}}Envelope", nsmap={"soap": env})
    body = etree.SubElement(root, f"{{{env}}}Body")
    call = etree.SubElement(body, f"{{{NS}}}{method}", nsmap={None: NS})
    for name, value in params.items():
        etree.SubElement(call, f"{{{NS}}}{name}").text = value
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def request_document_seeds() -> Iterator[bytes]:
    samples = {
        0: [("0909128628", "Tom & Jerry <3"), ("0909128629", "]]> &#0;")],
        1: [("0909128628", "g-1"), ("0909128629", " g-2 ")],
        2: [("0909128628", "g-1", "Mã OTP"), ("0909128629", "g-2", "")],
        3: ["g-1", "g-2"],
    }
    for index, shape in enumerate(SHAPES):
        document = codec.encode_document(shape, samples[index])
        yield bytes([index, 0]) + document.encode()
        for op in OPS:
            params = {name: "x" for name in op.params}
            for name, value in op.documents:
                if value == shape:
                    params[name] = document
            yield bytes([index, 0]) + _soap_request("1.1", op.name, params)
            yield bytes([index, 1]) + _soap_request("1.2", op.name, params)
            yield bytes([index, 0]) + urlencode(params).encode()
    for text in _HOSTILE_INNER:
        yield bytes([0, 0]) + text.encode()


def emulator_request_seeds() -> Iterator[bytes]:
    account = {"clientNo": "CL0001", "clientPass": FUZZ_PASSWORD}
    for index, op in enumerate(OPS):
        params = {name: "1" for name in op.params} | account
        if "phoneNumber" in params:
            params["phoneNumber"] = "0909128628"
        for name, shape in op.documents:
            rows = {
                SHAPES[0]: [("0909128628", "hi")],
                SHAPES[1]: [("0909128628", "g-1")],
                SHAPES[2]: [("0909128628", "g-2", "hi")],
                SHAPES[3]: ["g-1"],
            }[shape]
            params[name] = codec.encode_document(shape, rows)
        yield bytes([0, index]) + _soap_request("1.1", op.name, params)
        yield bytes([1, index]) + _soap_request("1.2", op.name, params)
        yield bytes([2, index]) + urlencode(params).encode()
        yield bytes([3, index]) + urlencode(params).encode()
    yield bytes([5, 0]) + b"WSDL"
    for text in _HOSTILE_INNER:
        yield bytes([3, 0]) + urlencode({"smsList": text} | account).encode()


SEEDS = {
    "response": response_seeds,
    "soap_answer": soap_answer_seeds,
    "request_document": request_document_seeds,
    "emulator_request": emulator_request_seeds,
}
