"""Normalization (CONTRACT section 4): comparable addresses and phones, validity, masking."""

import pytest

from orderwatch.events.inbound import Address
from orderwatch.normalize import (
    address_hash,
    is_valid_address,
    is_valid_phone,
    mask_phone,
    normalize_address,
    normalize_address_text,
    normalize_phone,
    phone_hash,
    redact_address,
)
from tests.factories import address


def _addr(**over: object) -> Address:
    return Address.model_validate(address(**over))


# --- normalized address ----------------------------------------------------------------------


def test_normalized_address_is_five_casefolded_parts_without_spaces_or_punctuation() -> None:
    addr = _addr(
        country="CN",
        province="Shang Hai",
        city="Shanghai",
        district="Huang-Pu",
        line1="No. 100, Nanjing E. Rd.",
    )
    assert normalize_address(addr) == "cn|shanghai|shanghai|huangpu|no100nanjingerd"


def test_missing_district_leaves_an_empty_part() -> None:
    assert normalize_address(_addr(district=None)) == "cn|shanghai|shanghai||100nanjingeastroad"


def test_casefold_is_unicode_not_just_ascii_lower() -> None:
    a = _addr(country="DE", province="Berlin", city="Berlin", line1="Große Straße 5")
    b = _addr(country="de", province="BERLIN", city="berlin", line1="GROSSE STRASSE 5")
    assert normalize_address(a) == normalize_address(b)
    assert normalize_address(a).endswith("|grossestrasse5")


def test_chinese_punctuation_and_full_width_spaces_are_removed() -> None:
    a = _addr(
        province="上海市", city="上海市", district="黄浦区", line1="南京东路（100号）　3楼，A座"
    )
    assert normalize_address(a) == "cn|上海市|上海市|黄浦区|南京东路100号3楼a座"


def test_full_width_forms_compare_equal_to_ascii() -> None:
    assert normalize_address(_addr(line1="１００ Ｎａｎｊｉｎｇ East Road")) == normalize_address(
        _addr(line1="100 nanjing east road")
    )


def test_whitespace_of_every_kind_and_zero_width_spaces_are_removed() -> None:
    weird = _addr(line1="100\tNanjing\u00a0East\u200bRoad\n")
    assert normalize_address(weird) == normalize_address(_addr(line1="100 Nanjing East Road"))


def test_different_streets_stay_different() -> None:
    assert normalize_address(_addr(line1="100 Nanjing East Road")) != normalize_address(
        _addr(line1="101 Nanjing East Road")
    )
    assert normalize_address(_addr(city="Suzhou")) != normalize_address(_addr())


def test_blacklist_text_form_normalizes_like_an_address() -> None:
    text = "CN | Shanghai | Shanghai | Huangpu | 100 Nanjing East Road."
    assert normalize_address_text(text) == normalize_address(_addr())
    assert normalize_address_text("CN|Shanghai") == "cn|shanghai|||"


def test_address_hash_is_short_stable_and_distinct() -> None:
    one = address_hash(normalize_address(_addr()))
    assert one == address_hash(normalize_address(_addr(line1="100  NANJING east road")))
    assert one != address_hash(normalize_address(_addr(line1="102 Nanjing East Road")))
    assert len(one) == 16 and int(one, 16) >= 0


def test_redacted_address_keeps_region_and_hash_only() -> None:
    red = redact_address(_addr())
    assert set(red) == {"country", "province", "city", "address_hash"}
    assert "Nanjing" not in str(red) and "Zhang" not in str(red) and "Huangpu" not in str(red)


# --- phones ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "13812345678",
        "+8613812345678",
        "+86 138 1234 5678",
        "138-1234-5678",
        "+86-138-1234-5678",
        "19912345678",
        "13012345678",
    ],
)
def test_valid_cn_mobiles(phone: str) -> None:
    assert is_valid_phone(phone, "CN")


@pytest.mark.parametrize(
    "phone",
    [
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "12812345678",  # second digit 2
        "10812345678",  # second digit 0
        "23812345678",  # does not start with 1
        "+8513812345678",  # wrong country code
        "008613812345678",  # only +86 is the prefix the contract names
        "(138)12345678",  # brackets are not ignored, only spaces and dashes
        "138.1234.5678",
        "１３８１２３４５６７８",  # full-width digits
        "",
        "+86",
    ],
)
def test_invalid_cn_mobiles(phone: str) -> None:
    assert not is_valid_phone(phone, "CN")


def test_a_plus86_number_is_judged_as_cn_whatever_the_country() -> None:
    assert is_valid_phone("+8613812345678", "US")
    assert not is_valid_phone("+86 2112345678", "US"), "a +86 landline is not a CN mobile"


def test_cn_country_is_case_insensitive_and_a_missing_phone_is_invalid() -> None:
    assert not is_valid_phone("+12025550100", "cn"), "CN orders need a CN mobile"
    assert not is_valid_phone(None, "CN")


@pytest.mark.parametrize(
    ("phone", "valid"),
    [
        ("+1234567", False),  # 7 digits
        ("+12345678", True),  # 8 digits
        ("+123456789012345", True),  # 15 digits
        ("+1234567890123456", False),  # 16 digits
        ("+1 202-555-0100", True),
        ("+44 20 7946 0958", True),
        ("12025550100", False),  # no +
        ("+1 (202) 555-0100", False),  # brackets are not ignored
        ("+1202555010a", False),
        ("++12025550100", False),
    ],
)
def test_e164_outside_cn(phone: str, valid: bool) -> None:
    assert is_valid_phone(phone, "US") is valid
    assert is_valid_phone(phone, None) is valid


def test_unicode_spaces_and_dashes_are_ignored_too() -> None:
    assert is_valid_phone("138\u00a01234\u20135678", "CN")


def test_one_cn_mobile_is_one_comparable_phone_however_written() -> None:
    forms = ["13812345678", "+86 138 1234 5678", "+86-138-1234-5678", "008613812345678"]
    assert {normalize_phone(p) for p in forms} == {"+8613812345678"}
    assert len({phone_hash(p) for p in forms}) == 1
    assert normalize_phone("13812345679") != normalize_phone("13812345678")


def test_other_phones_compare_without_spaces_and_dashes() -> None:
    assert normalize_phone("+1 202-555-0100") == "+12025550100"
    assert normalize_phone(None) == "" and normalize_phone("") == ""


def test_masked_phones_keep_the_last_four_digits_only() -> None:
    assert mask_phone("13812345678") == "*******5678"
    assert mask_phone("+86 138-1234-5678").endswith("5678")
    assert "1381234" not in mask_phone("+86 138-1234-5678").replace("*", "")
    assert mask_phone(None) == ""


# --- address validity --------------------------------------------------------------------------


def test_the_factory_address_is_valid() -> None:
    assert is_valid_address(_addr())


@pytest.mark.parametrize("part", ["country", "province", "city", "line1"])
def test_a_missing_or_blank_required_part_is_invalid(part: str) -> None:
    assert not is_valid_address(_addr(**{part: None}))
    assert not is_valid_address(_addr(**{part: " \t "}))


def test_district_and_postal_code_are_optional() -> None:
    assert is_valid_address(_addr(district=None, postal_code=None))


@pytest.mark.parametrize(
    ("line1", "valid"),
    [
        ("abcd", False),
        ("  abcd  ", False),
        ("abcde", True),
        (" 南京东路1 ", True),
        ("南京东路", False),
    ],
)
def test_line1_needs_five_characters_after_trimming(line1: str, valid: bool) -> None:
    assert is_valid_address(_addr(line1=line1)) is valid


@pytest.mark.parametrize(
    ("postal_code", "valid"),
    [
        ("200001", True),
        (" 200001 ", True),
        ("20001", False),
        ("2000011", False),
        ("20000A", False),
        ("200 001", False),
        ("２００００１", False),  # full-width digits are not the 6 digits a label printer needs
    ],
)
def test_cn_postal_code_when_given_is_six_digits(postal_code: str, valid: bool) -> None:
    assert is_valid_address(_addr(postal_code=postal_code)) is valid


def test_postal_codes_outside_cn_are_not_checked() -> None:
    uk = _addr(country="GB", province="England", city="London", postal_code="SW1A 1AA")
    assert is_valid_address(uk)
    assert not is_valid_address(_addr(country="cn", postal_code="SW1A 1AA"))
