"""Message text: segment counts against an independent count, accent stripping over every
Vietnamese letter, and the checks before sending."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibo_soap.errors import InvalidInputError, MessageTooLongError
from fibo_soap.text import (
    GSM_BASIC,
    GSM_EXTENSION,
    VIETNAMESE_LETTERS,
    Accents,
    Encoding,
    Segments,
    check_text,
    prepare,
    segments,
    strip_accents,
)

PROPERTY = settings(max_examples=80, deadline=None)

# -- an independent description of the alphabets -----------------------------------------------

# Characters known to be one septet in GSM 03.38, spelled out here rather than taken from the
# module: ASCII minus the extension characters and the backtick, plus the non-ASCII ones.
GSM_ONE_SEPTET = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    " !\"#%&'()*+,-./:;<=>?@_$\n\r"
    "£¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà"
)
GSM_TWO_SEPTETS = "^{}\\[~]|€"
NOT_GSM = "`ÀÁâêôơưđĐ₫“”‘’…–—\t"  # backtick, Vietnamese letters, dong sign, typographic marks

# Vietnamese, built from its parts: 12 vowel bases x 6 tones, then đ; upper case by str.upper.
VOWEL_BASES = {
    "a": "a",
    "ă": "a",
    "â": "a",
    "e": "e",
    "ê": "e",
    "i": "i",
    "o": "o",
    "ô": "o",
    "ơ": "o",
    "u": "u",
    "ư": "u",
    "y": "y",
}
TONES = ["", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"]  # grave, acute, hook, tilde, dot
COMPOSED_LOWER = {
    unicodedata.normalize("NFC", base + tone): plain
    for base, plain in VOWEL_BASES.items()
    for tone in TONES
    if base + tone not in "aeiouy"
} | {"đ": "d"}
EXPECTED_ASCII = COMPOSED_LOWER | {
    ch.upper(): plain.upper() for ch, plain in COMPOSED_LOWER.items()
}
# Vietnamese letters that happen to be in the GSM default alphabet.
VIETNAMESE_IN_GSM = set("àèéìòùÉ")

vietnamese_letter = st.sampled_from(sorted(EXPECTED_ASCII))


def septet_stream(text: str) -> list[str]:
    """The septets a GSM-7 text is sent as: an extension character is escape + code."""
    out: list[str] = []
    for ch in text:
        if ch in GSM_TWO_SEPTETS:
            out.extend(["ESC", ch])
        else:
            out.append(ch)
    return out


def independent_count(text: str) -> tuple[Encoding, int, int]:
    """(encoding, units, parts) by cutting the encoded stream the way a sender does."""
    if all(ch in GSM_ONE_SEPTET or ch in GSM_TWO_SEPTETS for ch in text):
        stream = septet_stream(text)
        single, size = 160, 153
        # never end a part on an escape: its character would land in the next part
        splits_pair = [unit == "ESC" for unit in stream]
        encoding = Encoding.GSM7
    else:
        raw = text.encode("utf-16-be")
        units = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        single, size = 70, 67
        splits_pair = [0xD800 <= unit <= 0xDBFF for unit in units]  # never end on a high surrogate
        encoding = Encoding.UCS2
    total = len(splits_pair)
    if total <= single:
        return encoding, total, 1
    parts, start = 0, 0
    while start < total:
        end = min(start + size, total)
        if end < total and splits_pair[end - 1]:
            end -= 1
        parts += 1
        start = end
    return encoding, total, parts


# -- the tables --------------------------------------------------------------------------------


def test_gsm_tables() -> None:
    assert len(GSM_BASIC) == 128
    assert len(set(GSM_BASIC)) == 128
    assert GSM_BASIC.index("@") == 0x00
    assert GSM_BASIC.index("\x1b") == 0x1B
    assert GSM_BASIC.index("A") == 0x41
    assert GSM_BASIC.index("à") == 0x7F
    assert set(GSM_EXTENSION) == set(GSM_TWO_SEPTETS) | {"\f"}
    assert set(GSM_ONE_SEPTET) <= set(GSM_BASIC)
    assert not set(NOT_GSM) & (set(GSM_BASIC) | set(GSM_EXTENSION))


def test_vietnamese_letters_are_the_134_precomposed_forms() -> None:
    assert len(EXPECTED_ASCII) == 134
    assert len(VIETNAMESE_LETTERS) == 134
    assert set(VIETNAMESE_LETTERS) == set(EXPECTED_ASCII)
    assert all(unicodedata.is_normalized("NFC", ch) for ch in VIETNAMESE_LETTERS)


# -- segments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Segments(Encoding.GSM7, 0, 1, 160)),
        ("a" * 160, Segments(Encoding.GSM7, 160, 1, 160)),
        ("a" * 161, Segments(Encoding.GSM7, 161, 2, 153)),
        ("a" * 306, Segments(Encoding.GSM7, 306, 2, 153)),
        ("a" * 307, Segments(Encoding.GSM7, 307, 3, 153)),
        ("a" * 765, Segments(Encoding.GSM7, 765, 5, 153)),
        ("€" * 80, Segments(Encoding.GSM7, 160, 1, 160)),
        ("€" * 81, Segments(Encoding.GSM7, 162, 2, 153)),
        ("a" * 159 + "€", Segments(Encoding.GSM7, 161, 2, 153)),
        # 306 septets, yet 3 parts: the escape + € pair does not straddle the first cut
        ("a" * 152 + "€" + "a" * 152, Segments(Encoding.GSM7, 306, 3, 153)),
        ("Xin chào", Segments(Encoding.GSM7, 8, 1, 160)),  # à is in the GSM alphabet
        ("Xin chào quý khách", Segments(Encoding.UCS2, 18, 1, 70)),
        ("ă" * 70, Segments(Encoding.UCS2, 70, 1, 70)),
        ("ă" * 71, Segments(Encoding.UCS2, 71, 2, 67)),
        ("ă" * 134, Segments(Encoding.UCS2, 134, 2, 67)),
        ("ă" * 135, Segments(Encoding.UCS2, 135, 3, 67)),
        ("a" * 69 + "`", Segments(Encoding.UCS2, 70, 1, 70)),  # one backtick makes it all UCS-2
        ("a\tb", Segments(Encoding.UCS2, 3, 1, 70)),  # tab is not in the GSM alphabet
        ("😀" * 35, Segments(Encoding.UCS2, 70, 1, 70)),  # outside the BMP: two units each
        ("😀" * 36, Segments(Encoding.UCS2, 72, 2, 67)),
        # 134 units, yet 3 parts: the surrogate pair does not straddle the first cut
        ("a" * 66 + "😀" + "a" * 66, Segments(Encoding.UCS2, 134, 3, 67)),
        ("Tiếng Việt", Segments(Encoding.UCS2, 10, 1, 70)),
        (unicodedata.normalize("NFD", "Tiếng Việt"), Segments(Encoding.UCS2, 14, 1, 70)),
    ],
)
def test_segments_table(text: str, expected: Segments) -> None:
    assert segments(text) == expected


gsm_text = st.text(alphabet=GSM_ONE_SEPTET + GSM_TWO_SEPTETS, max_size=500)
long_gsm_text = st.builds(
    lambda head, tail: head + tail,
    st.text(alphabet="abc ", min_size=140, max_size=320),
    st.text(alphabet=GSM_TWO_SEPTETS + "xyz", max_size=200),
)
vietnamese_text = st.text(
    alphabet=st.sampled_from(sorted(EXPECTED_ASCII))
    | st.sampled_from(list("abcdeghiklmnopqrstuvxy .,!?0123456789")),
    max_size=400,
)
emoji_text = st.text(
    alphabet=st.sampled_from(list("aăđ "))
    | st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
    max_size=200,
)


@PROPERTY
@given(text=gsm_text | long_gsm_text)
def test_gsm_segments_agree_with_an_independent_count(text: str) -> None:
    result = segments(text)
    assert result.encoding is Encoding.GSM7
    assert (result.encoding, result.characters, result.parts) == independent_count(text)
    assert result.characters == len(text) + sum(ch in GSM_TWO_SEPTETS for ch in text)


@pytest.mark.parametrize("length", [0, 1, 70, 71, 134, 135, 160, 161, 306, 307, 459, 460, 766])
@pytest.mark.parametrize(
    "unit",
    [
        "a",  # GSM-7, one septet each
        "ê",  # UCS-2 within the BMP
        pytest.param("aê", id="mixed"),
    ],
)
def test_one_unit_texts_at_the_part_boundaries(unit: str, length: int) -> None:
    # Texts whose characters all cost one unit are counted from their length alone: the
    # boundaries of single and concatenated parts must fall where a sender cuts them.
    text = (unit * length)[:length]
    result = segments(text)
    assert (result.encoding, result.characters, result.parts) == independent_count(text)


@PROPERTY
@given(text=vietnamese_text | emoji_text)
def test_vietnamese_segments_agree_with_an_independent_count(text: str) -> None:
    result = segments(text)
    expected_encoding = (
        Encoding.GSM7
        if all(ch.isascii() or ch in VIETNAMESE_IN_GSM for ch in text)
        else Encoding.UCS2
    )
    assert result.encoding is expected_encoding
    assert (result.encoding, result.characters, result.parts) == independent_count(text)
    assert (
        result.per_part
        == {
            (Encoding.GSM7, True): 160,
            (Encoding.GSM7, False): 153,
            (Encoding.UCS2, True): 70,
            (Encoding.UCS2, False): 67,
        }[(result.encoding, result.parts == 1)]
    )


# -- strip_accents -----------------------------------------------------------------------------


@pytest.mark.parametrize(("letter", "plain"), sorted(EXPECTED_ASCII.items()))
def test_every_vietnamese_letter_becomes_its_ascii_base(letter: str, plain: str) -> None:
    assert strip_accents(letter) == plain
    assert strip_accents(unicodedata.normalize("NFD", letter)) == plain
    assert strip_accents(letter, all_scripts=True) == plain


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Tiếng Việt", "Tieng Viet"),
        ("Nguyễn Văn Đức", "Nguyen Van Duc"),
        ("ĐẶNG THỊ HỒNG NHUNG", "DANG THI HONG NHUNG"),
        ("Mã OTP của quý khách là 123456", "Ma OTP cua quy khach la 123456"),
        ("Đà Nẵng, Huế, Hải Phòng", "Da Nang, Hue, Hai Phong"),
        ("người ưu tiên", "nguoi uu tien"),
        ("giá 50.000₫ — “khuyến mãi”", "gia 50.000₫ — “khuyen mai”"),  # only letters change
        ("ê\u0301", "e"),  # half-composed: precomposed ê + combining acute
        ("Müller señor façade ø", "Müller señor façade ø"),  # not Vietnamese: left alone
        ("Ελληνικά, русский, 中文, 😀", "Ελληνικά, русский, 中文, 😀"),
        ("ŷ ǎ ā", "ŷ ǎ ā"),  # Vietnamese marks on letters Vietnamese does not have
        ("plain ASCII", "plain ASCII"),
        ("", ""),
    ],
)
def test_strip_accents_table(text: str, plain: str) -> None:
    assert strip_accents(text) == plain


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Müller señor façade Ångström", "Muller senor facade Angstrom"),
        ("Tiếng Việt ŷ ǎ ā ǚ", "Tieng Viet y a a u"),
        ("ø æ ß ł", "ø æ ß ł"),  # letters of their own, no combining mark to remove
        ("Ελληνικά й", "Ελληνικά й"),  # marks on Greek and Cyrillic letters stay
    ],
)
def test_strip_accents_all_scripts(text: str, plain: str) -> None:
    assert strip_accents(text, all_scripts=True) == plain


@PROPERTY
@given(
    text=st.text(alphabet=vietnamese_letter | st.sampled_from(list("abc XYZ.,")), max_size=80),
    form=st.sampled_from(["NFC", "NFD"]),
)
def test_strip_accents_makes_vietnamese_ascii(text: str, form: str) -> None:
    plain = strip_accents(unicodedata.normalize(form, text))  # type: ignore[arg-type]
    assert plain.isascii()
    assert len(plain) == len(text)
    assert plain == "".join(EXPECTED_ASCII.get(ch, ch) for ch in text)
    assert strip_accents(plain) == plain


@PROPERTY
@given(
    text=st.text(
        alphabet=st.characters(
            exclude_categories=("Mn", "Mc", "Me", "Cs"),
            exclude_characters="".join(EXPECTED_ASCII),
        ),
        max_size=40,
    )
)
def test_strip_accents_leaves_other_characters_alone(text: str) -> None:
    assert strip_accents(text) == text


# -- check_text and prepare --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "message is empty"),
        (" \n\t", "message is empty"),
        ("ab\x00c", "U+0000, at index 2"),
        ("\x1b[31mred", "U+001B, at index 0"),
        ("del\x7f", "U+007F, at index 3"),
        ("next\x85line", "U+0085, at index 4"),
        ("bad \ud800 half", "U+D800, at index 4"),
        ("end\ufffe", "U+FFFE, at index 3"),
        ("end\uffff", "U+FFFF, at index 3"),
        ("form\ffeed", "U+000C, at index 4"),
    ],
)
def test_check_text_refuses(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_text(text)
    assert fragment in str(caught.value)
    assert caught.value.field == "message"


def test_check_text_names_the_field_and_allows_line_breaks_and_tabs() -> None:
    check_text("line one\r\nline two\tend 😀")
    with pytest.raises(InvalidInputError, match="sender is empty") as caught:
        check_text("", field="sender")
    assert caught.value.field == "sender"


def test_prepare_keeps_text_by_default_and_composes_it() -> None:
    assert prepare("Tiếng Việt") == "Tiếng Việt"
    decomposed = unicodedata.normalize("NFD", "Tiếng Việt")
    assert prepare(decomposed) == "Tiếng Việt"
    assert prepare("cafe\u0301") == "café"  # composed, it is GSM-7


def test_prepare_strip() -> None:
    assert prepare("Mã OTP: 123456", accents="strip") == "Ma OTP: 123456"
    assert prepare("Mã OTP: 123456", accents=Accents.STRIP) == "Ma OTP: 123456"


def test_prepare_strip_if_shorter_strips_only_when_it_saves_parts() -> None:
    short = "Xin chào quý khách"  # one part either way: the accents stay
    assert prepare(short, accents="strip-if-shorter") == short
    long = "Cảm ơn quý khách đã sử dụng dịch vụ. " * 3  # 2 parts in UCS-2, 1 in GSM-7
    assert segments(long).parts == 2
    assert prepare(long, accents="strip-if-shorter") == strip_accents(long)
    mixed = "Tiếng Việt 😀 " * 6  # the emoji keeps it UCS-2: stripping saves nothing
    assert prepare(mixed, accents="strip-if-shorter") == mixed


def test_prepare_refuses_more_parts_than_allowed() -> None:
    with pytest.raises(MessageTooLongError) as caught:
        prepare("ă" * 336)  # 6 parts of 67
    error = caught.value
    assert isinstance(error, InvalidInputError)
    assert error.field == "message"
    assert "6 SMS parts" in error.detail
    assert "the limit is 5" in error.detail
    assert prepare("ă" * 335) == "ă" * 335  # exactly 5 parts
    assert prepare("a" * 765) == "a" * 765
    with pytest.raises(MessageTooLongError, match="2 SMS parts"):
        prepare("a" * 161, max_parts=1)


def test_prepare_counts_after_stripping() -> None:
    text = "Cảm ơn quý khách. " * 20  # 360 characters: 6 UCS-2 parts, 3 GSM-7 parts
    with pytest.raises(MessageTooLongError):
        prepare(text)
    assert prepare(text, accents="strip").isascii()
    assert prepare(text, accents="strip-if-shorter").isascii()


def test_prepare_checks_the_text_first() -> None:
    with pytest.raises(InvalidInputError, match="message is empty"):
        prepare("")
    with pytest.raises(InvalidInputError, match=r"U\+0007"):
        prepare("ring\a", accents="strip")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"accents": "remove"}, "accents"),
        ({"max_parts": 0}, "max_parts"),
        ({"max_parts": True}, "max_parts"),
    ],
)
def test_prepare_refuses_bad_options(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        prepare("hello", **options)  # type: ignore[arg-type]
    assert caught.value.field == field
