"""The walking-skeleton demo: a handful of households enrolled end to end on the running suite.

registry registers each household → payments quotes it (whole household × 250 yuan) → a test
gateway creates an order and sends a signed payment notification → registry marks the members
paid → scoring counts them against the township's task → notices records the receipt SMS.
Prints the township progress table at the end.
"""
from __future__ import annotations

import random
import sys
import time
from datetime import date

from shared.clock import parse_instant
from shared.config import env
from shared.money import yuan

from .clients import GatewayClient, StaffClient, wait_for
from .ids import make_id
from .suite import Suite, from_env

DEMO = [  # (township, village, [(name, relation, birth, sex)])
    ("白牙市镇", "五一村", [("蒋建国", "户主", date(1968, 3, 2), "M"), ("李秀英", "配偶", date(1970, 7, 9), "F"),
                          ("蒋小明", "子女", date(2001, 1, 15), "M")]),
    ("白牙市镇", "芦江村", [("唐志强", "户主", date(1955, 11, 30), "M"), ("周桂花", "配偶", date(1957, 2, 4), "F")]),
    ("大庙口镇", "大庙口村", [("陈德明", "户主", date(1979, 6, 6), "M"), ("黄丽", "配偶", date(1982, 8, 18), "F"),
                           ("陈思远", "子女", date(2010, 9, 1), "M"), ("陈思琪", "子女", date(2013, 4, 22), "F")]),
    ("舜管局", "舜皇山社区", [("邓水生", "户主", date(1949, 12, 12), "M")]),
    ("花桥镇", "花桥村", [("刘春生", "户主", date(1975, 5, 5), "M"), ("王小红", "配偶", date(1977, 10, 10), "F"),
                        ("刘洋", "子女", date(2005, 12, 24), "M")]),
]


def unregistered_id(staff: StaffClient, rng: random.Random, birth: date, sex: str, year: int) -> str:
    """A valid ID number for the demo person that no household holds yet: the demo runs again and
    again on the same databases, and the same person in two households is refused (多地重复参保)."""
    for _ in range(50):
        candidate = make_id(birth, rng.randrange(500), sex)
        if staff.post("/v1/counties/431122/persons/lookup", {"id_number": candidate, "year": year}).status_code == 404:
            return candidate
    raise RuntimeError(f"no unregistered ID number left for a person born {birth}")


def run(suite: Suite, households: list = DEMO, year: int = 2020, out=sys.stdout) -> dict:
    secrets = suite.secrets()
    now = parse_instant(env("CLOCK_NOW") or "2019-11-15T10:00:00+08:00")
    gw_id, gw_secret = next(iter(secrets["gateways"].items()))
    gateway = GatewayClient(suite.url("payments"), gw_id, gw_secret, now=lambda: now)
    staff = StaffClient(suite.url("registry"), secrets["tokens"]["county"])
    run_tag = f"{int(time.time()) % 10**6:06d}"
    rng = random.Random(run_tag)
    paid = []
    for i, (township, village, people) in enumerate(households):
        hh_no = f"DEMO-{run_tag}-{i:02d}"
        members = [{"id_number": unregistered_id(staff, rng, b, s, year), "name": n, "relation": r,
                    "birth_date": b.isoformat(), "sex": s} for n, r, b, s in people]
        r = staff.post("/v1/counties/431122/households", {"household_no": hh_no, "year": year, "township": township,
                                          "village": village, "head_phone": f"139{rng.randrange(10**8):08d}",
                                          "members": members})
        r.raise_for_status()
        q = wait_for(lambda: (lambda resp: resp.json() if resp.status_code == 200 else None)(gateway.quote(hh_no, year)),
                     what=f"quote for {hh_no}")
        order = gateway.order(hh_no, year).json()
        ack = gateway.notify(order["order_no"], order["amount_fen"]).json()
        print(f"{township}{village} {hh_no}: {len(members)} 人，应缴 {yuan(q['total_fen'])} 元，订单 {order['order_no']}，"
              f"回执 {ack['code']}，收据 {ack['receipt_no']}", file=out)
        paid.append((township, len(members)))
    expected = {}
    for t, n in paid:
        expected[t] = expected.get(t, 0) + n
    scoring = StaffClient(suite.url("scoring"), "")

    def progress_reached():
        table = scoring.get(f"/v1/counties/431122/progress/{year}").json()
        rows = {r["township"]: r for r in table["rows"]}
        return table if all(rows[t]["enrolled_persons"] >= n for t, n in expected.items()) else None

    table = wait_for(progress_reached, timeout=60, what="scoring progress")
    print_table(table, out)
    return table


def print_table(table: dict, out=sys.stdout) -> None:
    print(f"\n{table['county']} {table['year']} 年度城乡居民医保参保进度（已缴费人数 / 任务）", file=out)
    print(f"{'排名':<4}{'乡镇':<8}{'已缴人数':>8}{'任务':>10}{'参保率':>10}", file=out)
    for r in table["rows"]:
        print(f"{r['rank']:<5}{r['township']:<8}{r['enrolled_persons']:>10}{r['task']:>10}{r['rate_percent']:>10}", file=out)
    print(f"合计 {table['enrolled_total']} / {table['task_total']}", file=out)
    if table.get("task_warning"):  # the county's printed task table disagrees with itself
        print(f"注：{table['task_warning']}", file=out)


if __name__ == "__main__":
    run(from_env())
