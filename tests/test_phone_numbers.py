"""A driver's number never appears whole in a log: what is masked, and what is not."""

import pytest

from api.phone_numbers import E164, mask_phone, mask_phones_in


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("+14155550123", "+1415•••0123"),
        ("+442071838750", "+4420•••8750"),
        ("+3361234567", "+3361•••67"),
        ("+1234567", "+12•••67"),  # at least three digits stay hidden
        ("", "(none)"),
    ],
)
def test_a_number_keeps_only_its_ends(number, shown):
    assert mask_phone(number) == shown


def test_numbers_in_text_are_masked_with_or_without_plus():
    text = "to_number +14155550123 refused; retry 14155550123 later"
    assert mask_phones_in(text) == "to_number +1415•••0123 refused; retry 1415•••0123 later"


@pytest.mark.parametrize(
    "identifier",
    ["legacy_1234567", "cs_0123456789abcdef0123456789abcdef", "conv_01jx8k2m9q4r5s6t7v8w9x0y1z"],
)
def test_digits_inside_identifiers_stay_whole(identifier):
    assert mask_phones_in(f"call {identifier} done") == f"call {identifier} done"


@pytest.mark.parametrize("number", ["+14155550123\n", "14155550123", "+0123456789", "+١٢٣٤٥٦٧٨"])
def test_e164_accepts_only_plus_and_ascii_digits(number):
    assert E164.match(number) is None


@pytest.mark.parametrize("text", ["driver 1234567 called", "attempt 12345678 of", "port 5432"])
def test_short_digit_runs_without_plus_are_not_phone_numbers(text):
    assert mask_phones_in(text) == text


def test_a_short_number_with_plus_is_still_masked():
    assert mask_phones_in("to +1234567 now") == "to +12•••67 now"
