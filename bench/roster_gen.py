"""Synthetic county rosters (花名册) for tests and benchmarks, written as a stream.

Households of 1-6 members (mean ~2.9, as Dong'an's 578,500 persons in ~200,000 households),
spread over the townships in proportion to their tasks, villages from the places file.
"""
from __future__ import annotations

import csv
import random
import sys
from datetime import date, timedelta
from typing import IO, Iterator

from shared.config import ROOT
from shared.policy import PolicyYear, load_policy
from tools.ids import DONGAN_REGION

from services.registry.domain.roster import TEMPLATE_HEADERS

SIZES = (1, 2, 3, 4, 5, 6)
WEIGHTS = (14, 26, 25, 20, 10, 5)  # mean 2.9
RELATIONS = ("配偶", "子女", "子女", "父母", "孙子女")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"


def person_id(serial: int, birth: date, female: bool) -> str:
    """Unique per serial: the order code and the region's last digits carry it."""
    from stdnum.cn import ric
    order = (serial % 500) * 2 + (0 if female else 1)
    region = DONGAN_REGION
    birth = birth + timedelta(days=(serial // 500) % 7)  # spread collisions over days
    body = f"{region}{birth:%Y%m%d}{order:03d}"
    return body + ric.calc_check_digit(body + "0")


def rows(policy: PolicyYear, persons: int, seed: int = 1) -> Iterator[list[str]]:
    rng = random.Random(seed)
    towns = policy.townships
    weights = [t.task for t in towns]
    serial = 0
    hh = 0
    base = date(1935, 1, 1)
    while serial < persons:
        hh += 1
        t = rng.choices(towns, weights)[0]
        village = rng.choice(t.villages) if t.villages else "一村"
        size = min(rng.choices(SIZES, WEIGHTS)[0], persons - serial)
        phone = f"13{rng.randrange(10**9):09d}"
        surname = SURNAMES[rng.randrange(len(SURNAMES))]
        for i in range(size):
            female = rng.random() < 0.5
            # unique (birth day, order) per serial: day index from serial // 500
            birth = base + timedelta(days=(serial // 500) * 7 % (85 * 365))
            pid = person_id(serial, birth, female)
            rel = "户主" if i == 0 else RELATIONS[(i - 1) % len(RELATIONS)]
            yield [f"H{hh:07d}", t.name, village, surname + "某" + str(i), pid, "女" if female else "男",
                   "", rel, "农村居民", phone if i == 0 else ""]
            serial += 1


def write_csv(out: IO[str], policy: PolicyYear, persons: int, seed: int = 1) -> None:
    w = csv.writer(out)
    w.writerow(TEMPLATE_HEADERS)
    for r in rows(policy, persons, seed):
        w.writerow(r)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    write_csv(sys.stdout, load_policy(ROOT / "policies" / "dongan-2020.json"), n)
