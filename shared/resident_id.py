"""Resident ID numbers (居民身份证号码, GB 11643): check digit, birth date and sex.

python-stdnum's `cn.ric` does the ISO 7064 MOD 11-2 check and the date check; we add the sex
digit and the agreement of declared birth date and sex with the number.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import re
from functools import lru_cache

from stdnum import numdb
from stdnum.cn import ric
from stdnum.exceptions import InvalidComponent, ValidationError

from shared.errors import ValidationFailed

_FORMAT = re.compile(r"^\d{17}[\dX]$")


@dataclass(frozen=True)
class ResidentId:
    number: str
    birth_date: date
    sex: str  # "M" | "F"


def parse_resident_id(raw: str, *, field: str = "id_number", today: date | None = None) -> ResidentId:
    """Format, birth date and MOD 11-2 check digit with python-stdnum; the region must be a known code.

    We do not use `ric.validate` whole: it also demands that the region code already existed in
    the birth year, which refuses real residents (e.g. 431122 东安县 dates from 1995, and people born
    before then carry it because the code is where the ID was issued, not where they were born).
    """
    number = (raw or "").strip().upper()
    if not _FORMAT.match(number):
        raise ValidationFailed("ID_FORMAT", "身份证号码应为18位（最后一位可为X）", {"field": field})
    try:
        birth = ric.get_birth_date(number)
    except (InvalidComponent, ValidationError):
        raise ValidationFailed("ID_BIRTH_DATE", "身份证号码中的出生日期无效", {"field": field})
    if today is not None and birth > today:
        raise ValidationFailed("ID_BIRTH_DATE", "身份证号码中的出生日期无效", {"field": field})
    if ric.calc_check_digit(number) != number[-1]:
        raise ValidationFailed("ID_CHECKSUM", "身份证号码校验位错误", {"field": field})
    if not _known_region(number[:6]):
        raise ValidationFailed("ID_REGION", "身份证号码中的地区码无效", {"field": field})
    sex = "M" if int(number[16]) % 2 else "F"
    return ResidentId(number, birth, sex)


@lru_cache(maxsize=4096)
def _known_region(code: str) -> bool:
    """Any county-level code that has ever been assigned (python-stdnum's GB/T 2260 table)."""
    return any("county" in props for _part, props in numdb.get("cn/loc").info(code))


def county_name(code: str) -> str | None:
    """The names a county-level code has carried ("[2015-]武鸣区"), None when it is not one."""
    if code.endswith("00"):  # a prefecture's or province's code (431100 永州市), not a county's
        return None
    names = [props["county"] for _part, props in numdb.get("cn/loc").info(code) if "county" in props]
    return " ".join(names) if names else None


def check_declared(rid: ResidentId, birth_date: date | None, sex: str | None, *, field: str) -> None:
    """A declared birth date or sex must agree with the number (花名册 rows carry both)."""
    if birth_date is not None and birth_date != rid.birth_date:
        raise ValidationFailed("ID_BIRTH_MISMATCH", "出生日期与身份证号码不一致",
                               {"field": field, "declared": birth_date.isoformat()})
    if sex is not None and sex != rid.sex:
        raise ValidationFailed("ID_SEX_MISMATCH", "性别与身份证号码不一致", {"field": field, "declared": sex})
