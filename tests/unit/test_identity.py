"""Resident ID checks (GB 11643) — policies.md "Identity": 18 digits, MOD 11-2 check digit,
birth date and sex inside the number."""
from datetime import date

import pytest

from shared.resident_id import check_declared, parse_resident_id
from shared.errors import ValidationFailed
from tools.ids import make_id


def test_a_valid_number_gives_birth_date_and_sex():
    rid = parse_resident_id("11010519491231002X")
    assert rid.birth_date == date(1949, 12, 31)
    assert rid.sex == "F"  # 17th digit 2 is even


def test_lower_case_x_is_accepted_and_normalised():
    assert parse_resident_id("11010519491231002x").number == "11010519491231002X"


@pytest.mark.parametrize("number, code", [
    ("110105194912310021", "ID_CHECKSUM"),
    ("11010519491331002X", "ID_BIRTH_DATE"),
    ("1101051949123100", "ID_FORMAT"),
    ("11010519491231002Y", "ID_FORMAT"),
    ("110105491231002", "ID_FORMAT"),  # the old 15-digit form is not used for enrolment
])
def test_bad_numbers_each_get_their_own_code(number, code):
    with pytest.raises(ValidationFailed) as e:
        parse_resident_id(number)
    assert e.value.code == code
    assert e.value.message  # a zh-CN message for the township clerk


def test_unknown_region_code_is_refused():
    body = "99999919800506001"
    from stdnum.cn import ric
    number = body + ric.calc_check_digit(body + "0")
    with pytest.raises(ValidationFailed) as e:
        parse_resident_id(number)
    assert e.value.code == "ID_REGION"


def test_dongan_code_is_accepted_for_people_born_before_the_code_existed():
    # 431122 (东安县) was assigned in 1995; older residents carry it on their IDs all the same.
    assert parse_resident_id(make_id(date(1950, 1, 1), 7, "M")).birth_date == date(1950, 1, 1)


def test_declared_birth_date_and_sex_must_agree_with_the_number():
    rid = parse_resident_id(make_id(date(1980, 5, 6), 3, "F"))
    check_declared(rid, date(1980, 5, 6), "F", field="x")
    with pytest.raises(ValidationFailed) as e:
        check_declared(rid, date(1980, 5, 7), None, field="x")
    assert e.value.code == "ID_BIRTH_MISMATCH"
    with pytest.raises(ValidationFailed) as e:
        check_declared(rid, None, "M", field="x")
    assert e.value.code == "ID_SEX_MISMATCH"
