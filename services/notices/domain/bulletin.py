"""Bulletins (通报): the ranking of a bulletin instant as a document the townships read.

Rules: 002_9137bd928f251374.txt 七(四) — 城区人社局要定期督查，加强信息反馈，每周四通报各镇工作进展情况，
表扬先进，鞭策后进; 001_93f5b63ac6b4a653.txt 七(五) — 建立“半月一上报、一月一督查、一月一通报、年终总考核”
制度，各村(社区)应对征缴进度定期张榜公布.

From a `scoring.ranking.published` payload (and the previous bulletin's rates, for the change since
then) this module decides what the bulletin says: its title, the table (rank with ties as scoring
gave them, township, rate, band in Chinese, change since the last bulletin), the county's total, the
stage line, whom it praises (the top 3) and urges (the bottom 3), and a short SMS summary. Pure:
rendering (HTML, chart) is adapters/bulletin_render.py, storing adapters/bulletin_store.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from shared.clock import SHANGHAI

from .notice import Notice

BAND_NAMES = {"reached": "已达目标", "on_track": "进度正常", "behind": "进度滞后", "no_data": "无数据",
              "no_target": "无阶段目标"}
PRAISE, URGE = 3, 3  # 表扬先进，鞭策后进: the first three and the last three of the ranking
SUMMARY_MAX = 70  # characters of the SMS summary, before the caller appends the link


@dataclass(frozen=True)
class BulletinRow:
    rank: int | None  # ties shared, as scoring ranked them; None: no data, not ranked
    township: str
    rate_bp: int | None
    rate_text: str  # 55.91%
    band: str  # reached | on_track | behind | no_data | no_target
    band_name: str  # 进度滞后
    rank_change: int | None  # places gained since the last bulletin (scoring's)
    change_text: str  # ↑1 | ↓2 | 持平 | — (no earlier bulletin ranked it)
    rate_change_bp: int | None  # percentage points ×100 since the last bulletin we stored; None without one
    rate_change_text: str  # +3.20 | -0.15 | —
    praised: bool
    urged: bool


@dataclass(frozen=True)
class Bulletin:
    year: int
    county: str
    county_name: str
    as_of: str
    stamp: str  # YYYYMMDDHHMM of as_of in Shanghai time: the bulletin's name within its year
    rule: str  # the document's sentence for the rhythm (scoring's)
    title: str
    target_share_percent: int | None
    target_text: str  # 阶段目标60% | 无阶段目标
    total_rate_bp: int | None
    total_text: str
    townships: int
    rows: tuple[BulletinRow, ...]
    praised: tuple[str, ...]
    urged: tuple[str, ...]
    previous_stamp: str | None  # the bulletin the rate changes are measured from
    summary: str  # ≤ SUMMARY_MAX characters

    def to_doc(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"], d["praised"], d["urged"] = [asdict(r) for r in self.rows], list(self.praised), list(self.urged)
        return d


def pct(bp: int | None) -> str:
    return "无数据" if bp is None else f"{bp // 100}.{bp % 100:02d}%"


def points(bp: int | None) -> str:
    """A change of rate in percentage points (百分点), signed: +3.20, -0.15, 0.00."""
    if bp is None:
        return "—"
    sign = "+" if bp > 0 else "-" if bp < 0 else ""
    return f"{sign}{abs(bp) // 100}.{abs(bp) % 100:02d}"


def shanghai(as_of: str) -> datetime:
    return datetime.fromisoformat(as_of).astimezone(SHANGHAI)


def stamp_of(as_of: str) -> str:
    """The bulletin's name in its year (`2018:201711300900`), the minute of as_of in Shanghai time
    (as scoring numbers its rankings, and as the ranking notices name theirs)."""
    return shanghai(as_of).strftime("%Y%m%d%H%M")


def zh_instant(as_of: str) -> str:
    """2017年11月30日9时00分, as the notices print their instants (adapters/templates.py zh_deadline)."""
    at = shanghai(as_of)
    return f"{at.year}年{at.month}月{at.day}日{at.hour}时{at.minute:02d}分"


def _short_instant(as_of: str) -> str:
    at = shanghai(as_of)
    return f"{at.month}月{at.day}日{at.hour}时" + (f"{at.minute}分" if at.minute else "")


def change_text(rank_change: int | None) -> str:
    if rank_change is None:
        return "—"
    return f"↑{rank_change}" if rank_change > 0 else f"↓{-rank_change}" if rank_change < 0 else "持平"


def praise_and_urge(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """表扬先进，鞭策后进: the first PRAISE and the last URGE ranked townships, a tie at the edge taking
    everyone who shares the rank (ties as given: 1, 2, 2, 4 or 1, 2, 2, 3 alike). Praise needs some
    progress (a rate above 0); a township that reached its target is not urged. When the two meet
    (few townships, or everyone tied), a township in both is named in neither: a bulletin does not
    praise and urge the same town."""
    ranked = [r for r in rows if r["rank"] is not None]
    if not ranked:
        return [], []
    ranked.sort(key=lambda r: r["rank"])
    top_edge = ranked[min(PRAISE, len(ranked)) - 1]["rank"]
    bottom_edge = ranked[max(len(ranked) - URGE, 0)]["rank"]
    top = [r for r in ranked if r["rank"] <= top_edge]
    bottom = [r for r in ranked if r["rank"] >= bottom_edge]
    both = {r["township"] for r in top} & {r["township"] for r in bottom}
    return ([r["township"] for r in top if r["township"] not in both and (r["rate_bp"] or 0) > 0],
            [r["township"] for r in bottom if r["township"] not in both and r["band"] != "reached"])


def summary_text(county_name: str, as_of: str, total_rate_bp: int | None, target: int | None,
                 praised: list[str], urged: list[str]) -> str:
    """The SMS line (≤ SUMMARY_MAX characters; the caller appends the link): the county's rate, the
    stage line and, as room allows, the towns praised and urged; long names drop detail, never the rate."""
    head = f"{county_name}参保进度通报（截至{_short_instant(as_of)}）：全{county_name[-1:]}{pct(total_rate_bp)}"
    if target:
        head += f"，阶段目标{target}%"
    candidates = []
    if praised or urged:
        candidates.append(head + "".join([f"；表扬{'、'.join(praised)}" if praised else "",
                                          f"；鞭策{'、'.join(urged)}" if urged else ""]) + "。")
        candidates.append(head + "".join([f"；第一{praised[0]}" if praised else "",
                                          f"；末位{urged[-1]}" if urged else ""]) + "。")
    candidates.append(head + "。")
    for text in candidates:
        if len(text) <= SUMMARY_MAX:
            return text
    return candidates[-1][:SUMMARY_MAX - 1] + "…"


def bulletin_content(p: dict[str, Any], previous: dict[str, Any] | None = None) -> Bulletin:
    """The bulletin of one `scoring.ranking.published` payload. `previous`: the content of the last
    bulletin stored before it (its `rows` and `stamp`), for each township's rate change; the rank
    change is scoring's (`rank_change`, since its previous ranking)."""
    before = {r["township"]: r.get("rate_bp") for r in (previous or {}).get("rows", [])}
    praised, urged = praise_and_urge(p["rows"])
    rows = []
    for r in sorted(p["rows"], key=lambda r: (r["rank"] is None, r["rank"] or 0)):  # stable: ties keep scoring's order
        old = before.get(r["township"])
        delta = r["rate_bp"] - old if r["rate_bp"] is not None and old is not None else None
        rows.append(BulletinRow(r["rank"], r["township"], r["rate_bp"], pct(r["rate_bp"]), r["band"],
                                BAND_NAMES.get(r["band"], r["band"]), r["rank_change"], change_text(r["rank_change"]),
                                delta, points(delta), r["township"] in praised, r["township"] in urged))
    target = p.get("target_share_percent")
    title = f"{p['county_name']}{p['year']}年度城乡居民医保参保进度通报（截至{zh_instant(p['as_of'])}）"
    return Bulletin(
        year=p["year"], county=p["county"], county_name=p["county_name"], as_of=p["as_of"], stamp=stamp_of(p["as_of"]),
        rule=p.get("rule") or "", title=title, target_share_percent=target,
        target_text=f"阶段目标{target}%" if target else "无阶段目标", total_rate_bp=p.get("total_rate_bp"),
        total_text=pct(p.get("total_rate_bp")), townships=p["townships"], rows=tuple(rows), praised=tuple(praised),
        urged=tuple(urged), previous_stamp=(previous or {}).get("stamp"),
        summary=summary_text(p["county_name"], p["as_of"], p.get("total_rate_bp"), target, praised, urged))


def bulletin_sms_notices(content: dict[str, Any], link: str, leaders: dict[str, list[dict]]) -> list[Notice]:
    """The bulletin's summary and link by SMS to the townships' leaders (003_0724b4a19d5e14e1.txt:
    以短信的方式发给各乡镇主要领导), one per phone number and bulletin (a leader of two townships gets
    it once), template `bulletin.sms` (summary, link). Named, as the ranking SMS, by a hash of the number."""
    import hashlib
    out, seen = [], set()
    for township, people in leaders.items():
        for leader in people:
            who = hashlib.sha256(leader["phone"].encode()).hexdigest()[:10]
            if who in seen:
                continue
            seen.add(who)
            out.append(Notice(f"bulletin:{content['year']}:{content['stamp']}:{who}", "bulletin", None, content["year"],
                              township, leader["name"], leader["phone"], "sms", "", "queued",
                              {"name": "bulletin.sms", "params": {"summary": content["summary"], "link": link}}))
    return out
