"""Resident ID numbers (居民身份证号码, GB 11643): check digit, birth date and sex.

python-stdnum's `cn.ric` does the ISO 7064 MOD 11-2 check and the date check; we add the sex
digit and the agreement of declared birth date and sex with the number.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from stdnum.cn import ric
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError

from shared.errors import ValidationFailed


@dataclass(frozen=True)
class ResidentId:
    number: str
    birth_date: date
    sex: str  # "M" | "F"


def parse_resident_id(raw: str, *, field: str = "id_number") -> ResidentId:
    number = (raw or "").strip().upper()
    try:
        ric.validate(number)
    except InvalidChecksum:
        raise ValidationFailed("ID_CHECKSUM", "身份证号码校验位错误", {"field": field})
    except InvalidComponent:
        raise ValidationFailed("ID_BIRTH_DATE", "身份证号码中的出生日期无效", {"field": field})
    except (InvalidLength, InvalidFormat, ValidationError):
        raise ValidationFailed("ID_FORMAT", "身份证号码应为18位（最后一位可为X）", {"field": field})
    if len(number) != 18:  # stdnum also accepts the old 15-digit form; enrolment uses 18 digits
        raise ValidationFailed("ID_FORMAT", "身份证号码应为18位（最后一位可为X）", {"field": field})
    sex = "M" if int(number[16]) % 2 else "F"
    return ResidentId(number, ric.get_birth_date(number), sex)


def check_declared(rid: ResidentId, birth_date: date | None, sex: str | None, *, field: str) -> None:
    """A declared birth date or sex must agree with the number (花名册 rows carry both)."""
    if birth_date is not None and birth_date != rid.birth_date:
        raise ValidationFailed("ID_BIRTH_MISMATCH", "出生日期与身份证号码不一致",
                               {"field": field, "declared": birth_date.isoformat()})
    if sex is not None and sex != rid.sex:
        raise ValidationFailed("ID_SEX_MISMATCH", "性别与身份证号码不一致", {"field": field, "declared": sex})
