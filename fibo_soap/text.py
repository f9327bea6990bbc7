"""Message text: how many SMS parts it costs, Vietnamese accent stripping, and the checks before
sending.

A text whose every character is in the GSM 03.38 default alphabet (3GPP TS 23.038) travels as
GSM-7: 160 septets in a single message, 153 per part once concatenated (the user data header takes
the rest), the extension-table characters (``€ [ ] { } ^ ~ | \\`` and form feed) costing two
septets each. Any other character makes the whole text UCS-2: 70 UTF-16 code units single, 67 per
part, a character outside the Basic Multilingual Plane (most emoji) costing two. As handsets and
gateways do, an escape sequence or a surrogate pair is never split between two parts, so a part
may hold one unit less than its size.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

from fibo_soap.errors import InvalidInputError, MessageTooLongError

__all__ = [
    "GSM_BASIC",
    "GSM_EXTENSION",
    "VIETNAMESE_LETTERS",
    "Accents",
    "Encoding",
    "Segments",
    "check_text",
    "prepare",
    "segments",
    "strip_accents",
]

#: The GSM 03.38 default alphabet in code order, 16 to a line. Position 0x1B is the escape to the
#: extension table, not a character: it is left out of the set below.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: The GSM 03.38 extension table: each is sent as escape + code, two septets.
GSM_EXTENSION = "\f^{}\\[~]|€"

_GSM_ESCAPE = "\x1b"
_GSM_COST = {ch: 1 for ch in GSM_BASIC if ch != _GSM_ESCAPE} | {ch: 2 for ch in GSM_EXTENSION}
# Texts whose every character costs one unit: GSM-7 without the extension table, and UCS-2 within
# the BMP. Most texts are one or the other, and their parts follow from their length alone.
_GSM_ONE_UNIT = re.compile("[" + re.escape(GSM_BASIC.replace(_GSM_ESCAPE, "")) + "]*")
_BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")

_GSM7_SINGLE, _GSM7_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67
_BMP_END = 0xFFFF

#: The 134 precomposed letters of Vietnamese that are not plain ASCII, lower then upper case, by
#: base letter, each vowel in the tone order grave, acute, hook above, tilde, dot below.
VIETNAMESE_LETTERS = (
    "àáảãạ" "ăằắẳẵặ" "âầấẩẫậ" "èéẻẽẹ" "êềếểễệ" "ìíỉĩị"
    "òóỏõọ" "ôồốổỗộ" "ơờớởỡợ" "ùúủũụ" "ưừứửữự" "ỳýỷỹỵ" "đ"
    "ÀÁẢÃẠ" "ĂẰẮẲẴẶ" "ÂẦẤẨẪẬ" "ÈÉẺẼẸ" "ÊỀẾỂỄỆ" "ÌÍỈĨỊ"
    "ÒÓỎÕỌ" "ÔỒỐỔỖỘ" "ƠỜỚỞỠỢ" "ÙÚỦŨỤ" "ƯỪỨỬỮỰ" "ỲÝỶỸỴ" "Đ"
)  # fmt: skip

# đ and Đ are letters of their own (no decomposition); every other one is a base plus marks.
_VIETNAMESE_ASCII = {
    ch: {"đ": "d", "Đ": "D"}.get(ch) or unicodedata.normalize("NFD", ch)[0]
    for ch in VIETNAMESE_LETTERS
}

#: What a text may not hold: control characters (category Cc) other than \t, \n and \r, and what
#: XML cannot carry (lone surrogates, U+FFFE, U+FFFF). One search, not a loop over characters.
_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


class Encoding(enum.StrEnum):
    """The SMS data coding a text needs."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


class Accents(enum.StrEnum):
    """What :func:`prepare` does with Vietnamese accents."""

    KEEP = "keep"
    STRIP = "strip"
    STRIP_IF_SHORTER = "strip-if-shorter"  # strip only when that saves at least one part


@dataclass(frozen=True)
class Segments:
    """What a text costs: its encoding, its length in that encoding's units, and the parts.

    ``characters`` counts septets for GSM-7 (an extension character counts 2) or UTF-16 code units
    for UCS-2 (a character outside the BMP counts 2). ``per_part`` is the capacity of each part:
    160/70 for a single message, 153/67 once concatenated.
    """

    encoding: Encoding
    characters: int
    parts: int
    per_part: int


def segments(text: str) -> Segments:
    """The encoding, length and number of SMS parts ``text`` is sent as.

    An empty text is one part of 0 characters in GSM-7: a handset sends an empty SMS as one
    message (:func:`prepare` refuses it before that).
    """
    return Segments(*_cost(text))


def _cost(text: str) -> tuple[Encoding, int, int, int]:
    """What ``segments`` says of ``text``, as a tuple (``prepare`` needs only the parts)."""
    if _GSM_ONE_UNIT.fullmatch(text):
        return _parts(Encoding.GSM7, len(text), None)
    gsm = [_GSM_COST.get(ch, 0) for ch in text]
    if all(gsm):
        return _parts(Encoding.GSM7, sum(gsm), gsm)
    if _BEYOND_BMP.search(text) is None:
        return _parts(Encoding.UCS2, len(text), None)
    ucs2 = [2 if ord(ch) > _BMP_END else 1 for ch in text]
    return _parts(Encoding.UCS2, sum(ucs2), ucs2)


def _parts(
    encoding: Encoding, total: int, units: list[int] | None
) -> tuple[Encoding, int, int, int]:
    """The cost of a text of ``total`` units, ``units`` per character (None: one each)."""
    single, per_part = (
        (_GSM7_SINGLE, _GSM7_PART) if encoding is Encoding.GSM7 else (_UCS2_SINGLE, _UCS2_PART)
    )
    if total <= single:
        return encoding, total, 1, single
    if units is None:  # no pair to keep whole: every part but the last is full
        return encoding, total, -(-total // per_part), per_part
    parts, used = 1, 0
    for unit in units:
        if used + unit > per_part:  # a two-unit character goes whole to the next part
            parts, used = parts + 1, 0
        used += unit
    return encoding, total, parts, per_part


def strip_accents(text: str, *, all_scripts: bool = False) -> str:
    """``text`` with its Vietnamese letters made plain ASCII: ``Tiếng Việt`` → ``Tieng Viet``.

    ``đ``/``Đ`` become ``d``/``D`` and every tone and vowel mark is removed, whether the text is
    precomposed (NFC) or decomposed (NFD). Other characters are left as they are (``ü``, ``ñ``,
    ``ç``, Greek, CJK, emoji), unless ``all_scripts`` is true: then every combining mark on a
    Latin letter goes too (``Ångström façade`` → ``Angstrom facade``).
    """
    if text.isascii():
        return text
    out: list[str] = []
    for cluster in _clusters(text):
        composed = cluster if len(cluster) == 1 else unicodedata.normalize("NFC", cluster)
        plain = _VIETNAMESE_ASCII.get(composed)
        if plain is not None:
            out.append(plain)
        elif all_scripts and _is_latin(cluster):
            decomposed = unicodedata.normalize("NFD", cluster)
            out.append("".join(ch for ch in decomposed if not unicodedata.combining(ch)))
        else:
            out.append(cluster)
    return "".join(out)


def _clusters(text: str) -> list[str]:
    """``text`` cut into base characters, each with the combining marks that follow it."""
    clusters: list[str] = []
    for ch in text:
        if clusters and unicodedata.combining(ch):
            clusters[-1] += ch
        else:
            clusters.append(ch)
    return clusters


def _is_latin(cluster: str) -> bool:
    return unicodedata.name(cluster[0], "").startswith("LATIN ")


def check_text(text: str, *, field: str = "message") -> None:
    """Nothing, or :class:`InvalidInputError` if ``text`` cannot be sent as an SMS.

    Refused: an empty (or whitespace-only) text; control characters other than ``\\n``, ``\\r``
    and ``\\t``; what XML cannot carry (lone surrogates, U+FFFE, U+FFFF). The error names the
    character as ``U+XXXX`` and its index in ``text``.
    """
    if not isinstance(text, str):
        raise InvalidInputError(
            f"{field} must be a str, not {type(text).__name__}", field=field, value=text
        )
    if not text.strip():
        raise InvalidInputError(f"{field} is empty", field=field, value=text)
    refused = _REFUSED.search(text)
    if refused is None:
        return
    ch = refused.group()
    what = (
        "a control character"
        if unicodedata.category(ch) == "Cc"
        else "a character XML cannot carry"
    )
    raise InvalidInputError(
        f"{field} contains {what}, U+{ord(ch):04X}, at index {refused.start()}",
        field=field,
        value=ch,
    )


def check_guid(guid: object, *, field: str = "guid") -> str:
    """``guid``, or :class:`InvalidInputError` naming ``field`` if it cannot be a message's GUID.

    Refused: anything but a str; what :func:`check_text` refuses; outer whitespace, which FIBO
    trims (a look-up or a ListWrongPhoneNumber would then name another string).
    """
    if not isinstance(guid, str):
        raise InvalidInputError(
            f"a GUID must be text, not {type(guid).__name__}", field=field, value=guid
        )
    check_text(guid, field=field)
    if guid.strip() != guid:
        raise InvalidInputError(
            f"the GUID {guid!r} starts or ends with whitespace, which FIBO trims",
            field=field,
            value=guid,
        )
    return guid


def prepare(
    text: str,
    *,
    accents: Accents | str = Accents.KEEP,
    max_parts: int = 5,
    field: str = "message",
) -> str:
    """The text to send: checked, composed (NFC), accents handled, within ``max_parts`` parts.

    NFC composition changes no character a reader sees, but a decomposed Vietnamese letter
    would otherwise cost up to three UCS-2 units. ``accents`` is ``"keep"``, ``"strip"``
    (:func:`strip_accents`) or ``"strip-if-shorter"`` (strip only if that takes fewer parts).
    Raises :class:`InvalidInputError` as :func:`check_text` does, and
    :class:`MessageTooLongError` when the text needs more than ``max_parts`` parts; both name
    ``field``, the argument the text came in.
    """
    check_text(text, field=field)
    mode = _check_accents(accents)
    if isinstance(max_parts, bool) or not isinstance(max_parts, int) or max_parts < 1:
        raise InvalidInputError(
            f"max_parts must be a positive int, not {max_parts!r}",
            field="max_parts",
            value=max_parts,
        )
    result = unicodedata.normalize("NFC", text)
    if mode is Accents.STRIP:
        result = strip_accents(result)
    cost = _cost(result)
    if mode is Accents.STRIP_IF_SHORTER:
        stripped = strip_accents(result)
        stripped_cost = _cost(stripped)
        if stripped_cost[2] < cost[2]:
            result, cost = stripped, stripped_cost
    encoding, characters, parts, _ = cost
    if parts > max_parts:
        unit = "GSM-7 septets" if encoding is Encoding.GSM7 else "UCS-2 code units"
        raise MessageTooLongError(
            f"{field} needs {parts} SMS parts ({characters} {unit}); the limit is {max_parts}",
            field=field,
        )
    return result


def _check_accents(accents: Accents | str) -> Accents:
    if accents.__class__ is Accents:  # the usual argument: no lookup by value
        return accents
    try:
        return Accents(accents)
    except ValueError:
        choices = ", ".join(repr(a.value) for a in Accents)
        raise InvalidInputError(
            f"accents {accents!r} is not one of {choices}", field="accents", value=accents
        ) from None
