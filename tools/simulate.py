"""A county's enrolment season played through the real suite at a small scale (issue 14, first slice).

    .venv/bin/python -m tools.simulate [--county 431122] [--scale 0.0005] [--seed 7] [--days N] [--out DIR]

Builds a synthetic county from the policy file's townships (the same seed gives the same county and
the same season), starts a suite of its own (own namespace, free ports, CLOCK_FILE), imports each
township's roster as CSV through registry's import, then moves the suite's clock to 10:00 of each
simulated day and pays that day's households as a bank gateway would (quote → order → signed
notification). At the end it waits for the event flow to settle and checks the suite against its
own ledger. Nothing inside the services is faked. docs/simulator.md says what is assumed.
"""
from __future__ import annotations

import argparse
import atexit
import csv
import io
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import requests

from shared.clock import SHANGHAI, FileClock
from shared.config import ROOT, env
from shared.policy import PolicyYear, load_policy

from .clients import GatewayClient, StaffClient
from .ids import make_id
from .suite import SERVICES, Suite, delete_bus, free_port_block, wait_quiet

# ---- assumptions (docs/simulator.md) ---------------------------------------------------------------
# Persons per hukou household (户籍户), 1..6. An assumption, not a figure from the county's documents:
# the 2020 census gives 2.62 persons per family household nationally with about a quarter living
# alone, but a hukou household keeps members who live and work elsewhere, so it is larger; mean 3.04.
HOUSEHOLD_SIZES = {1: 0.15, 2: 0.24, 3: 0.25, 4: 0.20, 5: 0.10, 6: 0.06}
# Channel mix of the households that pay (003 reports > 90 % online): mobile app, bank counter, POS.
CHANNELS = {"mobile_app": 0.80, "bank_counter": 0.10, "pos": 0.05, "village_cash": 0.05}
# village_cash: cash to the village's collector (村级代收), who signs for it with a receipt book's
# sheet and remits it; one collector gateway per township, for its villages
NEVER_PAY = (0.03, 0.07)  # per township, the share of households that never pay
# Residents per person of the task: a township's 目标任务 (the persons it must enrol, task_met = counted ≥
# task) is below its population (001 附件2 2.1 scores rates above 100 %: 超过1个百分点加1分), so a
# township whose households pay at 95-97 % meets its task or comes close. Our assumption.
POPULATION_PER_TASK = 1.04
BAD_KINDS = ("ID_CHECKSUM", "ID_BIRTH_DATE", "HEAD_REQUIRED", "UNKNOWN_VILLAGE")
# Hardship identities (困难群众), drawn per household (a dibao or registered-poor identity is granted to
# the household): share of households per category, our assumption. 特困供养人员 live alone, so
# extreme poverty is drawn among one-person households only. Only categories the policy year funds
# (an amount or full coverage) are drawn; their issuer is the category's first source system.
HARDSHIP = {"registered_poor": 0.040, "dibao_rural": 0.025, "dibao_urban": 0.005, "extreme_poverty": 0.030}
LATE_IDENTITY = 0.10  # of hardship households, the identity takes effect after the cutoff (先缴后补)
# Bank withholding (银行代扣, 002 六(二)): share of paying households (hardship ones excepted) that signed
# a three-party agreement at the opening; the county runs a batch on these days (month, day) and a
# retry batch of the insufficient balances a week later; the bank's result codes on the first try and
# on the retry (docs/withholding.md). A household whose withholding failed for good pays by mobile app
# three days after its town is told. All our assumption.
WITHHOLDING_SHARE = 0.08
WITHHOLDING_DAYS = ((10, 15), (11, 15), (12, 10))
WITHHOLDING_RETRY_DAYS = 7
WITHHOLDING_FIRST = {"00": 0.86, "51": 0.10, "62": 0.04}  # debited, insufficient balance, account closed
WITHHOLDING_RETRY = {"00": 0.75, "51": 0.25}
# The season's other cases (each its own random stream; at least one of each in a run, so a small run
# walks every path), all our assumption:
# - 职工医保: of the non-head members aged 18-59 of households without a hardship identity, the share
#   insured as employees (002 二: 已参加城镇职工基本医疗保险的不参加); the county imports their list
#   before the rosters, and the import leaves them out;
# - 多地重复参保: households (two or more members, no hardship identity) whose non-head member is also
#   listed, as a child, in a household of another township; the county resolves each case on the opening
#   day and the person stays where they live (either one, drawn);
# - identities revoked (退出低保、脱贫……) during the season, before the household pays: of the hardship
#   households whose identity was in force before the season; they are then charged in full;
# - newborns (新生儿, 001 五: 出生28天内办理) in households that paid: born one to five days after the
#   payment, registered (出生异动) on the next simulated day, approved for mid-year enrolment (中途参保)
#   and paid for by mobile app that day (补缴, docs/supplementary-payments.md);
# - reversals (冲正): bank-gateway payments the bank reverses on the next simulated day (15:00); payments
#   then sends the household to its township office (no second payment through the gateway).
EMPLOYEE_INSURED = 0.02
DUPLICATES = 0.005
REVOKED = 0.10
NEWBORNS = 0.01
REVERSALS = 0.005
HEADERS = ["户编号", "乡镇", "村（社区）", "姓名", "身份证号码", "性别", "出生日期", "与户主关系", "人员类别", "联系电话"]
SURNAMES = "蒋唐陈邓刘王李张周黄杨胡何罗谢曾彭吕蒋雷欧阳秦龙屈肖毛段"
GIVEN = "建国志强秀英桂花德明丽思远琪春生小红洋水军华平芳玉兰海燕文武成林静波涛敏杰"


@dataclass
class Person:
    name: str
    id_number: str
    sex: str  # M | F
    birth: str  # YYYY-MM-DD; "" when the row leaves it out
    relation: str
    excluded: bool = False  # insured as an employee (职工医保): left out by the import
    lost: bool = False  # a duplicate the county's resolution moved out of this household


@dataclass
class Household:
    no: str
    township: str
    village: str
    phone: str
    members: list[Person]
    bad: str | None = None  # the defect the import must refuse it for
    pays_on: str | None = None  # the window day it pays (ISO date); None: never
    channel: str | None = None
    hardship: str | None = None  # the members' hardship category (困难群众身份), if any
    identity_from: str | None = None  # the day it takes effect (ISO date)
    bank_results: list[str] = field(default_factory=list)  # withholding: the bank's code per attempt
    revoked_on: str | None = None  # the identity is revoked (effective) on this day, before the household pays
    newborn: Person | None = None  # a baby born after the household paid (中途参保)
    newborn_on: str | None = None  # the simulated day the birth is registered and paid for
    reverse_on: str | None = None  # the simulated day the bank reverses the household's payment (冲正)

    @property
    def covered(self) -> list[Person]:
        """The members the household pays for: the roster's, less employees and duplicates moved out."""
        return [m for m in self.members if not m.excluded and not m.lost]

    @property
    def persons(self) -> int:
        return len(self.covered)


@dataclass
class County:
    code: str
    name: str
    year: int
    scale: float
    seed: int
    opens: date
    closes: date
    standard_fen: int
    tasks: dict[str, int]  # township → synthetic task (printed task × scale, at least 1)
    households: list[Household] = field(default_factory=list)
    villages: dict[str, list[str]] = field(default_factory=dict)  # township → its villages
    subsidy_fen: dict[str, int] = field(default_factory=dict)  # category → subsidy per person (policy year)
    issuer: dict[str, str] = field(default_factory=dict)  # category → the source system that grants it
    new_after: date | None = None  # identities taking effect after this day: pay in full, then claim
    invented_places: bool = False  # the policy has no places file: the villages are the simulator's

    def good(self) -> list[Household]:
        return [h for h in self.households if h.bad is None]

    def late(self, h: Household) -> bool:
        """先缴后补 (001 六): the household's identity took effect after the cutoff."""
        return bool(h.hardship and self.new_after and date.fromisoformat(h.identity_from) > self.new_after)

    def holds(self, h: Household) -> bool:
        """The household holds its hardship identity when it pays (not revoked before)."""
        return bool(h.hardship) and not h.revoked_on

    def due_fen(self, h: Household) -> int:
        """What the household is charged (001 六: 税务部门将依据缴费人当前身份进行征收): the standard per
        member, less the subsidy of an identity in force before the cutoff (the simulator publishes
        those before the season opens); a later identity is charged in full and reimbursed, a revoked
        one in full."""
        if not self.holds(h) or self.late(h):
            return h.persons * self.standard_fen
        return h.persons * (self.standard_fen - self.subsidy_fen[h.hardship])


# ---- the synthetic county (pure: the seed decides everything) ----------------------------------------
def find_policy(county: str) -> PolicyYear:
    """The county's newest policy year in policies/ (Dong'an 2020 for 431122)."""
    found = []
    for path in sorted((ROOT / "policies").glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(raw, dict) and raw.get("county_code") == county:
            found.append((raw.get("year", 0), path))
    if not found:
        raise SystemExit(f"no policy file for county {county} in policies/")
    return load_policy(max(found)[1])


def build_county(policy: PolicyYear, scale: float, seed: int, bad_rate: float = 0.02) -> County:
    """Townships of the policy, task × scale persons each in households of HOUSEHOLD_SIZES, plus bad
    households at `bad_rate` of the good ones; then the season: who pays, on which day, by which channel."""
    if not (policy.window_opens and policy.window_closes and policy.standard_fen):
        raise SystemExit(f"{policy.source_file}: the simulator needs a payment window and an individual standard")
    rng = random.Random(f"county:{seed}")
    county = County(policy.county_code, policy.county, policy.year, scale, seed, policy.window_opens,
                    policy.window_closes, policy.standard_fen or 0,
                    {t.name: max(1, round(t.task * scale)) for t in policy.townships})
    used: set[str] = set()
    county.invented_places = not any(t.villages for t in policy.townships)
    for ti, t in enumerate(policy.townships):
        villages = list(t.villages) or invent_villages(t.name, t.task)
        county.villages[t.name] = villages
        left, i = max(1, round(t.task * scale * POPULATION_PER_TASK)), 0
        while left > 0:
            size = min(left, rng.choices(list(HOUSEHOLD_SIZES), list(HOUSEHOLD_SIZES.values()))[0])
            county.households.append(household(rng, used, county, f"SIM-{ti:02d}-{i:05d}", t.name, rng.choice(villages), size))
            left -= size
            i += 1
            if rng.random() < bad_rate:
                bad = household(rng, used, county, f"SIM-{ti:02d}-{i:05d}", t.name, rng.choice(villages),
                                rng.choice(list(HOUSEHOLD_SIZES)))
                spoil(rng, bad, county.code, rng.choice(BAD_KINDS))
                county.households.append(bad)
                i += 1
    hardship_rules(county, policy)
    assign_hardship(county, seed)
    plan_roster_cases(county, seed)
    plan_season(county, seed)
    plan_season_cases(county, seed)
    return county


def pick(rng: random.Random, pool: list, share: float) -> list:
    """`share` of `pool`, at least one when the pool has any (a small run still walks the path)."""
    return rng.sample(pool, min(len(pool), max(1, round(share * len(pool))))) if pool else []


def plan_roster_cases(county: County, seed: int) -> None:
    """Employees (职工医保) and cross-township duplicates (多地重复参保) in the rosters."""
    rng = random.Random(f"roster-cases:{seed}")
    plain = [h for h in county.good() if not h.hardship]
    ref = date(county.opens.year, county.opens.month, county.opens.day)
    workers = [m for h in plain for m in h.members[1:]
               if m.birth and 18 <= (ref - date.fromisoformat(m.birth)).days // 365 <= 59]
    for m in pick(rng, workers, EMPLOYEE_INSURED):
        m.excluded = True
    pairs = [h for h in plain if len(h.covered) >= 2]
    for a in pick(rng, pairs, DUPLICATES):
        others = [h for h in plain if h.township != a.township]
        if not others:
            break
        b = rng.choice(others)
        m = next(m for m in a.members[1:] if not m.excluded)
        twin = Person(m.name, m.id_number, m.sex, m.birth, "子女")
        b.members.append(twin)
        (m if rng.random() < 0.5 else twin).lost = True  # where the county's resolution moves them out of


def plan_season_cases(county: County, seed: int) -> None:
    """Revocations, newborns and reversals (who; the days follow from the simulated days, in play)."""
    rng = random.Random(f"season-cases:{seed}")
    late_enough = (county.opens + timedelta(days=20)).isoformat()
    early_enough = (county.closes - timedelta(days=30)).isoformat()
    holders = [h for h in county.good() if h.hardship and h.hardship != "registered_poor" and not county.late(h)
               and h.pays_on and h.pays_on >= late_enough]  # 建档立卡: 脱贫不脱政策, kept through the year
    for h in pick(rng, holders, REVOKED):
        h.revoked_on = h.pays_on  # at the latest; play moves it to the simulated day before the payment
    payers = [h for h in county.good() if h.pays_on and not h.hardship and h.pays_on <= early_enough
              and h.channel in ("mobile_app", "bank_counter", "pos")]
    used = {m.id_number for h in county.households for m in h.members}
    for h in pick(rng, payers, NEWBORNS):
        born = date.fromisoformat(h.pays_on) + timedelta(days=rng.randint(1, 5))
        sex = rng.choice("MF")
        while (id_number := make_id(born, rng.randrange(500), sex, region=county.code)) in used:
            pass
        used.add(id_number)
        h.newborn = Person(h.members[0].name[0] + rng.choice(GIVEN) + rng.choice(GIVEN), id_number, sex,
                           born.isoformat(), "子女")
    for h in pick(rng, [h for h in payers if not h.newborn], REVERSALS):
        h.reverse_on = h.pays_on  # planned; schedule_cases picks the day


def schedule_cases(county: County, days: list[date]) -> None:
    """The simulated days of the season's cases: a revocation on the last simulated day before the
    household pays, a newborn registered and paid for on the first simulated day after its birth (at
    most 28 days after: 001 五), a reversal on the first simulated day after the payment. A case
    with no such day does not happen in this run."""
    for h in county.good():
        if not h.pays_on:
            continue
        paid = pay_day(h, days)
        if h.revoked_on:
            before = [d for d in days if d < paid]
            h.revoked_on = before[-1].isoformat() if before else None
        if h.newborn:
            born = date.fromisoformat(h.newborn.birth)
            on = next((d for d in days if d > max(born, paid)), None)
            if on is None or (on - born).days > 28:
                h.newborn = None
            else:
                h.newborn_on = on.isoformat()
        if h.reverse_on:
            on = next((d for d in days if d > paid), None)
            h.reverse_on = on.isoformat() if on else None


NUMERALS = "一二三四五六七八九十"


def invent_villages(township: str, task: int) -> list[str]:
    """Villages of a township whose county's policy has no places file (Wuming 2018): one per
    ≈ 2,500 persons of its task, 3 to 30, named after the township (our invention; the run's catalogue
    carries them as its places file, so the import checks villages as in a county that loaded its own)."""
    base = township.rstrip("镇乡街道办") or township
    n = min(30, max(3, round(task / 2500)))
    def cn(k: int) -> str:  # 1..30 in Chinese numerals
        if k <= 10:
            return NUMERALS[k - 1]
        return ("" if k < 20 else NUMERALS[k // 10 - 1]) + "十" + (NUMERALS[k % 10 - 1] if k % 10 else "")
    return [f"{base}{cn(k)}村" for k in range(1, n + 1)]


def hardship_rules(county: County, policy: PolicyYear) -> None:
    """The categories the policy year funds, with their subsidy per person and issuer."""
    sec = (policy.raw or {}).get("subsidy") or {}
    county.new_after = date.fromisoformat(sec["new_hardship_after"]) if sec.get("new_hardship_after") else None
    for c in sec.get("categories") or []:
        if c["code"] in HARDSHIP and c.get("sources") and (c.get("full_coverage") or c.get("subsidy_fen") is not None):
            county.subsidy_fen[c["code"]] = county.standard_fen if c.get("full_coverage") else c["subsidy_fen"]
            county.issuer[c["code"]] = c["sources"][0]


def assign_hardship(county: County, seed: int) -> None:
    """Which households hold a hardship identity, which category, and from when (its own random
    stream, so the roster and the rest of the season do not change with these shares)."""
    rng = random.Random(f"hardship:{seed}")
    cats = [c for c in HARDSHIP if c in county.subsidy_fen]
    for h in county.good():
        draw, pick = rng.random(), None
        for c in cats:
            if c == "extreme_poverty" and h.persons != 1:
                continue
            if draw < HARDSHIP[c]:
                pick = c
                break
            draw -= HARDSHIP[c]
        if pick is None:
            continue
        h.hardship = pick
        if county.new_after and rng.random() < LATE_IDENTITY:  # granted during the season
            span = (county.closes - county.new_after).days - 5
            h.identity_from = (county.new_after + timedelta(days=1 + rng.randrange(max(span, 1)))).isoformat()
        else:
            h.identity_from = (date(county.opens.year - 1, 1, 1) + timedelta(days=rng.randrange(600))).isoformat()
            if county.new_after:
                h.identity_from = min(h.identity_from, county.new_after.isoformat())
    if "registered_poor" in county.subsidy_fen:  # every township of the county has 建档立卡 households (scored by 2.3)
        for t in county.tasks:
            mine = [h for h in county.good() if h.township == t]
            if mine and not any(h.hardship == "registered_poor" for h in mine):
                h = next((h for h in mine if not h.hardship), mine[0])
                h.hardship = "registered_poor"
                h.identity_from = (date(county.opens.year - 1, 1, 1) + timedelta(days=rng.randrange(270))).isoformat()


def household(rng: random.Random, used: set[str], county: County, no: str, township: str, village: str,
              size: int) -> Household:
    surname = rng.choice(SURNAMES)
    head_birth = date(1940, 1, 1) + timedelta(days=rng.randrange(55 * 365))
    head_sex = "M" if rng.random() < 0.8 else "F"
    people = [("户主", head_birth, head_sex)]
    if size >= 2 and rng.random() < 0.85:
        people.append(("配偶", clamp(head_birth + timedelta(days=rng.randrange(-6 * 365, 6 * 365))),
                       "F" if head_sex == "M" else "M"))
    if size >= 5 and rng.random() < 0.5:
        people.append(("父母", clamp(head_birth - timedelta(days=rng.randrange(20 * 365, 35 * 365))), rng.choice("MF")))
    while len(people) < size:
        rel = "孙子女" if len(people) == 5 and head_birth.year < 1965 else "子女"
        gap = (40, 60) if rel == "孙子女" else (20, 40)
        people.append((rel, clamp(head_birth + timedelta(days=rng.randrange(gap[0] * 365, gap[1] * 365))), rng.choice("MF")))
    members = []
    for rel, birth, sex in people:
        while True:
            id_number = make_id(birth, rng.randrange(500), sex, region=county.code)
            if id_number not in used:
                used.add(id_number)
                break
            birth += timedelta(days=1)
        name = (surname if rel in ("户主", "子女", "孙子女") else rng.choice(SURNAMES)) + rng.choice(GIVEN) + rng.choice(GIVEN)
        members.append(Person(name, id_number, sex, birth.isoformat(), rel))
    return Household(no, township, village, f"13{rng.randrange(10**9):09d}", members)


def clamp(d: date) -> date:
    """Nobody in the roster is born after mid-2019 (newborns are mid-year cases, not this slice's)."""
    return min(max(d, date(1925, 1, 1)), date(2019, 6, 30))


def spoil(rng: random.Random, h: Household, region: str, kind: str) -> None:
    """Make the household one the import must refuse whole (docs/roster.md's problem codes)."""
    h.bad = kind
    m = rng.choice(h.members)
    if kind == "ID_CHECKSUM":
        last = m.id_number[-1]
        m.id_number = m.id_number[:-1] + ("0" if last != "0" else "1")
    elif kind == "ID_BIRTH_DATE":  # 30 February, with a correct check digit
        from stdnum.cn import ric
        body = f"{region}19900230{rng.randrange(100, 999):03d}"
        m.id_number, m.birth = body + ric.calc_check_digit(body + "0"), ""
    elif kind == "HEAD_REQUIRED":
        h.members[0].relation = "其他"
    elif kind == "UNKNOWN_VILLAGE":
        h.village = "无此村"


def arrival_weights(rng: random.Random, days: int) -> list[float]:
    """A township's pace over the window: an early wave after the opening, a flat middle and the
    late-December rush (the documents' last-days push), each township with its own mix."""
    early, base, rush = rng.uniform(0.5, 2.0), rng.uniform(0.2, 0.8), rng.uniform(3.0, 8.0)
    e_tau, r_tau = rng.uniform(8, 20), rng.uniform(5, 18)
    return [early * math.exp(-d / e_tau) + base + rush * math.exp(-(days - 1 - d) / r_tau) for d in range(days)]


def plan_season(county: County, seed: int) -> None:
    rng = random.Random(f"season:{seed}")
    n_days = (county.closes - county.opens).days + 1
    by_township: dict[str, list[Household]] = defaultdict(list)
    for h in county.good():
        by_township[h.township].append(h)
    for township in county.tasks:
        weights, never = arrival_weights(rng, n_days), rng.uniform(*NEVER_PAY)
        for h in by_township[township]:
            if rng.random() < never and not h.hardship:  # 困难群众 must all be enrolled (001 六: 必须确保100%参保)
                continue
            day = rng.choices(range(n_days), weights)[0]
            h.pays_on = (county.opens + timedelta(days=day)).isoformat()
            h.channel = rng.choices(list(CHANNELS), list(CHANNELS.values()))[0]
    plan_withholding(county, seed)


def plan_withholding(county: County, seed: int) -> None:
    """Which paying households pay by bank withholding and what the bank answers each attempt (its
    own random stream: the rest of the season does not change with these shares)."""
    rng = random.Random(f"withholding:{seed}")
    draw = lambda table: rng.choices(list(table), list(table.values()))[0]  # noqa: E731
    for h in county.good():
        if h.pays_on and not h.hardship and rng.random() < WITHHOLDING_SHARE:
            h.channel = "withholding"
            h.bank_results = [draw(WITHHOLDING_FIRST)]
            if h.bank_results[0] == "51":
                h.bank_results.append(draw(WITHHOLDING_RETRY))


def collector_id(county: County, township: str) -> str:
    return f"collector-{list(county.tasks).index(township):02d}"


def sim_days(county: County, days: int | None) -> list[date]:
    """Every window day, or `days` of them spread evenly (first and last included)."""
    n = (county.closes - county.opens).days + 1
    if not days or days >= n:
        return [county.opens + timedelta(days=d) for d in range(n)]
    days = max(days, 2)
    return sorted({county.opens + timedelta(days=round(k * (n - 1) / (days - 1))) for k in range(days)})


def pay_day(h: Household, days: list[date]) -> date:
    """A household pays on the first simulated day on or after its own day."""
    want = date.fromisoformat(h.pays_on)
    return next(d for d in days if d >= want)


def roster_csv(households: list[Household]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADERS)
    for h in households:
        for m in h.members:
            w.writerow([h.no, h.township, h.village, m.name, m.id_number, "男" if m.sex == "M" else "女", m.birth,
                        m.relation, "", h.phone if m.relation == "户主" or m is h.members[0] else ""])
    return out.getvalue()


def write_rosters(county: County, folder: Path) -> dict[str, Path]:
    """One CSV per township, as its staff would upload it."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, township in enumerate(county.tasks):
        path = folder / f"{i:02d}-{township}.csv"
        path.write_text(roster_csv([h for h in county.households if h.township == township]), encoding="utf-8")
        paths[township] = path
    return paths


# ---- the suite -----------------------------------------------------------------------------------------
def scaled_catalogue(county: County, policy_path: Path, folder: Path) -> Path:
    """The policy catalogue the run's suite loads: every file of policies/ as shipped, except the
    simulated county-year, whose township tasks are the synthetic ones (printed task × scale), so
    scoring's rates, ranks, scores and work funds are those of the county the simulator made.
    Returns the simulated year's file."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in [f for folder in dict.fromkeys([ROOT / "policies", policy_path.parent]) for f in folder.iterdir()]:
        if f.is_file():
            shutil.copy(f, folder / f.name)
    raw = json.loads(policy_path.read_text(encoding="utf-8"))
    for t in raw["townships"]:
        t["task"] = county.tasks[t["name"]]
    raw["declared_task_total"] = sum(county.tasks.values())
    if county.invented_places:  # the county's places as the run loads them (乡镇,村（社区）)
        places = folder / f"{policy_path.stem}-villages-simulated.csv"
        places.write_text("乡镇,村（社区）\n" + "".join(f"{t},{v}\n" for t, vs in county.villages.items() for v in vs),
                          encoding="utf-8")
        raw["places_file"] = places.name
    raw["task_table_rule"] = f"模拟：各乡镇任务 = 印刷任务 × {county.scale}（至少 1 人）。" + raw.get("task_table_rule", "")
    path = folder / policy_path.name
    path.write_text(json.dumps(raw, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def start_suite(county: County, clock_file: Path, web_workers: int, policy_file: Path | None = None) -> Suite:
    """A suite of the simulator's own: namespace, databases, free ports, the file clock, the
    simulated county's catalogue."""
    base = free_port_block()
    suite_cls = type("SimSuite", (Suite,), {"COUNTY": county.code})  # the staff tokens name this county
    policy_env = {"POLICY_DIR": str(policy_file.parent), "POLICY_FILE": str(policy_file)} if policy_file else {}
    suite_cls.GATEWAYS = {**Suite.GATEWAYS, **{  # the township's village collector (村级代收员) for its villages
        collector_id(county, t): ("village_collector", ["village_cash"], [], [f"{t}/{v}" for v in villages])
        for t, villages in county.villages.items()}}
    s = suite_cls(namespace="sim" + uuid.uuid4().hex[:8], web_base_port=base, worker_base_port=base + 10,
                  extra_env={"CLOCK_FILE": str(clock_file), "CLOCK_NOW": "", "LOG_LEVEL": "WARNING",
                             "SCORES_CACHE_S": "0", "SUITE_COUNTIES": county.code, **policy_env},
                  web_workers=web_workers)
    atexit.register(s.stop)
    s.start()
    return s


def drop_suite_data(s: Suite) -> None:
    """Remove the run's databases, queues and secrets (the report in --out stays)."""
    from pymongo import MongoClient
    client = MongoClient(env("MONGO_URL", "mongodb://127.0.0.1:27217/"))
    for name in client.list_database_names():
        if name.startswith(s.namespace + "_"):
            client.drop_database(name)
    client.close()
    delete_bus(env("AMQP_URL", ""), s.namespace)
    for f in (s.var / "secrets").glob(f"{s.namespace}.*"):
        f.unlink()


class Clock:
    """The simulator's hold on the suite's clock (CLOCK_FILE)."""

    def __init__(self, path: Path):
        self.path, self.at = path, None

    def move(self, at: datetime) -> None:
        FileClock.write(str(self.path), at)
        self.at = at
        time.sleep(0.12)  # every process re-reads the file within 0.05 s

    def now(self) -> datetime:
        return self.at


def staff_client(url: str, token: str) -> StaffClient:
    """Staff requests wait up to a minute: at county size the store is busy with the season's events."""
    return StaffClient(url, token, timeout=60)


# ---- playing the season ----------------------------------------------------------------------------------
def import_rosters(county: County, s: Suite, staff: StaffClient, paths: dict[str, Path], timeout: float = 300) -> dict:
    jobs = {}
    for township, path in paths.items():
        r = staff.http.post(f"{staff.base_url}/v1/counties/{county.code}/imports?year={county.year}",
                            files={"file": (path.name, path.read_bytes(), "text/csv")}, timeout=30)
        r.raise_for_status()
        jobs[township] = r.json()["import_id"]
    deadline, done = time.monotonic() + timeout, {}
    while len(done) < len(jobs):
        for township, iid in jobs.items():
            if township not in done:
                doc = staff.get(f"/v1/counties/{county.code}/imports/{iid}").json()
                if doc["status"] in ("done", "failed"):
                    done[township] = doc
        if time.monotonic() > deadline:
            raise TimeoutError(f"imports not finished after {timeout}s: {set(jobs) - set(done)}")
        time.sleep(0.3)
    return done


def exclude_employees(county: County, staff: StaffClient) -> int:
    """County staff import the employee-insurance list (职工医保参保名单) before the rosters."""
    ids = [m.id_number for h in county.good() for m in h.members if m.excluded]
    for i in range(0, len(ids), 10_000):
        staff.post(f"/v1/counties/{county.code}/exclusions",
                   {"year": county.year, "id_numbers": ids[i:i + 10_000], "source": "模拟：社保局职工医保参保名单"}
                   ).raise_for_status()
    return len(ids)


def resolve_duplicates(county: County, staff: StaffClient) -> list[dict]:
    """County staff resolve each cross-township case the import opened (多地重复参保): the person
    stays in the household the simulator says they live in. Returns the cases as resolved."""
    homes: dict[tuple[str, str], str] = {}  # (household, household) → the one that keeps the person
    ids: dict[tuple[str, str], str] = {}
    by_id: dict[str, list[tuple[Household, Person]]] = defaultdict(list)
    for h in county.good():
        for m in h.members:
            by_id[m.id_number].append((h, m))
    for id_number, held in by_id.items():
        if len(held) == 2:
            pair = tuple(sorted(h.no for h, _ in held))
            homes[pair] = next(h.no for h, m in held if not m.lost)
            ids[pair] = id_number
    cases = staff.get(f"/v1/counties/{county.code}/duplicates", params={"status": "open"}).json().get("duplicates", [])
    out = []
    for case in cases:
        pair = tuple(sorted([case["kept"]["household_no"], *(o["household_no"] for o in case["others"])]))
        if pair not in homes:
            continue
        home = homes[pair]
        body = {"id_number": ids[pair], "note": "模拟：本人常住户保留，另一户移出",
                **({"keep": "current"} if case["kept"]["household_no"] == home else {"keep": "other", "household_no": home})}
        r = staff.post(f"/v1/counties/{county.code}/duplicates/{county.year}/resolution", body)
        r.raise_for_status()
        out.append({**r.json(), "home": home, "pair": list(pair)})
    return out


def identity_updates(county: County, households: list[Household], namespace: str, action: str = "grant") -> list[dict]:
    """docs/identity-feed.md's messages granting each member of these households its identity (or
    revoking it, on the household's `revoked_on`)."""
    on = (lambda h: h.identity_from) if action == "grant" else (lambda h: h.revoked_on)
    return [{"county": county.code, "id_number": m.id_number, "category": h.hardship, "action": action,
             "effective_date": on(h), "source_system": county.issuer[h.hardship],
             "source_ref": f"{namespace}:{h.no}:{i}" + ("" if action == "grant" else f":{action}")}
            for h in households for i, m in enumerate(h.covered)]


def publish_identities(county: County, s: Suite, households: list[Household], action: str = "grant") -> int:
    """Publish the identities over RabbitMQ, each issuer as its own broker user (as the departments'
    systems do); returns how many updates went out."""
    from .clients import IdentityFeedClient
    amqp = env("AMQP_URL", "amqp://127.0.0.1:5672/%2F")
    by_issuer: dict[str, list[dict]] = defaultdict(list)
    for u in identity_updates(county, households, s.namespace, action):
        by_issuer[u["source_system"]].append(u)
    for issuer, updates in by_issuer.items():
        IdentityFeedClient(amqp, issuer, s.namespace, ROOT / "var" / "secrets").publish(updates)
    return sum(len(v) for v in by_issuer.values())


def coverage(county: County, s: Suite, token: str) -> dict:
    return requests.get(f"{s.url('subsidy')}/v1/counties/{county.code}/coverage/{county.year}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=10).json()


def wait_for_identities(county: County, s: Suite, token: str, persons: int, timeout: float) -> float:
    """Until subsidy counts `persons` hardship persons (its feed applied them); returns the wait."""
    t0 = time.monotonic()
    while coverage(county, s, token).get("hardship_persons", 0) < persons:
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"subsidy did not count {persons} hardship persons within {timeout}s")
        time.sleep(0.3)
    return time.monotonic() - t0


def pay(county: County, gw: GatewayClient, h: Household, clock: Clock) -> dict:
    """Quote → order → signed notification, as the gateway does; the ledger row of what it paid."""
    due = county.due_fen(h)
    deadline = time.monotonic() + 60
    while True:  # the import's registered events and the identities' entitlements reach payments asynchronously
        q = gw.quote(h.no, county.year)
        if (q.status_code == 200 and q.json()["total_fen"] == due) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    row = {"household_no": h.no, "township": h.township, "village": h.village, "persons": h.persons, "kind": "payment",
           "channel": h.channel, "paid_at": clock.now().isoformat(), "quote_status": q.status_code,
           "due_fen": due, "hardship": h.hardship or ""}
    if q.status_code != 200:
        return {**row, "error": q.text[:300]}
    row["quoted_fen"] = q.json()["total_fen"]
    o = gw.order(h.no, county.year, channel=h.channel)
    if o.status_code not in (200, 201):
        return {**row, "error": o.text[:300]}
    order = o.json()
    txn = uuid.uuid4().hex[:20]
    proof = {"bank_counter": {"branch": "东安支行", "voucher_no": txn[:12]},
             "pos": {"terminal_id": "T" + txn[:8], "slip_no": txn[8:16]},
             "village_cash": {"collector_id": collector_id(county, h.township), "collector_name": f"{h.village}代收员",
                              "receipt_book_no": f"湘{int(txn[:6], 16) % 10**7:07d}", "receipt_sheet_no": txn[6:8]},
             }.get(h.channel)
    ack = (gw.notify_with_proof(order["order_no"], order["amount_fen"], proof, transaction_id=txn, paid_at=clock.now())
           if proof else gw.notify(order["order_no"], order["amount_fen"], transaction_id=txn, paid_at=clock.now()))
    return {**row, **acknowledged(order, txn, ack)}


def acknowledged(order: dict, txn: str, ack: requests.Response) -> dict:
    """The ledger's record of a notification: the order paid, the gateway's transaction, what payments answered."""
    body = ack.json() if ack.headers.get("Content-Type", "").startswith("application/json") else {}
    return {"order_no": order["order_no"], "amount_fen": order["amount_fen"], "transaction_id": txn,
            "ack_status": ack.status_code, "ack_code": body.get("code"), "duplicate": bool(body.get("duplicate")),
            "receipt_no": body.get("receipt_no")}


BANK_MESSAGES = {"51": "余额不足", "62": "账户已销户", "96": "系统故障"}


class Withholding:
    """The county's withholding round as its staff and the bank play it (docs/withholding.md):
    agreements signed at the opening, one batch on the first simulated day on or after
    WITHHOLDING_DAYS[0], a retry batch of the insufficient balances WITHHOLDING_RETRY_DAYS later, the
    bank's signed result files. A household whose withholding failed for good pays by mobile app
    three days later (when a simulated day is left)."""

    def __init__(self, county: County, s: Suite, token: str, bank: GatewayClient, bank_id: str, clock: Clock,
                 days: list[date]):
        self.county, self.bank, self.bank_id, self.clock = county, bank, bank_id, clock
        self.staff = staff_client(s.url("payments"), token)
        self.households = {h.no: h for h in county.good() if h.channel == "withholding"}
        first = date(county.opens.year, *WITHHOLDING_DAYS[0])
        self.batch_on = next((d for d in days if d >= first), None)
        self.retry_on = next((d for d in days if self.batch_on and d >= self.batch_on + timedelta(days=WITHHOLDING_RETRY_DAYS)), None)
        self.batches: list[dict] = []  # {batch_no, attempt, expected: {no: code}, got: [household_no...]}
        self.fallback: list[Household] = []  # failed for good: they pay by themselves

    def sign(self) -> None:
        """Township staff register each three-party agreement (委托代缴(扣)三方协议)."""
        rng = random.Random(f"accounts:{self.county.seed}")
        for h in self.households.values():
            r = self.staff.post(f"/v1/counties/{self.county.code}/withholding/agreements", {
                "household_no": h.no, "year": self.county.year, "bank": self.bank_id,
                "account_no": f"6222{rng.randrange(10**12):012d}", "account_name": h.members[0].name,
                "signed_on": self.county.opens.isoformat()})
            r.raise_for_status()

    def on(self, day: date) -> list[dict]:
        """The day's withholding work; returns the ledger rows of the households debited."""
        if not self.households:
            return []
        if day == self.county.opens:
            self.sign()
        if day == self.batch_on:
            return self.run(0, {no: h.bank_results[0] for no, h in self.households.items()}, None)
        if day == self.retry_on and self.batches:
            first = self.batches[0]
            again = {no: self.households[no].bank_results[1] for no, code in first["expected"].items() if code == "51"}
            if again:
                return self.run(1, again, first["batch_no"])
        return []

    def run(self, attempt: int, expected: dict[str, str], retry_of: str | None) -> list[dict]:
        c, y = self.county.code, self.county.year
        r = self.staff.post(f"/v1/counties/{c}/withholding/batches",
                            {"bank": self.bank_id, "year": y, **({"retry_of": retry_of} if retry_of else {})})
        r.raise_for_status()
        batch = r.json()
        self.staff.get(f"/v1/counties/{c}/withholding/batches/{batch['batch_no']}/file").raise_for_status()  # to the bank
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["batch_no", "line_no", "order_no", "amount_fen", "result_code", "bank_txn_id", "debited_at", "message"])
        now = self.clock.now().isoformat()
        rows, failed = [], []
        for line in batch["lines"]:
            code = expected.get(line["household_no"], "00")
            ok = code == "00"
            txn = uuid.uuid4().hex[:16] if ok else ""
            w.writerow([batch["batch_no"], line["line_no"], line["order_no"], line["amount_fen"], code, txn,
                        now if ok else "", BANK_MESSAGES.get(code, "")])
            h = self.households[line["household_no"]]
            if ok:
                rows.append({"household_no": h.no, "township": h.township, "village": h.village, "persons": h.persons,
                             "kind": "payment", "channel": "withholding", "paid_at": now, "quote_status": None, "due_fen": self.county.due_fen(h),
                             "hardship": "", "order_no": line["order_no"], "amount_fen": line["amount_fen"],
                             "transaction_id": txn, "ack_code": "SUCCESS", "duplicate": False,
                             "batch_no": batch["batch_no"]})
            elif code == "62" or attempt == 1 or self.retry_on is None:
                failed.append(h)
        res = self.bank.withholding_results(batch["batch_no"], out.getvalue())
        if res.status_code != 200:
            raise RuntimeError(f"result file of {batch['batch_no']} refused: {res.status_code} {res.text[:300]}")
        self.batches.append({"batch_no": batch["batch_no"], "attempt": attempt, "expected": expected,
                             "got": [l["household_no"] for l in batch["lines"]]})
        for h in failed:  # the town urges them; they pay by themselves three days later
            h.channel, h.pays_on = "mobile_app", (self.clock.now().date() + timedelta(days=3)).isoformat()
            self.fallback.append(h)
        return rows


class SeasonCases:
    """What the county's staff, the tax bureau and the bank do around the day's payments: births
    registered and paid for (补缴), the bank's reversals (冲正) at 15:00, the tax bureau's audit of the
    collectors' cash at 16:00 (缴款审核, 3 working days at most), the bank's statement of the day at
    22:00 (对账单, docs/reconciliation.md: it audits every payment it matches)."""

    def __init__(self, county: County, s: Suite, secrets: dict, bank: GatewayClient, clock: Clock):
        self.county, self.bank, self.clock = county, bank, clock
        token = secrets["tokens"]["county"]
        self.registry = staff_client(s.url("registry"), token)
        self.tax = staff_client(s.url("payments"), secrets["tokens"]["tax-bureau"])
        self.statements: list[dict] = []  # {date, lines, balanced, audited, problems}
        self.audits: list[dict] = []  # {household_no, status}
        self.reversals: list[dict] = []  # {household_no, order_no, status, code, revokes_enrolment}
        self.births: list[dict] = []  # {household_no, registered, decision, ...ledger row}

    def registry_paid(self, h: Household, timeout: float = 60) -> None:
        """Registry has recorded the household's payment (events lag behind the gateway's reply)."""
        path = f"/v1/counties/{self.county.code}/households/{self.county.year}/{h.no}"
        deadline = time.monotonic() + timeout
        while self.registry.get(path).json().get("status") not in ("paid", "confirmed") and time.monotonic() < deadline:
            time.sleep(0.3)

    def newborn(self, h: Household, gw: GatewayClient) -> dict:
        """Township staff register the birth (出生异动), the county approves the newborn's mid-year
        enrolment (中途参保: within 28 days of birth), the family pays the supplement by mobile app."""
        c, y, m = self.county.code, self.county.year, h.newborn
        self.registry_paid(h)
        r = self.registry.post(f"/v1/counties/{c}/households/{y}/{h.no}/changes", {
            "kind": "birth", "reason": "模拟：新生儿出生登记",
            "member": {"id_number": m.id_number, "name": m.name, "relation": "子女", "sex": m.sex, "birth_date": m.birth}})
        row = {"household_no": h.no, "township": h.township, "village": h.village, "persons": 1, "kind": "supplement",
               "channel": "mobile_app", "paid_at": self.clock.now().isoformat(), "due_fen": self.county.standard_fen,
               "hardship": "", "birth_status": r.status_code}
        if r.status_code != 200:
            return {**row, "error": r.text[:300]}
        d = self.registry.post(f"/v1/counties/{c}/mid-year/decisions", {"id_number": m.id_number, "year": y})
        row["decision"] = (d.json() or {}).get("code") if d.headers.get("Content-Type", "").startswith("application/json") else None
        if d.status_code != 201:
            return {**row, "error": d.text[:300]}
        q = gw.quote(h.no, y, consistency_token=d.json()["consistency_token"], wait=30)
        row["quote_status"] = q.status_code
        if q.status_code != 200:
            return {**row, "error": q.text[:300]}
        row["quoted_fen"] = q.json()["total_fen"]
        o = gw.order(h.no, y, channel="mobile_app")
        if o.status_code not in (200, 201):
            return {**row, "error": o.text[:300]}
        order, txn = o.json(), uuid.uuid4().hex[:20]
        ack = gw.notify(order["order_no"], order["amount_fen"], transaction_id=txn, paid_at=self.clock.now())
        return {**row, **acknowledged(order, txn, ack)}

    def reverse(self, h: Household, row: dict) -> None:
        """The bank reverses the household's payment (冲正, the whole order)."""
        self.registry_paid(h)
        r = self.bank.reverse(row["order_no"], row["transaction_id"], row["amount_fen"], reversal_id=f"R{row['order_no']}")
        body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
        self.reversals.append({"household_no": h.no, "order_no": row["order_no"], "status": r.status_code,
                               "code": body.get("code"), "revokes_enrolment": body.get("revokes_enrolment")})
        if r.status_code == 200 and body.get("code") == "SUCCESS":
            row["reversed_at"] = self.clock.now().isoformat()

    def audit(self, rows: list[dict]) -> None:
        """The tax bureau audits the day's cash taken by the village collectors (缴款审核)."""
        c, y = self.county.code, self.county.year
        for r in rows:
            got = self.tax.post(f"/v1/counties/{c}/payments/{y}/{r['household_no']}/audit", {})
            self.audits.append({"household_no": r["household_no"], "status": got.status_code,
                                "payment_status": got.json().get("status") if got.status_code == 200 else got.text[:200]})

    def statement(self, day: date, rows: list[dict]) -> None:
        """The bank's statement of the day: every order it took that day, reversed ones included."""
        lines = [{"order_no": r["order_no"], "transaction_id": r["transaction_id"], "amount_fen": r["amount_fen"]}
                 for r in rows]
        got = self.bank.statement(day.isoformat(), lines, timeout=60)
        body = got.json() if got.status_code == 200 else {}
        self.statements.append({"date": day.isoformat(), "lines": len(lines), "status": got.status_code,
                                "balanced": body.get("balanced"), "audited": body.get("audited"),
                                "problems": {k: body.get(k) for k in ("missing_on_platform", "missing_on_statement",
                                                                     "amount_mismatch", "transaction_mismatch") if body.get(k)}})


def play(county: County, s: Suite, clock: Clock, days: list[date], secrets: dict, threads: int,
         progress: bool = True) -> tuple[list[dict], Withholding, SeasonCases]:
    gw_id = next(g for g, (kind, *_rest) in Suite.GATEWAYS.items() if kind == "bank")
    local = threading.local()

    def gateway(h: Household) -> GatewayClient:
        """The bank's client, or the township's village collector's for cash (one of each per thread)."""
        gid = collector_id(county, h.township) if h.channel == "village_cash" else gw_id
        clients = local.__dict__.setdefault("clients", {})
        if gid not in clients:
            clients[gid] = GatewayClient(s.url("payments"), gid, secrets["gateways"][gid], now=clock.now, county=county.code)
        return clients[gid]

    todo: dict[date, list[Household]] = defaultdict(list)
    for h in county.good():
        if h.pays_on and h.channel != "withholding":
            todo[pay_day(h, days)].append(h)
    on_day = lambda attr: {d: [h for h in county.good() if getattr(h, attr) == d.isoformat()] for d in days}  # noqa: E731
    revokes, births, reversals = on_day("revoked_on"), on_day("newborn_on"), on_day("reverse_on")
    bank = GatewayClient(s.url("payments"), gw_id, secrets["gateways"][gw_id], now=clock.now, county=county.code)
    withholding = Withholding(county, s, secrets["tokens"]["county"], bank, gw_id, clock, days)
    cases = SeasonCases(county, s, secrets, bank, clock)
    late = sorted((h for h in county.good() if county.late(h)), key=lambda h: h.identity_from)
    ledger: list[dict] = []
    first = {}  # household → its (first) payment's ledger row
    from tqdm import tqdm
    bar = tqdm(days, desc="season", unit="day", disable=not progress, file=sys.stderr)
    with ThreadPoolExecutor(threads) as pool:
        for day in bar:
            at = lambda hour: datetime.combine(day, dtime(hour, 0), SHANGHAI)  # noqa: E731
            clock.move(at(10))
            granted = [h for h in late if date.fromisoformat(h.identity_from) <= day]
            if granted:  # identities granted during the season, published on (or after) their day
                publish_identities(county, s, granted)
                late = late[len(granted):]
            if revokes[day]:  # identities withdrawn (退出低保、特困): published on their day
                publish_identities(county, s, revokes[day], action="revoke")
            rows = withholding.on(day)
            for h in withholding.fallback:  # failed for good: paying by themselves on a later day, if one is left
                if (later := next((d for d in days if d >= date.fromisoformat(h.pays_on)), None)) is not None:
                    todo[later].append(h)
            withholding.fallback = []
            rows += list(pool.map(lambda h: pay(county, gateway(h), h, clock), todo[day]))
            rows += [cases.newborn(h, gateway(h)) for h in births[day]]
            ledger += rows
            first.update({r["household_no"]: r for r in rows if r.get("kind", "payment") == "payment"})
            if reversals[day]:
                clock.move(at(15))
                for h in reversals[day]:
                    cases.reverse(h, first[h.no])
            ok = [r for r in rows if r.get("ack_code") == "SUCCESS"]
            if (cash := [r for r in ok if r["channel"] == "village_cash"]):
                clock.move(at(16))
                cases.audit(cash)
            if (banked := [r for r in ok if r["channel"] != "village_cash"]):
                clock.move(at(22))
                cases.statement(day, banked)
            bar.set_postfix_str(f"{day:%m-%d} paid {sum(1 for r in ledger if r.get('ack_code') == 'SUCCESS')} households")
    return ledger, withholding, cases


# ---- settling and checking ------------------------------------------------------------------------------------
def counted(ledger: list[dict]) -> list[dict]:
    """The ledger's payments that stand: acknowledged and not reversed (supplements included)."""
    return [r for r in ledger if r.get("ack_code") == "SUCCESS" and not r.get("reversed_at")]


def paid_by_township(ledger: list[dict]) -> dict[str, int]:
    out: Counter = Counter()
    for r in counted(ledger):
        out[r["township"]] += r["persons"]
    return dict(out)


def progress(county: County, s: Suite, as_of: datetime | None = None) -> dict:
    params = {"as_of": as_of.isoformat()} if as_of else None
    return requests.get(f"{s.url('scoring')}/v1/counties/{county.code}/progress/{county.year}", params=params,
                        timeout=10).json()


def settle(county: County, s: Suite, ledger: list[dict], timeout: float) -> tuple[dict, float]:
    """Wait until scoring counts what the ledger paid, township by township (or the timeout)."""
    want, t0 = paid_by_township(ledger), time.monotonic()
    while True:
        table = progress(county, s)
        got = {r["township"]: r["enrolled_persons"] for r in table["rows"]}
        if all(got.get(t, 0) == want.get(t, 0) for t in county.tasks) or time.monotonic() - t0 > timeout:
            return table, time.monotonic() - t0
        time.sleep(0.5)


def check(county: County, s: Suite, secrets: dict, ledger: list[dict], imports: dict, table: dict,
          days: list[date], timeout: float, withholding: "Withholding | None" = None,
          cases: "SeasonCases | None" = None, duplicates: list[dict] | None = None,
          sample: int = 3000) -> tuple[list[dict], dict, dict]:
    """The invariants, against the ledger (what the gateway paid). Returns them and registry's paid counts."""
    token = secrets["tokens"]["county"]
    registry, payments, notices = (staff_client(s.url(x), token) for x in ("registry", "payments", "notices"))
    c, y = county.code, county.year
    ok = [r for r in ledger if r.get("ack_code") == "SUCCESS"]
    firsts = {r["household_no"]: r for r in ok if r.get("kind", "payment") == "payment"}  # reversed ones too
    paid = {no: r for no, r in firsts.items() if not r.get("reversed_at")}  # enrolled by their payment
    supplements = {r["household_no"]: r for r in ok if r.get("kind") == "supplement"}
    inv = []

    def add(name: str, failures: list, total: int) -> None:
        inv.append({"name": name, "passed": not failures, "checked": total, "failures": failures[:20]})

    bad = [h for h in county.households if h.bad]
    problems = [f"{t}: rejected {d['counts'].get('households_rejected')} created {d['counts'].get('households_created')}"
                f" employees left out {d['counts'].get('persons_excluded')}"
                for t, d in imports.items()
                if d["status"] != "done"
                or d["counts"].get("households_rejected") != sum(1 for h in bad if h.township == t)
                or d["counts"].get("households_created") != sum(1 for h in county.good() if h.township == t)
                or d["counts"].get("persons_excluded", 0) != sum(1 for h in county.good() if h.township == t
                                                                  for m in h.members if m.excluded)]
    flagged = sum(d["counts"].get("persons_duplicate", 0) for d in imports.values())
    twins = sum(1 for h in county.good() for m in h.members if m.lost)
    if flagged != twins:
        problems.append(f"the imports flagged {flagged} persons listed in another township's household, {twins} expected")
    add("roster import refused exactly the bad households, left out the employees (职工医保) and flagged the "
        "cross-township duplicates", problems, len(imports))

    dup_fails = [f"{d['pair']}: kept {d.get('kept', {}).get('household_no')}, lives in {d['home']}"
                 for d in duplicates or [] if d.get("status") != "resolved" or d.get("kept", {}).get("household_no") != d["home"]]
    if len(duplicates or []) != twins:
        dup_fails.append(f"{len(duplicates or [])} cases resolved, {twins} expected")
    still_open = registry.get(f"/v1/counties/{c}/duplicates", params={"status": "open"}).json().get("duplicates", [])
    dup_fails += [f"still open: {d['kept']['household_no']} {[o['household_no'] for o in d['others']]}" for d in still_open]
    add("every cross-township duplicate (多地重复参保) resolved to the household the person lives in, none left open",
        dup_fails, twins)

    add("every payment acknowledged once (SUCCESS, not a duplicate), charged by the identity in force "
        "(persons × standard, less the subsidy of an identity from before the cutoff)",
        [f"{r['household_no']} ({r.get('kind', 'payment')}): {r.get('ack_code')} {r.get('amount_fen')} (due {r['due_fen']})"
         f"{' ' + r['error'][:200] if r.get('error') else ''}" for r in ledger
         if r.get("ack_code") != "SUCCESS" or r.get("duplicate") or r.get("amount_fen") != r["due_fen"]], len(ledger))

    def per_household(fn, hhs, settle_s):
        """fn(h) → failure text or None, retried until none fail or settle_s passed (events lag)."""
        deadline = time.monotonic() + settle_s
        while True:
            with ThreadPoolExecutor(4) as pool:
                fails = [f for f in pool.map(fn, hhs) if f]
            if not fails or time.monotonic() > deadline:
                return fails
            time.sleep(1)

    good = county.good()
    # the money log, read day by day (每页500条) for every simulated day: exact at any scale
    want_money = {f"{y}:{no}": r["amount_fen"] for no, r in firsts.items()}
    want_money.update({f"{y}:{no}:2": r["amount_fen"] for no, r in supplements.items()})
    want_reversed = Counter((r["order_no"], -r["amount_fen"]) for r in firsts.values() if r.get("reversed_at"))

    def money_check() -> list[str]:
        entries: list[dict] = []
        for day in days:
            page = 0
            while True:
                got = payments.get(f"/v1/counties/{c}/money-log", params={"day": day.isoformat(), "page": page}).json()
                entries += got.get("entries", [])
                if (page + 1) * got.get("page_size", 500) >= got.get("total", 0):
                    break
                page += 1
        confirmed: dict[str, list[int]] = defaultdict(list)
        for e in entries:
            if e["action"] == "confirmed":
                confirmed[e["ref"]].append(e["amount_fen"])
        fails = [f"{ref}: confirmed {confirmed.get(ref) or 'never'}, {want_money.get(ref, 'nothing')} paid"
                 for ref in set(want_money) | set(confirmed) if confirmed.get(ref) != [want_money.get(ref)]]
        fails += [f"{e['ref']}: paid twice ({e['amount_fen']})" for e in entries if e["action"] == "paid_twice"]
        logged = Counter((e["ref"], e["amount_fen"]) for e in entries if e["action"] == "reversed")
        if logged != want_reversed:
            fails.append(f"reversals logged {dict(logged)}, {dict(want_reversed)} expected")
        return fails
    deadline = time.monotonic() + timeout
    while (money_fails := money_check()) and time.monotonic() < deadline:
        time.sleep(2)
    add("every payment and supplement (补缴) confirmed exactly once, every reversal (冲正) logged once (money log, "
        "day by day)", money_fails, len(want_money))

    # per-household reads (registry, notices): every household up to `sample`, above it a seeded sample
    # plus every household of a special case; the aggregates (money log, scoring, remittances, coverage,
    # claims, statements) stay exact
    special = [h for h in good if h.no in supplements or h.reverse_on or h.hardship or h.channel == "withholding"
               or len(h.members) > len(h.covered)]  # employees left out, duplicates moved out
    sampled = good if len(good) <= sample else list({h.no: h for h in [
        *random.Random(f"sample:{county.seed}").sample(good, sample), *special]}.values())
    def enrolled(h):
        d = registry.get(f"/v1/counties/{c}/households/{y}/{h.no}").json()
        members = [m["status"] for m in d.get("members", [])]
        want = h.persons + (1 if h.no in supplements else 0)
        if h.no in paid and (d.get("status") != "confirmed" or len(members) != want
                             or any(m not in ("paid", "confirmed") for m in members)):
            return f"{h.no}: {d.get('status')} {members} ({want} members paid and audited expected)"
        if h.no in firsts and h.no not in paid and (d.get("status") != "revoked" or any(m != "registered" for m in members)):
            return f"{h.no}: {d.get('status')} {members} after its payment was reversed"
        if h.no not in firsts and d.get("status") in ("paid", "confirmed"):
            return f"{h.no}: enrolled without a payment"
        if h.no not in firsts and len(members) != h.persons:
            return f"{h.no}: {len(members)} members registered, {h.persons} expected"
        return None
    add("every paid household enrolled and audited (已审核) in registry with its members (employees and duplicates "
        "moved out left out, newborns in), every reversed one revoked, no unpaid one enrolled",
        per_household(enrolled, sampled, timeout), len(sampled))

    def refused(h):
        r = registry.get(f"/v1/counties/{c}/households/{y}/{h.no}")
        return None if r.status_code == 404 else f"{h.no} ({h.bad}): {r.status_code}"
    add("no refused household registered", per_household(refused, bad, 0), len(bad))

    # registry's paid persons per township from its printed rosters (参保缴费名册, one per village, with
    # each member's payment status): exact at any scale, one request a village
    from urllib.parse import quote as q
    reg_paid: Counter = Counter()
    for t, v in sorted({(h.township, h.village) for h in good}):
        got = registry.get(f"/v1/counties/{c}/exports/{y}/{q(t)}/{q(v)}", params={"format": "csv"})
        lines = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig")))) if got.status_code == 200 else [[]]
        col = lines[0].index("缴费状态") if "缴费状态" in lines[0] else None
        reg_paid[t] += sum(1 for row in lines[1:] if col is not None and row[col].startswith("已缴费"))
    ledger_paid = paid_by_township(ledger)
    rows = {r["township"]: r for r in table["rows"]}
    add("scoring's counts equal registry's (its printed village rosters' payment status) and the ledger's, per township",
        [f"{t}: scoring {rows.get(t, {}).get('enrolled_persons')} registry {reg_paid.get(t, 0)} ledger {ledger_paid.get(t, 0)}"
         for t in county.tasks
         if not (rows.get(t, {}).get("enrolled_persons") == reg_paid.get(t, 0) == ledger_paid.get(t, 0))], len(county.tasks))

    cumulative, fails, by_day = 0, [], Counter()
    for r in ok:  # counted on the day paid, taken out on the day reversed (payments' clock then)
        by_day[r["paid_at"][:10]] += r["persons"]
        if r.get("reversed_at"):
            by_day[r["reversed_at"][:10]] -= r["persons"]
    for day in days:
        cumulative += by_day[day.isoformat()]
        got = progress(county, s, datetime.combine(day, dtime(23, 59, 59), SHANGHAI))["enrolled_total"]
        if got != cumulative:
            fails.append(f"{day}: scoring {got} ledger {cumulative}")
    add("scoring's progress as of each simulated day equals the ledger's (dated by paid_at, reversals by their time)",
        fails, len(days))

    def receipt(h):
        got = notices.get(f"/v1/counties/{c}/households/{y}/{h.no}/notices").json().get("notices", [])
        n = sum(1 for x in got if x["kind"] == "receipt")
        want = (1 if h.no in firsts else 0) + (1 if h.no in supplements else 0)
        return None if n == want else f"{h.no}: {n} receipt notices, {want} expected"
    add("one receipt notice per payment and per supplement (none for households that did not pay)",
        per_household(receipt, sampled, timeout), len(sampled))

    # bank withholding (002 六(二)): each batch took exactly the households expected, and its failures
    # went back to their towns with their reasons (the returns list)
    wh_fails: list[str] = []
    reasons = {"51": "INSUFFICIENT_BALANCE", "62": "ACCOUNT_CLOSED", "96": "BANK_ERROR"}
    for b in (withholding.batches if withholding else []):
        if sorted(b["got"]) != sorted(b["expected"]):
            wh_fails.append(f"{b['batch_no']}: took {len(b['got'])} households, {len(b['expected'])} expected")
        back = payments.get(f"/v1/counties/{c}/withholding/batches/{b['batch_no']}/returns").json().get("lines", [])
        got_back = sorted((x["household_no"], x["reason"]) for x in back)
        want_back = sorted((no, reasons[code]) for no, code in b["expected"].items() if code != "00")
        if got_back != want_back:
            wh_fails.append(f"{b['batch_no']}: returns {got_back[:3]}… expected {want_back[:3]}…")
    add("withholding batches took the households expected and returned each failure to its town with its reason",
        wh_fails, len(withholding.batches) if withholding else 0)

    # remittances (解款, 001 七(四): every 3 days): per period, the households, the contributions per channel
    # and the subsidies the departments pay in directly equal the ledger's
    rem = payments.get(f"/v1/counties/{c}/remittances", params={"year": y}).json().get("periods", [])
    rem_fails = []
    for p in rem:
        mine = [r for r in counted(ledger) if p["period_start"] <= r["paid_at"][:10] <= p["period_end"]]
        by_channel: Counter = Counter()
        for r in mine:
            by_channel[r["channel"]] += r["amount_fen"]
        want = (sum(1 for r in mine if r.get("kind", "payment") == "payment"), sum(r["amount_fen"] for r in mine),
                sum(r["persons"] * county.standard_fen - r["amount_fen"] for r in mine), {k: v for k, v in by_channel.items() if v})
        got = (p["households"], p["amount_fen"], p["subsidy_fen"], p["by_channel"])
        if got != want:
            rem_fails.append(f"{p['period_start']}…{p['period_end']}: payments {got} ledger {want}")
    add("remittances (解款) per 3-day period equal the ledger: households, contributions per channel, subsidies",
        rem_fails, len(rem))

    # 先缴后补 (001 六): each member of a paid household whose identity took effect after the cutoff
    # gets one reimbursement claim of the category's subsidy, nobody else one
    want_claims = Counter((h.no, h.hardship, county.subsidy_fen[h.hardship]) for h in good
                          if county.late(h) and h.no in paid for _m in h.members)
    subsidy = staff_client(s.url("subsidy"), token)
    claim_fails: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        listed, page = [], 0
        while (got := subsidy.get(f"/v1/counties/{c}/claims/{y}", params={"page": page}).json().get("claims")):
            listed += got  # a page holds 5,000
            page += 1
        got_claims = Counter((x["household_no"], x["category"], x["amount_fen"]) for x in listed
                             if x["status"] != "cancelled")  # its payment reversed (冲正): nothing to reimburse
        claim_fails = [f"{k}: {got_claims.get(k, 0)} claims, {n} expected" for k, n in (want_claims | got_claims).items()
                       if got_claims.get(k, 0) != want_claims.get(k, 0)]
        if not claim_fails or time.monotonic() > deadline:
            break
        time.sleep(1)
    add("one 先缴后补 claim per member of a paid household whose identity came after the cutoff, none for others",
        claim_fails, sum(want_claims.values()))

    # hardship coverage (001 六: 以上所有困难群众必须确保100%参保), per township, against the simulator's own
    want_cov: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for h in good:
        if county.holds(h):
            want_cov[h.township][0] += h.persons
            want_cov[h.township][1] += h.persons if h.no in paid else 0
    deadline = time.monotonic() + timeout
    while True:
        cov = coverage(county, s, token)
        got_cov: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in cov.get("rows", []):
            got_cov[r["township"]][0] += r["hardship_persons"]
            got_cov[r["township"]][1] += r["enrolled_persons"]
        cov_fails = [f"{t or '(unregistered)'}: subsidy {got_cov.get(t, [0, 0])} simulator {want_cov.get(t, [0, 0])}"
                     for t in set(want_cov) | {t for t, v in got_cov.items() if v != [0, 0]}
                     if list(got_cov.get(t, [0, 0])) != list(want_cov.get(t, [0, 0]))]
        if not cov_fails or time.monotonic() > deadline:
            break
        time.sleep(1)
    add("subsidy's hardship coverage (persons, enrolled) equals the simulator's, per township", cov_fails, len(want_cov))
    coverage_rows = {t: tuple(v) for t, v in got_cov.items()}

    # the season's other cases: reversals acknowledged (冲正), newborns registered, approved and paid (补缴)
    case_fails = [f"reversal of {x['household_no']}: {x['status']} {x['code']} revokes_enrolment={x['revokes_enrolment']}"
                  for x in (cases.reversals if cases else []) if x["code"] != "SUCCESS" or not x["revokes_enrolment"]]
    case_fails += [f"newborn of {r['household_no']}: birth {r.get('birth_status')}, decision {r.get('decision')}"
                   for r in ledger if r.get("kind") == "supplement" and not (r.get("decision") or "").startswith("NEWBORN_")]
    planned = (sum(1 for h in good if h.reverse_on), sum(1 for h in good if h.newborn_on))
    done = (len(cases.reversals) if cases else 0, sum(1 for r in ledger if r.get("kind") == "supplement"))
    if planned != done:
        case_fails.append(f"reversals, newborns: {done} done, {planned} planned")
    add("every reversal (冲正) took the household's enrolment back; every newborn was approved as one (Dong'an "
        "NEWBORN_28_DAYS, Wuming NEWBORN_3_MONTHS) and paid for", case_fails, sum(planned))

    # audits (缴款审核, 3 working days): the bank's statement of each day balanced and audited every payment it
    # matched; the tax bureau audited each collector's cash; nothing is overdue at the end
    audit_fails = [f"{x['date']}: {x['lines']} lines, HTTP {x['status']}, balanced={x['balanced']}, audited {x['audited']} "
                   f"{x['problems']}" for x in (cases.statements if cases else [])
                   if x["status"] != 200 or not x["balanced"] or x["audited"] != x["lines"]]
    audit_fails += [f"tax audit of {x['household_no']}: {x['status']} {x['payment_status']}"
                    for x in (cases.audits if cases else []) if x["status"] != 200 or x["payment_status"] != "audited"]
    overdue = payments.get(f"/v1/counties/{c}/audits/overdue", params={"year": y}).json().get("overdue", [])
    audit_fails += [f"overdue: {x['household_no']} paid {x['paid_day']}, due {x['audit_due']}" for x in overdue]
    add("every day's bank statement (对账单) balanced and audited its payments, the collectors' cash audited by the "
        "tax bureau, none overdue (3 working days)", audit_fails,
        (len(cases.statements) + len(cases.audits)) if cases else 0)

    letters = []
    for svc in SERVICES:
        r = requests.get(f"{s.url(svc)}/v1/dead-letters", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        letters += [f"{svc}: {d.get('type')} {d.get('reason', '')[:120]}" for d in r.json().get("dead_letters", [])]
    add("no dead letters in any service", letters, len(SERVICES))
    return inv, dict(reg_paid), coverage_rows


# ---- the year-end assessment -------------------------------------------------------------------------------------
INCIDENT_RATE = 0.10  # townships with one 网络舆情 incident entered by county staff (2.4), our assumption


def assess(county: County, policy: PolicyYear, s: Suite, token: str, clock: Clock, seed: int) -> list[dict]:
    """The county's assessment as its staff run it once the season is over (docs/assessments.md):
    registry publishes its information-accuracy table (Dong'an 2.2), staff enter the items scored by
    hand (2.4: incidents, seeded), the clock moves past each evaluation's instant and staff publish
    it. Returns the evaluations as scoring published them."""
    scheme = (policy.raw or {}).get("assessment") or {}
    c, y = county.code, county.year
    registry, scoring = staff_client(s.url("registry"), token), staff_client(s.url("scoring"), token)
    wanted = [("stage", st["no"], st["deadline"]) for st in scheme.get("stages") or []]
    if scheme.get("points"):
        wanted.append(("points", 1, scheme["points"]["as_of"]))
    if scheme.get("funds") and not wanted:  # Wuming: the work funds alone (七(五))
        wanted.append(("funds", 1, max(f["as_of"] for f in scheme["funds"])))
    if not wanted:
        return []
    if scheme.get("points"):  # the points scheme's items scored from registry (2.2) and by hand (2.4)
        registry.post(f"/v1/counties/{c}/accuracy/{y}/publish", {}).raise_for_status()
        rng = random.Random(f"assess:{seed}")
        for t in county.tasks:
            scoring.put(f"/v1/counties/{c}/assessment-entries/{y}/{t}",
                        {"incidents": 1 if rng.random() < INCIDENT_RATE else 0,
                         "reason": "模拟：年终考核录入（网络舆情例数）"}).raise_for_status()
        time.sleep(2)  # registry's accuracy event reaches scoring
    out = []
    for kind, no, at in wanted:
        instant = datetime.fromisoformat(at).replace(tzinfo=SHANGHAI) + timedelta(minutes=1)
        if clock.now() < instant:
            clock.move(instant)
        r = scoring.post(f"/v1/counties/{c}/evaluations/{y}/{kind}/{no}", {})
        if r.status_code not in (200, 201):  # published by the worker already: read it
            r = scoring.get(f"/v1/counties/{c}/evaluations/{y}/{kind}/{no}")
        r.raise_for_status()
        out.append(r.json())
    return out


def assessment_columns(evaluations: list[dict]) -> dict[str, dict]:
    """Per township: the last evaluation's rank, score, work funds and awards."""
    if not evaluations:
        return {}
    ev = evaluations[-1]
    return {r["township"]: {"rank": r.get("rank"), "score": r.get("score"), "fund_fen": r.get("fund_fen"),
                            "awards": [a["name"] for a in r.get("awards") or [] if a.get("status") == "given"]}
            for r in ev["rows"]}


# ---- output ------------------------------------------------------------------------------------------------------
def township_rows(county: County, ledger: list[dict], table: dict, reg_paid: dict,
                  cover: dict[str, tuple[int, int]] | None = None) -> list[dict]:
    scoring = {r["township"]: r for r in table["rows"]}
    paid = paid_by_township(ledger)
    out = []
    for t, task in county.tasks.items():
        hh = [h for h in county.good() if h.township == t]
        out.append({"township": t, "task": task, "households": len(hh), "persons": sum(h.persons for h in hh),
                    "bad_households": sum(1 for h in county.households if h.township == t and h.bad),
                    "paid_households": sum(1 for r in counted(ledger) if r["township"] == t and r.get("kind", "payment") == "payment"),
                    "paid_persons": paid.get(t, 0), "registry_paid": reg_paid.get(t, 0),
                    "scoring_enrolled": scoring.get(t, {}).get("enrolled_persons"),
                    "printed_task": scoring.get(t, {}).get("task"),
                    "rate_percent": round(100 * paid.get(t, 0) / task, 1),
                    "hardship_persons": (cover or {}).get(t, (0, 0))[0],
                    "hardship_enrolled": (cover or {}).get(t, (0, 0))[1]})
    return out


def pad(text, width: int, right: bool = False) -> str:
    """Pad to a terminal width where a Chinese character takes two columns."""
    import unicodedata
    text = str(text)
    fill = " " * max(0, width - sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text))
    return fill + text if right else text + fill


def print_report(county: County, rows: list[dict], inv: list[dict], evaluations: list[dict] | None = None,
                 out=sys.stdout) -> None:
    print(f"\n{county.name}（{county.code}）{county.year} 年度 模拟参保季  规模 {county.scale}  种子 {county.seed}", file=out)
    widths = (10, 8, 10, 9, 10, 12, 6, 9, 11, 2)
    line = lambda *cells: "".join(pad(c, w, right=0 < i < 9) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    print(line("乡镇", "任务", "已缴人数", "参保率", "评分计数", "困难群众", "名次", "得分", "工作经费", "  奖惩"), file=out)
    yuan = lambda fen: "" if fen is None else f"{fen / 100:.2f}"  # noqa: E731
    for r in rows:
        print(line(r["township"], r["task"], r["paid_persons"], f"{r['rate_percent']:.1f}%", r["scoring_enrolled"],
                   f"{r['hardship_enrolled']}/{r['hardship_persons']}", r.get("rank") or "", r.get("score") or "",
                   yuan(r.get("fund_fen")), "  " + "、".join(r.get("awards") or [])), file=out)
    task, paid = sum(r["task"] for r in rows), sum(r["paid_persons"] for r in rows)
    scored = sum(r["scoring_enrolled"] or 0 for r in rows)
    funds = [r["fund_fen"] for r in rows if r.get("fund_fen") is not None]
    print(line("合计", task, paid, f"{100 * paid / task:.1f}%", scored,
               f"{sum(r['hardship_enrolled'] for r in rows)}/{sum(r['hardship_persons'] for r in rows)}", "", "",
               yuan(sum(funds)) if funds else "", ""), file=out)
    print("（任务 = 印刷任务 × 规模；参保率 = 已缴人数 / 任务；评分计数 = scoring 的已缴人数；"
          "困难群众 = subsidy 的已参保 / 困难群众人数；名次、得分、工作经费（元）、奖惩 = scoring 的年终考核）", file=out)
    for e in evaluations or []:
        print(f"{e.get('name')}（第 {e.get('version')} 版，截至 {e.get('as_of')}）："
              f"{'完整' if e.get('complete') else '不完整：' + ('；'.join(e.get('missing') or []) or '有待县里决定的事项（如名次并列）')}",
              file=out)
    print("\ninvariants:", file=out)
    for i in inv:
        print(f"  {'PASS' if i['passed'] else 'FAIL'}  {i['name']} ({i['checked']} checked)", file=out)
        for f in i["failures"][:5]:
            print(f"        {f}", file=out)


def store_commands(trace: str, span: tuple[int, int], payments: int) -> dict[str, float]:
    """With STORE_TRACE set: the suite's store commands while the season was played, per payment, by
    service, command, collection and filter keys (largest first)."""
    with open(trace, "rb") as f:
        f.seek(span[0])
        lines = f.read(span[1] - span[0]).decode("utf-8", "replace").splitlines()
    counts: Counter = Counter()
    for line in lines:
        app, cmd, coll, shape = (line.split("\t") + ["", "", "", ""])[:4]
        if cmd not in ("hello", "isMaster", "ismaster", "ping", "endSessions"):
            counts[f"{app} {cmd} {coll} {shape}".strip()] += 1
    out = {k: round(v / max(payments, 1), 2) for k, v in counts.most_common() if v / max(payments, 1) >= 0.05}
    out["TOTAL"] = round(sum(counts.values()) / max(payments, 1), 2)
    return out


def peak_memory_mb(s: Suite) -> dict[str, float]:
    """Each suite process's peak resident memory so far (VmHWM; a web role sums its gunicorn master
    and workers), read before the suite stops; and the simulator's own."""
    import resource

    def hwm(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    out: dict[str, float] = {}
    for f in sorted(s.run_dir.glob("*.pid")):
        try:
            pid = int(f.read_text().strip())
        except ValueError:
            continue
        children = Path(f"/proc/{pid}/task/{pid}/children")
        kids = [int(x) for x in children.read_text().split()] if children.exists() else []
        out[f.stem] = round(hwm(pid) + sum(hwm(k) for k in kids), 1)
    out["simulator"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def notices_sent(s: Suite) -> dict[str, int]:
    """Notices the suite's channels accepted, by channel and kind (`channel/kind`), from the notices
    worker's own metrics (notices_sent_total), read before the suite stops."""
    from prometheus_client.parser import text_string_to_metric_families
    port = s.worker_base_port + SERVICES.index("notices") + 1
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return {}
    out: Counter = Counter()
    for fam in text_string_to_metric_families(text):
        if fam.name == "notices_sent":
            for smp in fam.samples:
                if smp.name == "notices_sent_total":
                    out[f"{smp.labels.get('channel')}/{smp.labels.get('kind')}"] += int(smp.value)
    return dict(out)


def write_html(county: County, policy: PolicyYear, folder: Path, rows: list[dict], ledger: list[dict],
               days: list[date], inv: list[dict], evaluations: list[dict], sent: dict[str, int]) -> Path:
    """The season's report: progress over the season against the target and stage lines, the final
    ranking, hardship coverage, the channel mix and the notices sent (PNG charts), the township
    table, the evaluation and the invariants. Each chart is an `<img class="chart">`; the page
    writes on its body how many charts the browser rendered (tools/report_check.py reads it)."""
    import html as h

    import matplotlib

    from .report_check import RENDER_PROBE
    matplotlib.use("Agg")
    from matplotlib import font_manager
    import matplotlib.pyplot as plt
    cjk = next((f.name for f in font_manager.fontManager.ttflist
                if any(k in f.name for k in ("WenQuanYi", "Noto Sans CJK", "Noto Serif CJK"))), None)
    if cjk:
        plt.rcParams["font.family"] = cjk
    charts: list[tuple[str, str]] = []

    def save(fig, name: str, caption: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        charts.append((name, caption))

    # 1. progress over the season, per township, against the target and the stages' shares
    fig, ax = plt.subplots(figsize=(10, 6))
    for r in rows:
        by_day: Counter = Counter()
        for x in ledger:
            if x["township"] == r["township"] and x.get("ack_code") == "SUCCESS":
                by_day[x["paid_at"][:10]] += x["persons"]
                if x.get("reversed_at"):
                    by_day[x["reversed_at"][:10]] -= x["persons"]
        total, series = 0, []
        for d in days:
            total += by_day[d.isoformat()]
            series.append(100 * total / r["task"])
        ax.plot(days, series, label=r["township"], linewidth=1.2)
    target = policy.target_rate_percent or 95
    ax.axhline(target, color="grey", linestyle="--", linewidth=0.8)
    ax.annotate(f"目标 {target}%", (days[len(days) // 2], target), textcoords="offset points", xytext=(2, 3), fontsize=8)
    for st in ((policy.raw or {}).get("assessment") or {}).get("stages") or []:
        at = datetime.fromisoformat(st["deadline"]).date()
        ax.plot([at], [st["share_percent"]], marker="v", color="black")
        ax.annotate(st.get("name", ""), (at, st["share_percent"]), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_ylabel("参保率 %（已缴人数 / 任务）")
    ax.set_title(f"{county.name} {county.year} 年度 累计参保进度（模拟，规模 {county.scale}，种子 {county.seed}）")
    ax.legend(fontsize=7, ncol=2, loc="lower right")  # the curves rise from the lower left: that corner stays empty
    fig.autofmt_xdate()
    save(fig, "progress.png", "累计参保进度（各乡镇，虚线为目标参保率，三角为阶段目标）")

    # 2. the final ranking (scoring's evaluation; the ledger's rate where there is none)
    ranked = sorted(rows, key=lambda r: (-(float(r["score"]) if r.get("score") else r["rate_percent"]), r["township"]))
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(ranked) + 1.2))
    values = [float(r["score"]) if r.get("score") else r["rate_percent"] for r in ranked]
    ax.barh([r["township"] for r in ranked][::-1], values[::-1], color="#4a7ab5")
    for y, (r, v) in enumerate(zip(ranked[::-1], values[::-1])):
        ax.annotate(f"{v:.2f}" + (f"（第{r['rank']}名）" if r.get("rank") else ""), (v, y), xytext=(3, -3),
                    textcoords="offset points", fontsize=7)
    ax.set_xlabel("年终考核得分" if any(r.get("score") for r in rows) else "参保率 %")
    ax.set_title("乡镇排名")
    save(fig, "ranking.png", "乡镇排名（年终考核得分）")

    # 3. hardship coverage per township
    fig, ax = plt.subplots(figsize=(10, 4))
    names = [r["township"] for r in rows]
    ax.bar(names, [r["hardship_persons"] for r in rows], color="#d9d9d9", label="困难群众人数")
    ax.bar(names, [r["hardship_enrolled"] for r in rows], color="#3a9a5b", width=0.5, label="已参保")
    ax.set_title("困难群众参保情况（目标 100%）")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right", fontsize=8)
    save(fig, "hardship.png", "困难群众参保情况（subsidy 的统计）")

    # 4. channel mix of the payments
    mix = Counter(r["channel"] for r in ledger if r.get("ack_code") == "SUCCESS")
    labels = {"mobile_app": "手机缴费", "bank_counter": "银行柜面", "pos": "POS", "village_cash": "村级代收", "withholding": "银行代扣"}
    fig, ax = plt.subplots(figsize=(6, 4))
    if mix:
        ax.pie(list(mix.values()), labels=[f"{labels.get(k, k)} {v}" for k, v in mix.items()], autopct="%1.0f%%",
               textprops={"fontsize": 8})
    ax.set_title("缴费渠道（户数）")
    save(fig, "channels.png", "缴费渠道")

    # 5. notices sent, by kind and channel
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(sent), 1) + 1.2))
    items = sorted(sent.items(), key=lambda kv: kv[1])
    ax.barh([k for k, _ in items] or ["（无）"], [v for _, v in items] or [0], color="#b5834a")
    ax.set_title("已发送通知（渠道/类型）")
    save(fig, "notices.png", "已发送通知（notices 的统计）")

    yuan = lambda fen: "" if fen is None else f"{fen / 100:.2f}"  # noqa: E731
    cells = "".join(
        f"<tr><td>{h.escape(r['township'])}</td><td>{r['task']}</td><td>{r['paid_persons']}</td><td>{r['rate_percent']}%</td>"
        f"<td>{r['scoring_enrolled']}</td><td>{r['hardship_enrolled']}/{r['hardship_persons']}</td>"
        f"<td>{r.get('rank') or ''}</td><td>{r.get('score') or ''}</td><td>{yuan(r.get('fund_fen'))}</td>"
        f"<td>{h.escape('、'.join(r.get('awards') or []))}</td></tr>" for r in rows)
    checks = "".join(f"<li><b>{'PASS' if i['passed'] else 'FAIL'}</b> {h.escape(i['name'])} ({i['checked']})</li>" for i in inv)
    evals = "".join(f"<li>{h.escape(str(e.get('name')))}（第 {e.get('version')} 版，截至 {e.get('as_of')}）："
                    f"{'完整' if e.get('complete') else '不完整：' + h.escape('；'.join(e.get('missing') or []) or '有待县里决定的事项')}</li>"
                    for e in evaluations)
    figures = "".join(f'<figure><img class="chart" src="{n}" alt="{h.escape(c)}" style="max-width:100%">'
                      f"<figcaption>{h.escape(c)}</figcaption></figure>" for n, c in charts)
    path = folder / "report.html"
    path.write_text(f"""<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<title>{h.escape(county.name)} {county.year} 模拟参保季</title>
<body style="font-family:sans-serif;max-width:64em;margin:auto">
<h1>{h.escape(county.name)} {county.year} 年度 模拟参保季</h1>
<p>规模 {county.scale}，种子 {county.seed}，模拟 {len(days)} 天（{days[0]} 至 {days[-1]}）。
任务 = 印刷任务 × 规模；得分、名次、工作经费为 scoring 的年终考核。</p>
{figures}
<h2>乡镇</h2>
<table border="1" cellspacing="0" cellpadding="4"><tr><th>乡镇</th><th>任务</th><th>已缴人数</th><th>参保率</th>
<th>评分计数</th><th>困难群众</th><th>名次</th><th>得分</th><th>工作经费（元）</th><th>奖惩</th></tr>{cells}</table>
<h2>考核</h2><ul>{evals or '<li>本县方案无年终考核</li>'}</ul>
<h2>Invariants</h2><ul>{checks}</ul>
{RENDER_PROBE}</body></html>""", encoding="utf-8")
    return path


# ---- command line ------------------------------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.simulate", description=__doc__.split("\n\n")[0])
    p.add_argument("--county", default="431122", help="GB/T 2260 code of a county in policies/ (default Dong'an)")
    p.add_argument("--policy", help="a policy file instead of the county's newest year")
    p.add_argument("--scale", type=float, default=0.0005, help="fraction of each township's printed task (1.0 = the county)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=int, help="simulate N days spread evenly over the window (default: every day)")
    p.add_argument("--bad-rate", type=float, default=0.02, help="bad households per good one, refused by the import")
    p.add_argument("--out", help="report folder (default var/sim/<stamp>)")
    p.add_argument("--threads", type=int, default=4, help="concurrent gateway requests per day")
    p.add_argument("--sample", type=int, default=3000,
                   help="above this many households, registry and notices are read for a seeded sample of them "
                        "(and every special case); the other checks stay exact")
    p.add_argument("--web-workers", type=int, default=1)
    p.add_argument("--settle-timeout", type=float, default=120)
    p.add_argument("--generate-only", action="store_true", help="write the county's rosters and plan, start nothing")
    p.add_argument("--keep", action="store_true", help="keep the suite's databases, queues and secrets afterwards")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    t0 = time.monotonic()
    policy = load_policy(a.policy) if a.policy else find_policy(a.county)
    policy_path = Path(a.policy) if a.policy else ROOT / "policies" / policy.source_file
    county = build_county(policy, a.scale, a.seed, a.bad_rate)
    out = Path(a.out or ROOT / "var" / "sim" / datetime.now().strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    paths = write_rosters(county, out / "roster")
    days = sim_days(county, a.days)
    schedule_cases(county, days)
    (out / "plan.json").write_text(json.dumps({"seed": a.seed, "scale": a.scale, "households": [
        {"no": h.no, "township": h.township, "persons": h.persons, "bad": h.bad, "pays_on": h.pays_on, "channel": h.channel,
         "hardship": h.hardship, "identity_from": h.identity_from, "bank_results": h.bank_results,
         "excluded": [m.name for m in h.members if m.excluded], "lost": [m.name for m in h.members if m.lost],
         "revoked_on": h.revoked_on, "newborn_on": h.newborn_on, "reverse_on": h.reverse_on}
        for h in county.households]}, ensure_ascii=False, indent=0), encoding="utf-8")
    good = county.good()
    print(f"{county.name}: {len(good)} households, {sum(h.persons for h in good)} persons in {len(county.tasks)} townships "
          f"(+{len(county.households) - len(good)} bad households); {len(days)} simulated days; rosters in {out / 'roster'}",
          file=sys.stderr)
    if a.generate_only:
        return 0

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt("SIGTERM")))
    clock = Clock(out / "clock.txt")
    FileClock.write(str(clock.path), datetime.combine(county.opens, dtime(9, 0), SHANGHAI))
    clock.at = datetime.combine(county.opens, dtime(9, 0), SHANGHAI)
    s = start_suite(county, clock.path, a.web_workers, scaled_catalogue(county, policy_path, out / "policies"))
    try:
        secrets = s.secrets()
        staff = staff_client(s.url("registry"), secrets["tokens"]["county"])
        t_ready = time.monotonic()
        exclude_employees(county, staff)
        imports = import_rosters(county, s, staff, paths,  # ≈ 1,000 persons/s on this machine at full size
                                 timeout=max(300.0, sum(len(h.members) for h in county.households) / 200))
        duplicates = resolve_duplicates(county, staff)
        early = [h for h in good if h.hardship and not county.late(h)]
        if early:  # identities in force before the season: civil affairs and the poverty office publish them
            publish_identities(county, s, early)
            wait_for_identities(county, s, secrets["tokens"]["county"], sum(h.persons for h in early), a.settle_timeout)
        # the season opens on a quiet suite: every consumer has the roster (the county's weeks of
        # preparation before the window, 筹备阶段); at county size that takes minutes
        wait_quiet(env("AMQP_URL", ""), env("MONGO_URL", "mongodb://127.0.0.1:27217/"), s.namespace,
                   timeout=max(300.0, len(good) / 20))
        t_import = time.monotonic()
        from bench.cpu import delta, snapshot  # CPU seconds per suite process (Linux /proc)
        cpu_before = snapshot(s.run_dir)
        trace = os.environ.get("STORE_TRACE")  # the suite's store commands, one line each (shared/store.py)
        trace_from = Path(trace).stat().st_size if trace and Path(trace).exists() else 0
        ledger, withholding, cases = play(county, s, clock, days, secrets, a.threads, progress=not a.no_progress)
        t_play = time.monotonic()
        cpu_season = delta(cpu_before, snapshot(s.run_dir))
        trace_span = (trace_from, Path(trace).stat().st_size) if trace and Path(trace).exists() else None
        table, settle_s = settle(county, s, ledger, a.settle_timeout)
        inv, reg_paid, cover = check(county, s, secrets, ledger, imports, table, days, a.settle_timeout, withholding,
                                     cases, duplicates, a.sample)
        t_check = time.monotonic()
        evaluations = assess(county, policy, s, secrets["tokens"]["county"], clock, a.seed)
        sent = notices_sent(s)
        memory = peak_memory_mb(s)
    finally:
        s.stop()
        atexit.unregister(s.stop)
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        for f in s.run_dir.glob("*.log"):
            shutil.copy(f, logs / f.name)
        shutil.rmtree(s.run_dir, ignore_errors=True)
        if not a.keep:
            drop_suite_data(s)

    rows = township_rows(county, ledger, table, reg_paid, cover)
    scored = assessment_columns(evaluations)
    for r in rows:
        r.update({k: scored.get(r["township"], {}).get(k) for k in ("rank", "score", "fund_fen", "awards")})
    print_report(county, rows, inv, evaluations)
    with open(out / "ledger.csv", "w", newline="", encoding="utf-8") as f:
        fields = ["household_no", "kind", "township", "village", "persons", "hardship", "channel", "paid_at", "order_no",
                  "batch_no", "due_fen", "amount_fen", "reversed_at",
                  "transaction_id", "receipt_no", "ack_status", "ack_code", "duplicate", "quote_status", "quoted_fen", "error"]
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(ledger)
    summary = {
        "county": county.code, "county_name": county.name, "year": county.year, "scale": a.scale, "seed": a.seed,
        "days": [d.isoformat() for d in days], "namespace": s.namespace,
        "households": len(good), "persons": sum(h.persons for h in good),
        "bad_households": Counter(h.bad for h in county.households if h.bad),
        "channels": Counter(r["channel"] for r in ledger if r.get("ack_code") == "SUCCESS"),
        "cases": {"employees_left_out": sum(1 for h in good for m in h.members if m.excluded),
                  "duplicates_resolved": len(duplicates),
                  "identities_revoked": sum(1 for h in good if h.revoked_on),
                  "newborns_paid": sum(1 for r in counted(ledger) if r.get("kind") == "supplement"),
                  "reversals": len(cases.reversals), "tax_audits": len(cases.audits),
                  "statements": [{k: x[k] for k in ("date", "lines", "balanced", "audited")} for x in cases.statements]},
        "notices_sent": sent,
        "peak_rss_mb": memory,
        "cpu_s_season": cpu_season,  # CPU seconds per process group while the season was played
        "store_commands_season": store_commands(trace, trace_span, len(ledger)) if trace_span else None,
        "withholding": {"households": len(withholding.households),
                        "batches": [{"batch_no": b["batch_no"], "attempt": b["attempt"], "lines": len(b["got"]),
                                     "results": Counter(b["expected"].values())} for b in withholding.batches]},
        "hardship": {"households": Counter(h.hardship for h in good if h.hardship),
                     "late_households": sum(1 for h in good if county.late(h)),
                     "persons": sum(r["hardship_persons"] for r in rows),
                     "enrolled": sum(r["hardship_enrolled"] for r in rows)},
        "townships": rows,
        "totals": {"task": sum(r["task"] for r in rows), "paid_households": sum(r["paid_households"] for r in rows),
                   "paid_persons": sum(r["paid_persons"] for r in rows),
                   "ledger_paid_persons": sum(r["persons"] for r in counted(ledger)),
                   "ledger_households": len(ledger), "scoring_enrolled": table.get("enrolled_total")},
        "imports": {t: d["counts"] for t, d in imports.items()},
        "invariants": inv, "passed": all(i["passed"] for i in inv),
        "evaluations": [{k: e.get(k) for k in ("kind", "no", "name", "version", "as_of", "complete", "missing",
                                               "fund_total_fen")} for e in evaluations],
        "wall_s": {"suite_start": round(t_ready - t0, 1), "import": round(t_import - t_ready, 1),
                   "season": round(t_play - t_import, 1), "settle": round(settle_s, 1),
                   "checks": round(t_check - t_play - settle_s, 1), "total": round(time.monotonic() - t0, 1)},
    }
    (out / "evaluations.json").write_text(json.dumps(evaluations, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    try:
        html = write_html(county, policy, out, rows, ledger, days, inv, evaluations, sent)
        print(f"report: {html}")
        from .report_check import check as check_report, chromium
        if chromium():
            seen = check_report(html)
            print(f"report opened in headless Chromium: {seen['rendered']}/{seen['charts']} charts rendered "
                  f"(screenshot {seen['screenshot']})")
    except Exception as e:  # noqa: BLE001 — the charts are a nicety; the summary and exit status are the result
        print(f"(no HTML report: {e})", file=sys.stderr)
    print(f"summary: {out / 'summary.json'}  ({summary['wall_s']['total']} s; peak memory "
          f"{max(v for k, v in memory.items() if k != 'simulator'):.0f} MB in one suite process, "
          f"{memory['simulator']:.0f} MB in the simulator)")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
