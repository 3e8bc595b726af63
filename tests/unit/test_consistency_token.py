"""The mid-year consistency token a caller hands back to payments' quote (shared/consistency.py)."""
import pytest

from shared.consistency import mid_year_token, parse_mid_year_token
from shared.errors import ValidationFailed


def test_a_token_reads_back_as_written():
    seen = parse_mid_year_token(mid_year_token(2020, "H1", "431122201901010011", 3))
    assert (seen.version, seen.year, seen.household_no) == (3, 2020, "H1")


@pytest.mark.parametrize("version, year", [("²", "2020"), ("3", "２０２０"), ("9" * 5000, "2020")])
def test_digits_that_are_not_ascii_or_too_long_are_a_clear_refusal(version, year):
    """'²'.isdigit() and '２'.isdigit() are True but int() of them raised (a 500 on POST /v1/quotes)."""
    with pytest.raises(ValidationFailed) as e:
        parse_mid_year_token(f"my1.{version}.ghijklmnopqrstuv.{year}.H1")
    assert e.value.code == "CONSISTENCY_TOKEN_INVALID"
