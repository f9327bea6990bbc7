"""Phone numbers: validated and normalized to the form sent to FIBO, before any request.

Parsing, validity, number types and formatting all come from ``phonenumbers`` (libphonenumber's
data). What it does not know is Vietnam's September 2018 conversion of the 11-digit mobile numbers
to 10 digits: people still write ``0168 912 8628`` for what is now ``038 912 8628``, so the
retired prefixes are converted here, from :data:`RETIRED_PREFIXES`.

Only numbers that can receive an SMS are accepted: landlines, toll-free and premium numbers, VoIP
and short codes are refused with the reason ``"not a mobile number"``.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import (
    PhoneNumber,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
    shortnumberinfo,
)

from fibo_soap.errors import InvalidInputError, InvalidPhoneNumberError

__all__ = [
    "RETIRED_PREFIXES",
    "WireFormat",
    "mask",
    "normalize",
    "normalize_many",
]


class WireFormat(enum.StrEnum):
    """How a Vietnamese number is written in requests; foreign numbers are always international."""

    NATIONAL = "national"  # 0909128628, as in the vendor document's examples
    INTERNATIONAL = "international"  # 84909128628: country code, no plus


#: The conversion of 11-digit mobile numbers to 10 digits (Ministry of Information and
#: Communications, from 15 September 2018): the old prefix on the left became the one on the right,
#: the 7 subscriber digits unchanged. libphonenumber only knows today's numbering.
RETIRED_PREFIXES: dict[str, str] = {
    # Viettel
    "0162": "032",
    "0163": "033",
    "0164": "034",
    "0165": "035",
    "0166": "036",
    "0167": "037",
    "0168": "038",
    "0169": "039",
    # MobiFone
    "0120": "070",
    "0121": "079",
    "0122": "077",
    "0126": "076",
    "0128": "078",
    # VinaPhone
    "0123": "083",
    "0124": "084",
    "0125": "085",
    "0127": "081",
    "0129": "082",
    # Vietnamobile
    "0186": "056",
    "0188": "058",
    # Gmobile
    "0199": "059",
}

_VN = 84
_RETIRED_NSN_LENGTH = 10  # national significant digits of an old 11-digit number (no trunk 0)
_SHORT_CODE_DIGITS = range(3, 7)  # service short codes (8122, 9029, 1080...) are 3-6 digits
_MASK_KEEP_HEAD = 4
_MASK_KEEP_TAIL = 3
_MASK_MIN_HIDDEN = 3
_SHOWN_CHARS = 40
_BATCH_SHOWN = 10  # numbers named in a batch error's message; ``invalid`` has them all

_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})

_TYPE_NAMES = {
    PhoneNumberType.FIXED_LINE: "landline",
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.PREMIUM_RATE: "premium rate",
    PhoneNumberType.SHARED_COST: "shared cost",
    PhoneNumberType.VOIP: "VoIP",
    PhoneNumberType.PERSONAL_NUMBER: "personal number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "UAN",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

_POSSIBLE_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong length",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
}

_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


class _Refused(Exception):
    """Internal: why one number is refused (``kind`` adds detail to the message, not the reason)."""

    def __init__(self, reason: str, kind: str = "") -> None:
        self.reason = reason
        self.kind = kind
        super().__init__(reason)

    def __str__(self) -> str:
        return f"{self.reason} ({self.kind})" if self.kind else self.reason


def normalize(
    phone: str,
    *,
    region: str = "VN",
    wire: WireFormat | str = WireFormat.NATIONAL,
) -> str:
    """The number in the form sent to FIBO, or :class:`InvalidPhoneNumberError` saying why not.

    ``region`` is the country a number written without ``+``/``00`` belongs to (ISO 3166 code,
    ``"VN"`` by default). Vietnamese numbers come out as ``0909128628`` (``wire="national"``) or
    ``84909128628`` (``wire="international"``); retired 11-digit prefixes are converted first
    (``01689128628`` → ``0389128628``). Foreign numbers always come out as international digits
    without the plus (``447911123456``), since a national form would reach the wrong country; to
    normalize such an output again, pass its ``region`` or prefix it with ``+``.
    """
    region_code = _check_region(region)
    wire_format = _check_wire(wire)
    try:
        return _normalize_one(phone, region_code, wire_format)
    except _Refused as refused:
        raise _error(phone, refused) from None


def normalize_many(
    phones: Iterable[str],
    *,
    region: str = "VN",
    wire: WireFormat | str = WireFormat.NATIONAL,
) -> list[str]:
    """Every number normalized as by :func:`normalize`, in order (duplicates kept).

    If any is refused, one :class:`InvalidPhoneNumberError` reports all of them in ``invalid`` as
    ``(phone as written, reason)`` pairs; ``phone`` and ``reason`` are those of the first.
    """
    if isinstance(phones, str):
        raise TypeError("normalize_many() takes an iterable of numbers, not a single str")
    region_code = _check_region(region)
    wire_format = _check_wire(wire)
    result: list[str] = []
    refused: list[tuple[str, _Refused]] = []
    for phone in phones:
        try:
            result.append(_normalize_one(phone, region_code, wire_format))
        except _Refused as why:
            refused.append((phone, why))
    if not refused:
        return result
    shown = "; ".join(f"{_shown(phone)}: {why}" for phone, why in refused[:_BATCH_SHOWN])
    more = f"; and {len(refused) - _BATCH_SHOWN} more" if len(refused) > _BATCH_SHOWN else ""
    first_phone, first_why = refused[0]
    detail = (
        _detail(first_phone, first_why)
        if len(refused) == 1
        else f"{len(refused)} phone numbers are not valid: {shown}{more}"
    )
    raise InvalidPhoneNumberError(
        detail,
        phone=_as_text(first_phone),
        reason=first_why.reason,
        invalid=[(_as_text(phone), why.reason) for phone, why in refused],
    )


def mask(phone: str) -> str:
    """The number with its middle digits replaced by ``*``, for logs: ``0909***628``.

    The first 4 and last 3 digits stay, separators are kept as written; a number too short to
    hide at least 3 digits that way has every digit masked (``8122`` → ``****``).
    """
    digits = sum(1 for ch in phone if ch.isdecimal())
    if digits < _MASK_KEEP_HEAD + _MASK_KEEP_TAIL + _MASK_MIN_HIDDEN:
        return "".join("*" if ch.isdecimal() else ch for ch in phone)
    out: list[str] = []
    seen = 0
    for ch in phone:
        if ch.isdecimal():
            seen += 1
            hidden = _MASK_KEEP_HEAD < seen <= digits - _MASK_KEEP_TAIL
            out.append("*" if hidden else ch)
        else:
            out.append(ch)
    return "".join(out)


def _normalize_one(phone: object, region: str, wire: WireFormat) -> str:
    if not isinstance(phone, str):
        raise _Refused("not a string")
    return _fast_vietnamese(phone, region, wire) or _normalize_text(phone, region, wire)


# The plain spellings of a Vietnamese number: a trunk 0, 84 or +84, then the national significant
# number (which never starts with 0: "00" is the international prefix). ASCII digits only.
_VN_PLAIN = re.compile(r"(0|\+84|84)([1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class _VnMobiles:
    """What phonenumbers' VN metadata says a valid mobile national number looks like."""

    # By length of a mobile national significant number: the one pattern a valid mobile number
    # of that length matches whole (see _mobile_test).
    valid: dict[int, re.Pattern[str]]
    longest_number: int  # digits of the longest national number of any type


@functools.cache
def _vn_mobiles() -> _VnMobiles | None:
    # Built on first use from the metadata phonenumbers itself validates with, so a data update
    # of the library moves both paths together.
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("VN")
    if metadata is None or metadata.same_mobile_and_fixed_line_pattern:
        return None
    general, mobile = metadata.general_desc, metadata.mobile
    if general is None or mobile is None:
        return None
    if not general.national_number_pattern or not mobile.national_number_pattern:
        return None
    # phonenumbers' number type test (_number_type_helper) tries these before mobile, and a
    # number matching one of them is of that type.
    earlier = (
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
    )
    other = [
        (frozenset(desc.possible_length or ()), desc.national_number_pattern)
        for desc in earlier
        if desc is not None and desc.national_number_pattern
    ]
    lengths = frozenset(n for n in mobile.possible_length or () if n > 0) & frozenset(
        general.possible_length or ()
    )
    try:
        valid = {
            length: _mobile_test(
                general.national_number_pattern,
                mobile.national_number_pattern,
                [pattern for kinds, pattern in other if not kinds or length in kinds],
            )
            for length in lengths
        }
    except re.error:
        return None  # a pattern that cannot be nested (an inline flag): phonenumbers decides
    return _VnMobiles(valid=valid, longest_number=max(general.possible_length or (0,)))


def _mobile_test(general: str, mobile: str, earlier: list[str]) -> re.Pattern[str]:
    """One pattern whose fullmatch is ``general.fullmatch and mobile.fullmatch and no earlier
    pattern's fullmatch``: one regex call per number rather than one per pattern.

    Each lookahead is anchored at the end (``\\Z``), so it holds exactly when its pattern matches
    the whole number; the mobile pattern, last, is the fullmatch's own. phonenumbers' patterns
    hold no backreference that the grouping could renumber.
    """
    test = f"(?=(?:{general})\\Z)"
    if earlier:
        test += "(?!(?:" + "|".join(f"(?:{pattern})" for pattern in earlier) + ")\\Z)"
    return re.compile(f"{test}(?:{mobile})")


def _fast_vietnamese(phone: str, region: str, wire: WireFormat) -> str | None:
    """The wire form of a plainly written valid Vietnamese mobile number; None: ask phonenumbers.

    Where it answers, the answer is the full path's (tests/test_phone.py compares the two over
    generated input): the same metadata, read without parsing. A number it does not accept
    (separators, another region, a landline, a retired prefix, anything invalid) takes the full
    path, which also says why a number is refused. phonenumbers' parse costs tens of
    microseconds, and a list send or the emulator sees each number once.
    """
    if region != "VN":
        return None
    plain = _VN_PLAIN.fullmatch(phone)
    if plain is None:
        return None
    rules = _vn_mobiles()
    if rules is None:
        return None
    head, nsn = plain.groups()
    test = rules.valid.get(len(nsn))
    if test is None:
        return None
    # Without a plus, phonenumbers reads a leading 84 as the country code only when the digits
    # are too long for a national number; otherwise they are a national number starting 84.
    if head == "84" and len(phone) <= rules.longest_number:
        return None
    if test.fullmatch(nsn) is None:
        return None
    return ("0" if wire is WireFormat.NATIONAL else "84") + nsn


# Normalization is a pure function and phonenumbers' parse and validation cost tens of
# microseconds: the numbers a sender writes to again and again (OTP, alerts) pay once. Refusals
# raise, so they are never cached.
@functools.lru_cache(maxsize=4096)
def _normalize_text(phone: str, region: str, wire: WireFormat) -> str:
    if not phone.strip():
        raise _Refused("empty")
    if any(ch.isalpha() for ch in phone):
        # phonenumbers would read letters as a keypad spelling (1-800-FLOWERS) or an extension.
        raise _Refused("contains letters")
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException as exc:
        raise _Refused(_parse_reason(exc, phone)) from None
    if number.extension:
        raise _Refused("has an extension")
    if not phonenumbers.is_valid_number(number):
        # Only a number invalid today is read in the old numbering, should a block be reused.
        number = _convert_retired(number)
    if not phonenumbers.is_valid_number(number):
        if _looks_like_short_code(number, phone):
            raise _Refused("not a mobile number", "short code")
        raise _Refused(_invalid_reason(number))
    kind = phonenumbers.number_type(number)
    if kind not in _MOBILE_TYPES:
        raise _Refused("not a mobile number", _TYPE_NAMES.get(kind, ""))
    if number.country_code == _VN and wire is WireFormat.NATIONAL:
        national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        return phonenumbers.normalize_digits_only(national)
    return phonenumbers.format_number(number, PhoneNumberFormat.E164).lstrip("+")


def _convert_retired(number: PhoneNumber) -> PhoneNumber:
    """The number with a retired 11-digit Vietnamese mobile prefix replaced by its successor."""
    if number.country_code != _VN:
        return number
    nsn = phonenumbers.national_significant_number(number)
    if len(nsn) != _RETIRED_NSN_LENGTH:
        return number
    successor = RETIRED_PREFIXES.get("0" + nsn[:3])
    if successor is None:
        return number
    return PhoneNumber(country_code=_VN, national_number=int(successor[1:] + nsn[3:]))


def _looks_like_short_code(number: PhoneNumber, written: str) -> bool:
    """A service number (113, 8122): libphonenumber knows emergency numbers, not SMS codes."""
    if shortnumberinfo.is_valid_short_number(number):
        return True
    digits = phonenumbers.normalize_digits_only(written)
    return "+" not in written and not digits.startswith("0") and len(digits) in _SHORT_CODE_DIGITS


def _invalid_reason(number: PhoneNumber) -> str:
    """Why a parsed number is not valid, in a few words."""
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible != ValidationResult.IS_POSSIBLE:
        return _POSSIBLE_REASONS.get(possible, "not a valid number")
    # A length the country allows but no number there looks like this: either a known mobile
    # prefix with a digit too many or too few (the common typo), or a prefix nobody uses.
    country = number.country_code or 0
    nsn = phonenumbers.national_significant_number(number)
    lengths = _mobile_lengths(country)
    if country == _VN and ("0" + nsn[:3]) in RETIRED_PREFIXES:
        lengths = (_RETIRED_NSN_LENGTH,)
    for length in lengths:
        if len(nsn) > length and _valid_mobile(country, nsn[:length]):
            return "too long"
        if len(nsn) < length and _valid_mobile(country, nsn.ljust(length, "0")):
            return "too short"
    return "unknown prefix"


def _mobile_lengths(country_code: int) -> tuple[int, ...]:
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return ()
    # A country whose mobile numbers are indistinguishable (NANP) has only the general lengths.
    for desc in (metadata.mobile, metadata.general_desc):
        lengths = tuple(n for n in desc.possible_length if n > 0) if desc else ()
        if lengths:
            return lengths
    return ()


def _valid_mobile(country_code: int, nsn: str) -> bool:
    candidate = _convert_retired(PhoneNumber(country_code=country_code, national_number=int(nsn)))
    return (
        phonenumbers.is_valid_number(candidate)
        and phonenumbers.number_type(candidate) in _MOBILE_TYPES
    )


def _parse_reason(exc: phonenumbers.NumberParseException, written: str) -> str:
    digits = len(phonenumbers.normalize_digits_only(written))
    if exc.error_type == phonenumbers.NumberParseException.NOT_A_NUMBER and 0 < digits < 3:
        # phonenumbers wants 3 digits before it calls a string a number: "0" is short, not junk
        return "too short"
    return _PARSE_REASONS.get(exc.error_type, "not a phone number")


def _check_region(region: str) -> str:
    code = region.upper() if isinstance(region, str) else ""
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidInputError(
            f"region {region!r} is not a known ISO 3166 region code", field="region", value=region
        )
    return code


def _check_wire(wire: WireFormat | str) -> WireFormat:
    if isinstance(wire, WireFormat):
        return wire
    try:
        return WireFormat(wire)
    except ValueError:
        choices = ", ".join(repr(w.value) for w in WireFormat)
        raise InvalidInputError(
            f"wire format {wire!r} is not one of {choices}", field="wire", value=wire
        ) from None


def _as_text(phone: object) -> str:
    return phone if isinstance(phone, str) else repr(phone)


def _shown(phone: object) -> str:
    if not isinstance(phone, str):
        return repr(phone)
    # A message quotes at most _SHOWN_CHARS of what was written; ``phone`` keeps it whole.
    return f'"{phone}"' if len(phone) <= _SHOWN_CHARS else f'"{phone[:_SHOWN_CHARS]}…"'


def _detail(phone: object, why: _Refused) -> str:
    return f"{_shown(phone)} is not a valid phone number: {why}"


def _error(phone: object, why: _Refused) -> InvalidPhoneNumberError:
    written = _as_text(phone)
    return InvalidPhoneNumberError(
        _detail(phone, why),
        phone=written,
        reason=why.reason,
        invalid=[(written, why.reason)],
    )
