"""Phone numbers: real-world tables per carrier block, retired prefixes, landlines, short codes and
foreign numbers; property tests for idempotence and spelling independence."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibo_soap import phone as phone_module
from fibo_soap.errors import FiboCodeError, InvalidInputError, InvalidPhoneNumberError
from fibo_soap.phone import RETIRED_PREFIXES, WireFormat, mask, normalize, normalize_many

# libphonenumber loads its metadata on first use; a deadline would time that, not the code.
PROPERTY = settings(max_examples=60, deadline=None)

# Mobile prefix blocks in use today (national form), by carrier. Where only part of a 3-digit
# block is allocated, the 4-digit sub-block is listed.
CURRENT_BLOCKS = [
    ("Viettel", "032"),
    ("Viettel", "033"),
    ("Viettel", "034"),
    ("Viettel", "035"),
    ("Viettel", "036"),
    ("Viettel", "037"),
    ("Viettel", "038"),
    ("Viettel", "039"),
    ("Viettel", "086"),
    ("Viettel", "096"),
    ("Viettel", "097"),
    ("Viettel", "098"),
    ("MobiFone", "070"),
    ("MobiFone", "076"),
    ("MobiFone", "077"),
    ("MobiFone", "078"),
    ("MobiFone", "079"),
    ("MobiFone", "0898"),
    ("MobiFone", "090"),
    ("MobiFone", "093"),
    ("VinaPhone", "081"),
    ("VinaPhone", "082"),
    ("VinaPhone", "083"),
    ("VinaPhone", "084"),
    ("VinaPhone", "085"),
    ("VinaPhone", "088"),
    ("VinaPhone", "091"),
    ("VinaPhone", "094"),
    ("Vietnamobile", "0522"),
    ("Vietnamobile", "056"),
    ("Vietnamobile", "058"),
    ("Vietnamobile", "092"),
    ("Gmobile", "059"),
    ("Gmobile", "0993"),
    ("Itel", "087"),
]

# The September 2018 conversion, written out independently of the module's table.
RETIRED = [
    ("Viettel", "0162", "032"),
    ("Viettel", "0163", "033"),
    ("Viettel", "0164", "034"),
    ("Viettel", "0165", "035"),
    ("Viettel", "0166", "036"),
    ("Viettel", "0167", "037"),
    ("Viettel", "0168", "038"),
    ("Viettel", "0169", "039"),
    ("MobiFone", "0120", "070"),
    ("MobiFone", "0121", "079"),
    ("MobiFone", "0122", "077"),
    ("MobiFone", "0126", "076"),
    ("MobiFone", "0128", "078"),
    ("VinaPhone", "0123", "083"),
    ("VinaPhone", "0124", "084"),
    ("VinaPhone", "0125", "085"),
    ("VinaPhone", "0127", "081"),
    ("VinaPhone", "0129", "082"),
    ("Vietnamobile", "0186", "056"),
    ("Vietnamobile", "0188", "058"),
    ("Gmobile", "0199", "059"),
]

LANDLINES = [
    "024 3825 1234",  # Hà Nội
    "028 3822 1234",  # TP Hồ Chí Minh
    "0236 3822 123",  # Đà Nẵng
    "0225 3842 123",  # Hải Phòng
    "0292 3820 123",  # Cần Thơ
    "+84 24 3825 1234",
    "842838221234",
]

NOT_FOR_SMS = [
    ("8122", "short code"),
    ("9029", "short code"),
    ("1080", "short code"),
    ("113", "short code"),  # police
    ("115", "short code"),  # ambulance
    ("1800 1234", "toll-free"),
    ("1800 123456", "toll-free"),
    ("1900 1234", "premium rate"),
    ("1900 123456", "premium rate"),
    ("0672 123 456", "VoIP"),
]

# (as written, region, wire form): foreign numbers go out as international digits, no plus.
FOREIGN = [
    ("+1 650 253 0000", "VN", "16502530000"),
    ("(650) 253-0000", "US", "16502530000"),
    ("+44 7911 123456", "VN", "447911123456"),
    ("07911 123456", "GB", "447911123456"),
    ("0044 7911 123456", "VN", "447911123456"),
    ("+65 8123 4567", "VN", "6581234567"),
    ("8123 4567", "SG", "6581234567"),
    ("+86 138 0013 8000", "VN", "8613800138000"),
    ("090-1234-5678", "JP", "819012345678"),
    ("+66 81 234 5678", "VN", "66812345678"),
    ("012 345 678", "KH", "85512345678"),
    ("06 12 34 56 78", "FR", "33612345678"),
    ("0412 345 678", "AU", "61412345678"),
]

SPELLINGS = [
    "0909128628",
    "+84 909 128 628",
    "84909128628",
    "0909.128.628",
    "0909-128-628",
    "090 912 86 28",
    "(+84) 909-128-628",
    "+84 (0) 909 128 628",
    "0084 909 128 628",
    " 0909128628\n",
    "０９０９１２８６２８",  # full-width digits, as some input methods type them
]

INVALID = [
    ("", "empty"),
    ("   ", "empty"),
    ("0909 12", "too short"),
    ("090912862", "too short"),
    ("0", "too short"),
    ("84", "too short"),
    ("0168912862", "too short"),  # a retired prefix, one digit missing
    ("09091286281", "too long"),
    ("016891286281", "too long"),
    ("0909128628 0912345678", "too long"),
    ("0551234567", "unknown prefix"),
    ("0201234567", "unknown prefix"),
    ("01301234567", "unknown prefix"),
    ("0909abc128", "contains letters"),
    ("hotline", "contains letters"),
    ("0909128628 ext 12", "contains letters"),
    ("0909128628#12", "has an extension"),
    ("+999 123 456", "unknown country code"),
    ("0909128628,0912345678", "not a phone number"),
    ("---", "not a phone number"),
]


def sample(prefix: str) -> str:
    """A 10-digit national number in the block ``prefix``."""
    return prefix + "1234567890"[: 10 - len(prefix)]


# -- tables ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("carrier", "prefix"), CURRENT_BLOCKS)
def test_current_carrier_blocks_are_accepted(carrier: str, prefix: str) -> None:
    number = sample(prefix)
    assert normalize(number) == number
    assert normalize(number, wire="international") == "84" + number[1:]
    assert normalize("+84 " + number[1:]) == number


@pytest.mark.parametrize(("carrier", "old", "new"), RETIRED)
def test_retired_prefixes_become_their_successor(carrier: str, old: str, new: str) -> None:
    subscriber = "9128628"
    current = new + subscriber
    assert normalize(old + subscriber) == current
    assert normalize(f"{old} {subscriber[:3]} {subscriber[3:]}") == current
    assert normalize("84" + old[1:] + subscriber) == current
    assert (
        normalize("+84 " + old[1:] + subscriber, wire=WireFormat.INTERNATIONAL)
        == "84" + (current[1:])
    )


def test_retired_table_is_the_2018_conversion() -> None:
    assert {old: new for _, old, new in RETIRED} == RETIRED_PREFIXES


def test_ten_digit_numbers_in_01x_blocks_are_not_converted() -> None:
    # 0121 with 10 digits in all is a block of today's numbering, not a retired 11-digit number.
    assert normalize("0121123456") == "0121123456"


@pytest.mark.parametrize("landline", LANDLINES)
def test_landlines_are_refused(landline: str) -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        normalize(landline)
    assert caught.value.reason == "not a mobile number"
    assert "landline" in str(caught.value)


@pytest.mark.parametrize(("number", "kind"), NOT_FOR_SMS)
def test_short_codes_and_service_numbers_are_refused(number: str, kind: str) -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        normalize(number)
    assert caught.value.reason == "not a mobile number"
    assert kind in caught.value.detail


@pytest.mark.parametrize(("written", "region", "wire"), FOREIGN)
def test_foreign_numbers_with_a_region(written: str, region: str, wire: str) -> None:
    assert normalize(written, region=region) == wire
    assert normalize(written, region=region, wire="international") == wire


def test_a_vietnamese_number_is_vietnamese_whatever_the_region() -> None:
    assert normalize("+84 909 128 628", region="US") == "0909128628"


def test_foreign_landline_is_refused() -> None:
    with pytest.raises(InvalidPhoneNumberError, match="not a mobile number"):
        normalize("+44 20 7946 0000")


@pytest.mark.parametrize("written", SPELLINGS)
def test_accepted_spellings(written: str) -> None:
    assert normalize(written) == "0909128628"
    assert normalize(written, wire="international") == "84909128628"


@pytest.mark.parametrize(("written", "reason"), INVALID)
def test_invalid_numbers_say_why(written: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        normalize(written)
    error = caught.value
    assert error.reason == reason
    assert error.phone == written
    assert error.invalid == ((written, reason),)
    assert str(error) == f'"{written}" is not a valid phone number: {reason}'


def test_error_is_raised_before_sending_and_fits_the_tree() -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        normalize("0909 12")
    error = caught.value
    assert isinstance(error, InvalidInputError)
    assert isinstance(error, ValueError)
    assert isinstance(error, FiboCodeError)
    assert error.field == "phone"
    assert error.code is None  # refused locally, not by FIBO


def test_the_region_decides_what_a_national_number_means() -> None:
    assert normalize("07911 123456", region="gb") == "447911123456"
    with pytest.raises(InvalidPhoneNumberError):
        normalize("0909128628", region="US")


@pytest.mark.parametrize("region", ["XX", "", "Vietnam"])
def test_unknown_region_is_a_configuration_error(region: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalize("0909128628", region=region)
    assert caught.value.field == "region"
    assert not isinstance(caught.value, InvalidPhoneNumberError)


def test_unknown_wire_format_is_a_configuration_error() -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalize("0909128628", wire="e164")
    assert caught.value.field == "wire"
    assert "'national'" in str(caught.value)


# -- batches -----------------------------------------------------------------------------------


def test_batch_normalizes_in_order_and_keeps_duplicates() -> None:
    phones = ["+84 909 128 628", "01689128628", "0909128628", "+44 7911 123456"]
    assert normalize_many(phones) == ["0909128628", "0389128628", "0909128628", "447911123456"]
    assert normalize_many(iter(phones), wire="international")[:2] == [
        "84909128628",
        "84389128628",
    ]
    assert normalize_many([]) == []


def test_batch_reports_every_invalid_number_at_once() -> None:
    phones = ["0909128628", "8122", "0909 12", "0912345678", "hotline", ""]
    with pytest.raises(InvalidPhoneNumberError) as caught:
        normalize_many(phones)
    error = caught.value
    assert error.invalid == (
        ("8122", "not a mobile number"),
        ("0909 12", "too short"),
        ("hotline", "contains letters"),
        ("", "empty"),
    )
    assert (error.phone, error.reason) == ("8122", "not a mobile number")
    assert str(error).startswith("4 phone numbers are not valid: ")
    for phone, reason in error.invalid:
        assert f'"{phone}": {reason}' in str(error)


def test_batch_with_one_invalid_number_reads_like_a_single_error() -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        normalize_many(["0909128628", "0909 12"])
    assert str(caught.value) == '"0909 12" is not a valid phone number: too short'


def test_batch_message_stays_short_but_invalid_lists_all() -> None:
    phones = [f"09{i:02d}" for i in range(25)]
    with pytest.raises(InvalidPhoneNumberError) as caught:
        normalize_many(phones)
    assert len(caught.value.invalid) == 25
    assert str(caught.value).endswith("; and 15 more")


def test_batch_refuses_a_single_string() -> None:
    with pytest.raises(TypeError):
        normalize_many("0909128628")


# -- masking -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("0909128628", "0909***628"),
        ("84909128628", "8490****628"),
        ("+84 909 128 628", "+84 90* *** 628"),
        ("447911123456", "4479*****456"),
        ("8122", "****"),
        ("0909 12", "**** **"),
        ("090912862", "*********"),
        ("", ""),
    ],
)
def test_mask(phone: str, masked: str) -> None:
    assert mask(phone) == masked


# -- properties --------------------------------------------------------------------------------

subscriber_digits = st.text(alphabet="0123456789", min_size=7, max_size=7)


@st.composite
def current_numbers(draw: st.DrawFn) -> str:
    """A valid national number in a block in use today."""
    _, prefix = draw(st.sampled_from(CURRENT_BLOCKS))
    digits = draw(
        st.text(alphabet="0123456789", min_size=10 - len(prefix), max_size=10 - len(prefix))
    )
    return prefix + digits


@st.composite
def retired_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """An 11-digit number with a retired prefix, and the national number it is today."""
    _, old, new = draw(st.sampled_from(RETIRED))
    digits = draw(subscriber_digits)
    return old + digits, new + digits


@st.composite
def spelled(draw: st.DrawFn, national: str) -> str:
    """``national`` (0 + 9 or 10 digits) written the ways people write it."""
    nsn = national[1:]
    head = draw(st.sampled_from(["0", "84", "+84", "+84 ", "0084 ", "(+84) ", "+84 (0) "]))
    separators = draw(
        st.lists(st.sampled_from(["", " ", ".", "-"]), min_size=len(nsn), max_size=len(nsn))
    )
    body = "".join(digit + sep for digit, sep in zip(nsn, separators, strict=True))
    trailing = draw(st.sampled_from(["", " ", "\n"]))
    return head + body.rstrip(" .-") + trailing


@PROPERTY
@given(number=current_numbers(), wire=st.sampled_from(list(WireFormat)))
def test_normalization_is_idempotent(number: str, wire: WireFormat) -> None:
    once = normalize(number, wire=wire)
    assert normalize(once, wire=wire) == once


@PROPERTY
@given(pair=retired_numbers(), wire=st.sampled_from(list(WireFormat)))
def test_normalization_of_retired_numbers_is_idempotent(
    pair: tuple[str, str], wire: WireFormat
) -> None:
    once = normalize(pair[0], wire=wire)
    assert normalize(once, wire=wire) == once


@PROPERTY
@given(data=st.data(), number=current_numbers())
def test_every_spelling_gives_the_same_wire_form(data: st.DataObject, number: str) -> None:
    written = data.draw(spelled(number))
    assert normalize(written) == number
    assert normalize(written, wire="international") == "84" + number[1:]


@PROPERTY
@given(data=st.data(), pair=retired_numbers())
def test_every_spelling_of_a_retired_number_gives_its_successor(
    data: st.DataObject, pair: tuple[str, str]
) -> None:
    old, new = pair
    assert normalize(data.draw(spelled(old))) == new


@pytest.mark.parametrize(("written", "region", "wire"), FOREIGN)
def test_foreign_wire_form_is_idempotent_under_its_country(
    written: str, region: str, wire: str
) -> None:
    # Digits without a plus are read in the region given: a foreign wire form normalizes to
    # itself under its own country's region, or with the plus put back.
    home = phonenumbers.region_code_for_number(phonenumbers.parse("+" + wire))
    assert home is not None
    assert normalize(wire, region=home) == wire
    assert normalize("+" + wire) == wire


@PROPERTY
@given(phone=st.text(max_size=20))
def test_normalize_returns_digits_or_raises_invalid_phone(phone: str) -> None:
    error: InvalidPhoneNumberError | None = None
    try:
        result = normalize(phone)
    except InvalidPhoneNumberError as exc:
        error, result = exc, ""
    if error is None:
        assert result.isascii()
        assert result.isdigit()
    else:
        assert error.phone == phone
        assert error.reason


@PROPERTY
@given(number=current_numbers())
def test_mask_hides_the_middle(number: str) -> None:
    masked = mask(number)
    assert masked[:4] == number[:4]
    assert masked[-3:] == number[-3:]
    assert masked[4:-3] == "*" * 3


def test_a_long_input_is_quoted_short_in_the_message() -> None:
    junk = "0909 128 628 " * 20
    with pytest.raises(InvalidPhoneNumberError) as caught:
        normalize(junk)
    assert caught.value.phone == junk
    assert len(str(caught.value)) < 100


# -- the fast path for plainly written Vietnamese numbers ---------------------------------------


def full_path(phone: str, wire: WireFormat) -> str | None:
    """What phonenumbers' full parse says: the wire form, or None when it refuses the number."""
    try:
        return phone_module._normalize_text.__wrapped__(phone, "VN", wire)
    except phone_module._Refused:
        return None


def assert_fast_path_agrees(phone: str) -> None:
    for wire in WireFormat:
        fast = phone_module._fast_vietnamese(phone, "VN", wire)
        if fast is not None:
            assert fast == full_path(phone, wire), (phone, wire)


def test_the_fast_path_answers_for_plain_numbers_in_every_block() -> None:
    for _, prefix in CURRENT_BLOCKS:
        national = sample(prefix)
        for written in (national, "84" + national[1:], "+84" + national[1:]):
            for wire in WireFormat:
                expected = national if wire is WireFormat.NATIONAL else "84" + national[1:]
                assert phone_module._fast_vietnamese(written, "VN", wire) == expected
                assert full_path(written, wire) == expected


def test_the_fast_path_leaves_the_rest_to_phonenumbers() -> None:
    for written in (
        "0909 128 628",  # separators
        "01689128628",  # a retired prefix
        "0241234567",  # a landline
        "+840909128628",  # a trunk 0 after the country code
        "841234567",  # a national number starting 84
        "0909128628x",
        "０９０９１２８６２８",  # fullwidth digits
    ):
        assert phone_module._fast_vietnamese(written, "VN", WireFormat.NATIONAL) is None
    assert phone_module._fast_vietnamese("0909128628", "US", WireFormat.NATIONAL) is None


def test_the_fast_path_agrees_with_phonenumbers_on_every_four_digit_block() -> None:
    # Validity and formatting in the VN metadata turn on the leading digits (at most four): every
    # four-digit head of a nine-digit national number, with two different tails.
    for head in range(1000, 10000):
        for tail in ("00000", "98765"):
            assert_fast_path_agrees(f"0{head}{tail}")


vietnamese_ish = st.builds(
    lambda head, digits: head + digits,
    st.sampled_from(["", "0", "00", "84", "+84", "+840", "840", "084", "+", "0084", "+85"]),
    st.text(alphabet="0123456789", min_size=0, max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(phone=st.one_of(vietnamese_ish, st.text(max_size=16), st.from_regex(r"\+?[0-9]{8,13}")))
def test_the_fast_path_agrees_with_phonenumbers(phone: str) -> None:
    assert_fast_path_agrees(phone)
