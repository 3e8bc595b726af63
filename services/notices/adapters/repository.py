"""Notices, one document each (`_id` = natural key such as "receipt:<order_no>": exactly once).

Lists by household, by township and kind, by office and by event are documents of their own in
`notice_lists`, read by `_id`, their notices by `_id`; never a scan of `notices`, which grows with
the county (a second per household list at 3,000 households before, issue 13).

- Small lists (`household:<year>:<no>`, `event:<id>`, `office:<year>:<office>`): one document each,
  the ids of its notices added with `$addToSet` (again on a redelivery: a crash between the writes
  heals).
- A township's list of a kind (`township:<year>:<township>:<kind>`) grows with the township (one
  receipt per paying household: tens of thousands in a large township), so it is paged: the head
  document holds the count `n`, pages `<list>#<k>` hold PAGE entries each. An append takes its slots
  with one `$inc` of the head and pushes to the pages those slots fall in, so no write rewrites
  more than a page, and a page of the list reads one or two pages. A notice is appended once: it is
  marked `listed` after its append, and a redelivered notice already marked is not appended again
  (a crash between the append and the mark lists it twice; readers drop the repeat).
"""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pymongo import ReturnDocument, UpdateOne

from shared.store import IndexSpec, find_by_ids, insert_many_once

from ..domain.notice import Notice
from . import deliveries

NOTICES = "notices"
LISTS = "notice_lists"
PAGE = 500  # entries per page of a township's list
KINDS = ("receipt", "withholding_failure", "correction_overdue", "audit_overdue", "claim_created", "claim_paid", "coverage_alert",
         "stage_result", "forecast", "reminder", "ranking", "bulletin")
OFFICE_CHANNELS = ("internal", "webhook")  # notices to an office (县税务局, 民政部门, a township government), not a person
OUTBOX_COLLECTIONS: tuple[str, ...] = ()
INDEXES = (IndexSpec(NOTICES, (("household_no", 1), ("year", 1))),
           IndexSpec(NOTICES, (("year", 1), ("township", 1), ("kind", 1))), *deliveries.INDEXES)


class NoticeRepository:
    def __init__(self, db, county: str = ""):
        self.db = db
        self.county = county

    def add(self, n: Notice, at: datetime, event_id: str | None = None) -> bool:
        """The notice once (its natural `_id`), its pointer in `deliveries_due` (once per notice),
        its lists; True if this call created it (add_many for one)."""
        return bool(self.add_many([(n, event_id)], at))

    def add_many(self, notices: list[tuple[Notice, str | None]], at: datetime) -> set[str]:
        """Notices (each with the event that made it), each once by its natural `_id`, in a few
        store commands whatever their number: the notices in one insert, those that existed read
        back in one query (a redelivery: the first delivery's copy stands, its created_at lists
        it), the delivery pointers of those still queued and never attempted in one insert (a
        crash between the inserts is healed; the pointer's own `_id` keeps it one), the lists.
        Returns the ids this call created."""
        docs = []
        for n, event_id in notices:
            doc = asdict(n)
            doc["_id"] = doc.pop("notice_id")
            doc["created_at"] = at
            if event_id:
                doc["event_id"] = event_id  # the event that made it (GET /v1/counties/{county}/events/{id}/notices)
            if doc["status"] == "queued":
                doc["delivery"] = deliveries.fresh_delivery(self.county, doc["_id"])
            docs.append(doc)
        docs = list({d["_id"]: d for d in docs}.values())
        if not docs:
            return set()
        existed = insert_many_once(self.db[NOTICES], docs)
        first = {d["_id"]: d for d in find_by_ids(self.db[NOTICES], existed)}
        stored = [first.get(d["_id"], d) for d in docs]
        due = [d for d in stored if d.get("status") == "queued" and
               (d["_id"] not in existed or not (d.get("delivery") or {}).get("attempt_no"))]
        deliveries.DeliveryStore(self.db, self.county).point_due_many([(d["_id"], at, d["channel"]) for d in due])
        self._list(stored)
        return {d["_id"] for d in docs} - existed

    def _list(self, docs: list[dict]) -> None:
        """Each notice into its lists: household, the event that made it, the office it is for
        (one `$addToSet` per list, all in one bulk write), and its township's list of its kind
        (paged; only notices not `listed` yet, which are then marked)."""
        small: dict[str, list[dict]] = {}
        paged: dict[str, list[dict]] = {}
        for doc in docs:
            entry = {"id": doc["_id"], "at": doc["created_at"]}
            if doc.get("household_no"):
                small.setdefault(f"household:{doc['year']}:{doc['household_no']}", []).append(entry)
            if doc.get("event_id"):
                small.setdefault(f"event:{doc['event_id']}", []).append(entry)
            if doc.get("channel") in OFFICE_CHANNELS:
                small.setdefault(f"office:{doc['year']}:{doc['recipient_name']}", []).append(entry)
            if doc.get("township") and not doc.get("listed"):
                paged.setdefault(f"township:{doc['year']}:{doc['township']}:{doc['kind']}", []).append(entry)
        if small:
            self.db[LISTS].bulk_write([UpdateOne({"_id": lid}, {"$addToSet": {"items": {"$each": entries}}}, upsert=True)
                                       for lid, entries in small.items()], ordered=False)
        if paged:
            pushes = []
            for lid, entries in paged.items():
                head = self.db[LISTS].find_one_and_update({"_id": lid}, {"$inc": {"n": len(entries)}},
                                                          upsert=True, return_document=ReturnDocument.AFTER)
                first_slot = int(head["n"]) - len(entries)
                for page in range(first_slot // PAGE, (first_slot + len(entries) - 1) // PAGE + 1):
                    part = entries[max(0, page * PAGE - first_slot):(page + 1) * PAGE - first_slot]
                    pushes.append(UpdateOne({"_id": f"{lid}#{page}"}, {"$push": {"items": {"$each": part}}}, upsert=True))
            self.db[LISTS].bulk_write(pushes, ordered=False)
            self.db[NOTICES].update_many({"_id": {"$in": [e["id"] for es in paged.values() for e in es]}},
                                         {"$set": {"listed": True}})

    def _paged(self, list_ids: list[str], offset: int = 0, limit: int | None = None) -> tuple[list[dict], int]:
        """Entries of paged lists: with one list, only the pages [offset, offset + limit) fall in;
        with several (every kind of a township), all of their pages, merged by time. Repeats dropped."""
        heads = {d["_id"]: d for d in find_by_ids(self.db[LISTS], list_ids)}
        total = sum(int(h.get("n", 0)) for h in heads.values())
        wanted = []
        for lid in list_ids:
            n = int((heads.get(lid) or {}).get("n", 0))
            lo, hi = (offset, n if limit is None else min(n, offset + limit)) if len(list_ids) == 1 else (0, n)
            wanted += [f"{lid}#{k}" for k in range(lo // PAGE, (hi - 1) // PAGE + 1)] if hi > lo else []
        pages = {d["_id"]: d.get("items", []) for d in find_by_ids(self.db[LISTS], wanted)}
        items, seen = [], set()
        for pid in wanted:
            for x in sorted(pages.get(pid, []), key=lambda x: (x["at"], x["id"])):
                if x["id"] not in seen:
                    seen.add(x["id"])
                    items.append(x)
        if len(list_ids) == 1:
            skip = offset - (offset // PAGE) * PAGE
            return items[skip:skip + limit] if limit is not None else items[skip:], total
        items.sort(key=lambda x: (x["at"], x["id"]))
        return (items[offset:offset + limit] if limit is not None else items[offset:]), total

    def _notices(self, list_ids: list[str], offset: int = 0, limit: int | None = None) -> tuple[list[dict], int]:
        items = [x for lid in list_ids for x in (self.db[LISTS].find_one({"_id": lid}) or {}).get("items", [])]
        items.sort(key=lambda x: (x["at"], x["id"]))
        page = items[offset:offset + limit] if limit is not None else items[offset:]
        return self._read(page), len(items)

    def _read(self, entries: list[dict]) -> list[dict]:
        """The notices of list entries, in their order (one `_id $in` read a page)."""
        found = {d["_id"]: d for d in find_by_ids(self.db[NOTICES], [x["id"] for x in entries])}
        return [found[x["id"]] for x in entries if x["id"] in found]

    def get(self, notice_id: str) -> dict | None:
        return self.db[NOTICES].find_one({"_id": notice_id})

    def save_contact(self, p: dict) -> None:
        """The household head's name and phone, from registry snapshots (for claim notices)."""
        key = f"{p['year']}:{p['household_no']}"
        self.db["contacts"].update_one({"_id": key}, {"$set": {  # $set: a household's opt-outs stay
            "head_name": p["head_name"], "head_phone": p.get("head_phone"), "township": p["township"]}}, upsert=True)

    def save_contacts(self, payloads: list[dict]) -> None:
        """save_contact for a batch of snapshots, one bulk write in order."""
        if payloads:
            self.db["contacts"].bulk_write([UpdateOne({"_id": f"{p['year']}:{p['household_no']}"}, {"$set": {
                "head_name": p["head_name"], "head_phone": p.get("head_phone"), "township": p["township"]}},
                upsert=True) for p in payloads], ordered=True)

    def set_opt_out(self, year: int, household_no: str, kinds: list[str], by: str, reason: str, at: datetime) -> bool:
        """The kinds of notice a household declined (only reminders may be: receipts and money notices
        always go). False: no such household known to notices."""
        res = self.db["contacts"].update_one({"_id": f"{year}:{household_no}"}, {"$set": {
            "opt_out": kinds, "opt_out_by": by, "opt_out_reason": reason, "opt_out_at": at}})
        return bool(res.matched_count)

    def contact(self, year: int, household_no: str | None) -> dict | None:
        return self.db["contacts"].find_one({"_id": f"{year}:{household_no}"}) if household_no else None

    def listing(self, year: int, township: str, kind: str | None, offset: int = 0,
                limit: int = 200) -> tuple[list[dict], int]:
        """A township's work list (of one kind, or all), oldest first, a page at a time; and its length."""
        kinds = [kind] if kind else list(KINDS)
        entries, total = self._paged([f"township:{year}:{township}:{k}" for k in kinds], offset, limit)
        return self._read(entries), total

    def for_office(self, year: int, office: str, offset: int = 0, limit: int = 200) -> tuple[list[dict], int]:
        """An office's notices (its work list), oldest first, a page at a time; and its length."""
        return self._notices([f"office:{year}:{office}"], offset, limit)

    def for_event(self, event_id: str) -> list[dict]:
        return self._notices([f"event:{event_id}"])[0]

    def for_household(self, household_no: str, year: int) -> list[dict]:
        return self._notices([f"household:{year}:{household_no}"])[0]

    # ---- township leaders (乡镇主要领导), who receive the ranking by SMS (003) ----------------------

    def save_leaders(self, township: str, leaders: list[dict], by: str, at: datetime) -> dict:
        doc = {"_id": township, "township": township, "leaders": leaders, "updated_by": by, "updated_at": at}
        self.db["leaders"].replace_one({"_id": township}, doc, upsert=True)
        return doc

    def leaders(self, township: str) -> dict | None:
        return self.db["leaders"].find_one({"_id": township})
