"""Duplicate enrolment cases (多地重复参保) and the employee-insurance exclusion list, by `_id`.

A case (`_id` "<year>:<id_number>") names the household holding the person's claim (`kept`) and
the other households that registered the person too (`others`): every one of them is registered,
the person a member of each, until county staff decide where the person belongs (resolution keeps
them in exactly one). Each opening, re-opening and resolution carries its registry.duplicate.changed
in the same write (outbox): payments refuses the quote of every household with the person while the
case is open (its read model is by person).
The exclusion list (`_id` "<year>:<id_number>") holds people already covered by
employee insurance (城镇职工医保), who are not enrolled as residents.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from shared.errors import Conflict
from shared.events import Event
from shared.store import IndexSpec, KeyIndex, OutboxWriter

DUPLICATES, EXCLUSIONS = "duplicates", "exclusions"
BY_STATUS = "duplicates_by_status"  # KeyIndex: case `_id`s by status ("open", "resolved")
STATUSES = ("open", "resolved")
INDEXES = ()


def places(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Every household a case names, the holder first, then the others (`refused`: cases written
    when a second household was refused, whose household may not exist)."""
    seen, out = set(), []
    for p in [case.get("kept") or {}, *(case.get("others") or []), *(case.get("refused") or [])]:
        if p.get("household_no") and p["household_no"] not in seen:
            seen.add(p["household_no"])
            out.append({k: p.get(k) for k in ("household_no", "township", "village")})
    return out


def changed_event(year: int, person_id: str, status: str, kept: dict[str, Any], keep: str | None = None,
                  others: list[dict[str, Any]] | None = None) -> Event:
    """The event as written; with the container's snapshots (the deployment) the relay publishes
    `changed_payload` of the case as it then stands instead, with its version."""
    return Event("registry.duplicate.changed", {
        "year": year, "person_id": person_id, "status": status, "household_no": kept.get("household_no"),
        "township": kept.get("township"), "village": kept.get("village"), "keep": keep, "version": None,
        "households": places({"kept": kept, "others": others or []})})


def changed_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """registry.duplicate.changed built from the case when published: every write of a case bumps its
    `version` in the same write, so a consumer keeps the highest version and two changes written
    close together can never be applied in the wrong order (an envelope's `seq` is taken before
    its write, so it cannot promise that)."""
    kept = doc.get("kept") or {}
    return {"year": doc["year"], "person_id": doc["person_id"], "status": doc["status"],
            "household_no": kept.get("household_no"), "township": kept.get("township"),
            "village": kept.get("village"),
            "households": places(doc),
            "keep": (doc.get("resolution") or {}).get("keep") if doc["status"] == "resolved" else None,
            "version": doc.get("version", 0)}


SNAPSHOTS = {"registry.duplicate.changed": changed_payload}


class DuplicateRepository:
    def __init__(self, db, outbox: OutboxWriter):
        self.db = db
        self.outbox = outbox
        self.by_status = KeyIndex(db[BY_STATUS])

    def record(self, year: int, person_id: str, kept: dict[str, Any], other: dict[str, Any], at: datetime,
               correlation_id: str | None = None) -> None:
        """Open (or re-open, or add a place to) the case of a person another household registers while
        `kept` holds them. Written before that household, so payments holds both quotes from the
        moment both exist; repeating it (a retried registration) adds nothing but a version."""
        key = f"{year}:{person_id}"
        self.by_status.add("open", [key])
        self.outbox.update(DUPLICATES, key, {
            "$setOnInsert": {"year": year, "person_id": person_id, "opened_at": at},
            "$set": {"status": "open", "kept": kept}, "$inc": {"version": 1},
            "$addToSet": {"others": other}}, [changed_event(year, person_id, "open", kept, others=[other])],
            upsert=True, correlation_id=correlation_id)

    def add_place(self, year: int, person_id: str, place: dict[str, Any], holder: bool,
                  correlation_id: str | None = None) -> None:
        """A split or merge brings the person of an open case into household `place`: the case names
        it (as the holder when the person's claim went with them; the former holder then stays
        listed until it has lost the person, see drop_place). Written before the household that
        loses the person, so the case always names every household that has them; idempotent."""
        self._rewrite(year, person_id, lambda kept, others: (
            (place, [*others, kept]) if holder and kept.get("household_no") != place["household_no"]
            else (kept, others if place["household_no"] in {p.get("household_no") for p in [kept, *others]}
                  else [*others, place])), correlation_id)

    def drop_place(self, year: int, person_id: str, household_no: str, correlation_id: str | None = None) -> None:
        """The household no longer has the person (split off or merged away): the case stops naming
        it (never the holder: the claim moved first, with add_place); idempotent."""
        self._rewrite(year, person_id, lambda kept, others: (
            kept, [p for p in others if p.get("household_no") != household_no]), correlation_id)

    def _rewrite(self, year: int, person_id: str, change, correlation_id: str | None) -> None:
        """Compare-and-set of an open case's places with its registry.duplicate.changed; nothing when
        there is no open case or nothing changes."""
        for _ in range(10):
            case = self.get(year, person_id)
            if case is None or case["status"] != "open":
                return
            kept, others = case.get("kept") or {}, list(case.get("others") or [])
            new_kept, new_others = change(kept, others)
            new_others = [p for p in new_others if p.get("household_no") != new_kept.get("household_no")]
            if (new_kept, new_others) == (kept, others):
                return
            matched, _ = self.outbox.update(
                DUPLICATES, case["_id"], {"$set": {"kept": new_kept, "others": new_others}, "$inc": {"version": 1}},
                [changed_event(year, person_id, "open", new_kept, others=new_others)],
                where={"status": "open", "version": case.get("version", 0)}, correlation_id=correlation_id)
            if matched:
                return
        raise Conflict("DUPLICATE_BUSY", "该重复参保记录正在变化，请稍后再试")

    def get(self, year: int, person_id: str) -> dict[str, Any] | None:
        return self.db[DUPLICATES].find_one({"_id": f"{year}:{person_id}"}, {"_outbox": 0})

    def open_cases(self, year: int, person_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """person_id → open case, for flagging a household's members (one `_id` lookup each)."""
        out = {}
        for pid in person_ids:
            d = self.get(year, pid)
            if d is not None and d["status"] == "open":
                out[pid] = d
        return out

    def listing(self, status: str | None) -> list[dict[str, Any]]:
        """Cases of a status (or every case), oldest first: the status lists, then the cases by `_id`."""
        docs = self.by_status.documents([status] if status else STATUSES, self.db[DUPLICATES],
                                        lambda key, d: d["status"] == key, projection={"_outbox": 0})
        return sorted(docs, key=lambda d: (d["opened_at"], d["_id"]))

    def begin(self, case: dict[str, Any], target: dict[str, Any]) -> bool:
        """Take the decision for `target` before any household is written (no event: nothing is
        published until it is done): a second, different decision is refused from now on, the same
        one completes it (a retry after a crash). False when the case changed since it was read."""
        matched, _ = self.outbox.update(DUPLICATES, case["_id"], {"$set": {"pending": target}, "$inc": {"version": 1}},
                                        where={"status": "open", "version": case.get("version", 0)})
        return matched

    def resolve(self, case: dict[str, Any], decision: dict[str, Any], kept: dict[str, Any],
                correlation_id: str | None = None) -> bool:
        """Open → resolved once, with its event: `kept` is where the person stays; the places the
        case listed move into the decision (`left`), so a later re-opening starts from one place.
        False when the case was not open any more."""
        self.by_status.add("resolved", [case["_id"]])
        matched, _ = self.outbox.update(
            DUPLICATES, case["_id"], {"$set": {"status": "resolved", "resolution": decision, "kept": kept,
                                               "others": []}, "$unset": {"pending": ""}, "$inc": {"version": 1}},
            [changed_event(case["year"], case["person_id"], "resolved", kept, decision["keep"])],
            where={"status": "open", "version": case.get("version", 0)}, correlation_id=correlation_id)
        return matched

    # employee-insurance exclusions
    def exclude(self, year: int, person_ids: Iterable[str], source: str, at: datetime) -> int:
        from shared.store import insert_once
        return sum(insert_once(self.db[EXCLUSIONS], {"_id": f"{year}:{p}", "source": source, "at": at})
                   for p in person_ids)

    def excluded(self, year: int, person_id: str) -> bool:
        return self.db[EXCLUSIONS].find_one({"_id": f"{year}:{person_id}"}, {"_id": 1}) is not None

    def excluded_set(self, year: int) -> set[str]:
        """Loaded once per roster import (one scan) instead of one lookup per row."""
        prefix = f"{year}:"
        return {d["_id"][len(prefix):] for d in self.db[EXCLUSIONS].find({}, {"_id": 1}) if d["_id"].startswith(prefix)}
