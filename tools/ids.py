"""Valid synthetic resident ID numbers (GB 11643) for demos, tests and benchmarks."""
from __future__ import annotations

import random
from datetime import date, timedelta

from stdnum.cn import ric

DONGAN_REGION = "431122"  # 东安县


def make_id(birth: date, seq: int, sex: str = "M", region: str = DONGAN_REGION) -> str:
    """seq picks the 3-digit order code; its parity carries the sex as the standard says."""
    order = (seq * 2) % 1000
    if sex == "M":
        order = order + 1 if order % 2 == 0 else order
    order = min(order, 999 if sex == "M" else 998)
    body = f"{region}{birth:%Y%m%d}{order:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum expects a placeholder check digit


def random_person(rng: random.Random, seq: int) -> tuple[str, date, str]:
    birth = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 80 * 365))
    sex = rng.choice("MF")
    return make_id(birth, seq, sex), birth, sex
