"""Subsidy storage. Every hot path is an `_id` lookup or a unique `_id` insert (FerretDB pushes
down only `{_id: <string>}`):

- `identities`       `_id` ID number: the person's applied identity updates (the aggregate) and the
                     entitlement last published per year; entitlement events ride in its `_outbox`
- `identity_updates` `_id` "<source_system>:<source_ref>" (applied/unchanged: one effect per update)
                     or "rejected:<message id>": the report of every update received
- `residents`        `_id` "<year>:<ID number>": township, village and household (registry events)
- `households`       `_id` "<year>:<household_no>": its members' ID numbers (to see who left on a change)
- `freezes`          `_id` "<year>:<ID number>": what was charged at payment (缴费后不再补退), once
- `claims`           `_id` "<year>:<ID number>": 先缴后补 reimbursement claims, with their events
                     and a `version` every write checks (domain/claim.py)
- `ledger`           `_id` "<year>:<department>": persons and fen owed (直接代缴), counted once per person
- `cover` / `coverage` `_id` "<year>:<ID number>" / "<year>:<township>": each hardship person's
                     contribution and the per-township counters it feeds (crash-safe deltas)
- `batches`          `_id` batch id: HTTP batch submissions and their items
- `rollovers`        `_id` "entitlements:<year>": the year rollover's cursor and counts (handlers.publish_year)
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pymongo import ReplaceOne, UpdateOne
from pymongo.errors import DuplicateKeyError

from shared.clock import SHANGHAI
from shared.store import IndexSpec, KeyIndex, shard_key, OutboxWriter, count_once, find_by_ids, insert_many_once, insert_once

from ..domain.identity import PersonIdentities

IDENTITIES, UPDATES, RESIDENTS, FREEZES, CLAIMS = "identities", "identity_updates", "residents", "freezes", "claims"
UPDATE_DAYS = "identity_update_days"  # KeyIndex: the updates received on a Shanghai day, "<day>#<shard>";
UPDATE_DAY_SHARDS = 8                 # its key "days" lists the days that have any
LEDGER, COVER, COVERAGE, BATCHES, HOUSEHOLDS = "ledger", "cover", "coverage", "batches", "households"
ROLLOVERS = "rollovers"
OUTBOX_COLLECTIONS = (IDENTITIES, CLAIMS, COVER)
INDEXES = (
    IndexSpec(CLAIMS, (("year", 1), ("status", 1), ("department", 1))),
    IndexSpec(f"{LEDGER}_facts", (("counter", 1),)),
    IndexSpec(COVERAGE, (("year", 1),)),
)


def pkey(year: int, id_number: str) -> str:
    return f"{year}:{id_number}"


def _history_to_doc(h: dict[str, Any]) -> dict[str, Any]:
    return {**h, "effective_date": h["effective_date"].isoformat()}


def _history_from_doc(h: dict[str, Any]) -> dict[str, Any]:
    return {**h, "effective_date": date.fromisoformat(h["effective_date"])}


def _person_from_doc(d: dict[str, Any]) -> tuple[PersonIdentities, dict[str, Any]]:
    """The aggregate and the entitlements last published for it (year → event key)."""
    return PersonIdentities(d["_id"], [_history_from_doc(h) for h in d.get("history", [])]), d.get("published") or {}


class SubsidyRepository:
    def __init__(self, db, outbox: OutboxWriter):
        self.db = db
        self.outbox = outbox
        self.update_days = KeyIndex(db[UPDATE_DAYS])

    # ---- identities --------------------------------------------------------------------------
    def person(self, id_number: str) -> tuple[PersonIdentities, dict[str, Any]] | None:
        """The aggregate and the entitlements last published for it (year → event key)."""
        d = self.db[IDENTITIES].find_one({"_id": id_number}, {"_outbox": 0})
        return _person_from_doc(d) if d is not None else None

    def persons(self, id_numbers: list[str]) -> dict[str, tuple[PersonIdentities, dict[str, Any]]]:
        """`person` for many, one `_id $in` read; those with no identity record are left out (most)."""
        return {d["_id"]: _person_from_doc(d) for d in find_by_ids(self.db[IDENTITIES], id_numbers, {"_outbox": 0})}

    def save_person(self, p: PersonIdentities, published: dict[str, Any], events, *, correlation_id=None,
                    causation_id=None) -> None:
        self.outbox.update(IDENTITIES, p.id_number, {"$set": {
            "history": [_history_to_doc(h) for h in p.history], "published": published}}, events, upsert=True,
            correlation_id=correlation_id, causation_id=causation_id)

    def identity_ids_after(self, after: str, limit: int) -> list[str]:
        """A page of ID numbers with identities, in `_id` order (the rollover batch job; a scan)."""
        return [d["_id"] for d in self.db[IDENTITIES].find({"_id": {"$gt": after}}, {"_id": 1})
                .sort("_id", 1).limit(limit)]

    def rollover(self, year: int) -> dict[str, Any] | None:
        return self.db[ROLLOVERS].find_one({"_id": f"entitlements:{year}"})

    def save_rollover(self, year: int, run: dict[str, Any]) -> None:
        self.db[ROLLOVERS].replace_one({"_id": f"entitlements:{year}"}, {"_id": f"entitlements:{year}", **run},
                                       upsert=True)

    def update_log(self, key: str) -> dict[str, Any] | None:
        return self.db[UPDATES].find_one({"_id": key})

    def log_update(self, doc: dict[str, Any]) -> bool:
        """The report's row of an update, listed under the day it was received first (`updates`)."""
        day = doc["received_at"].astimezone(SHANGHAI).date().isoformat()
        self.update_days.add_many({"days": [day],
                                   shard_key(day, doc["_id"], UPDATE_DAY_SHARDS): [doc["_id"]]})
        return insert_once(self.db[UPDATES], doc)

    def count_duplicate(self, key: str, at: datetime) -> None:
        self.db[UPDATES].update_one({"_id": key}, {"$inc": {"duplicates": 1}, "$set": {"last_duplicate_at": at}})

    def updates(self, outcome: str | None, source: str | None, limit: int) -> list[dict[str, Any]]:
        """The report, newest first: day by day back from the newest, each day's lists then its rows by
        `_id`, until `limit` rows match; never a scan of every update received."""
        out: list[dict[str, Any]] = []
        for day in sorted(self.update_days.members("days"), reverse=True):
            rows = self.update_days.documents([f"{day}#{i}" for i in range(UPDATE_DAY_SHARDS)], self.db[UPDATES],
                                              lambda _k, d: True)
            out += sorted((d for d in rows if (not outcome or d.get("outcome") == outcome)
                           and (not source or d.get("source_system") == source)),
                          key=lambda d: (d["received_at"], d["_id"]), reverse=True)
            if len(out) >= limit:
                break
        return out[:limit]

    # ---- residents (registry read model) -----------------------------------------------------
    def resident(self, year: int, id_number: str) -> dict[str, Any] | None:
        return self.db[RESIDENTS].find_one({"_id": pkey(year, id_number)})

    def upsert_resident(self, year: int, id_number: str, fields: dict[str, Any]) -> None:
        self.upsert_residents([(year, id_number, fields)])

    def upsert_residents(self, rows: list[tuple[int, str, dict[str, Any]]]) -> None:
        """upsert_resident for a batch of (year, id number, fields), one bulk write in the given
        order (a person changed twice in a batch ends as the later change says)."""
        if rows:
            self.db[RESIDENTS].bulk_write([UpdateOne({"_id": pkey(year, pid)}, {
                "$set": fields, "$setOnInsert": {"year": year, "id_number": pid}}, upsert=True)
                for year, pid, fields in rows], ordered=True)

    def household_members(self, year: int, household_no: str) -> list[str]:
        d = self.db[HOUSEHOLDS].find_one({"_id": f"{year}:{household_no}"})
        return d["members"] if d else []

    def households_members(self, keys: list[tuple[int, str]]) -> dict[tuple[int, str], list[str]]:
        """household_members for many (year, household number), one `_id $in` read; unknown ones absent."""
        found = find_by_ids(self.db[HOUSEHOLDS], [f"{y}:{no}" for y, no in keys])
        return {(int(d["_id"].split(":", 1)[0]), d["_id"].split(":", 1)[1]): d["members"] for d in found}

    def set_households_members(self, rows: list[tuple[int, str, list[str]]]) -> None:
        """set_household_members for many (year, household number, members), one bulk write in order."""
        if rows:
            self.db[HOUSEHOLDS].bulk_write([ReplaceOne({"_id": f"{y}:{no}"}, {"_id": f"{y}:{no}", "members": m}, upsert=True)
                                            for y, no, m in rows], ordered=True)

    def set_household_members(self, year: int, household_no: str, members: list[str]) -> None:
        self.db[HOUSEHOLDS].replace_one({"_id": f"{year}:{household_no}"},
                                        {"_id": f"{year}:{household_no}", "members": members}, upsert=True)

    # ---- freezes, claims, ledger -------------------------------------------------------------
    def freeze(self, year: int, id_number: str) -> dict[str, Any] | None:
        return self.db[FREEZES].find_one({"_id": pkey(year, id_number)})

    def add_freezes(self, docs: list[dict[str, Any]]) -> set[str]:
        """Insert a household's freezes in one write; returns the ids that already existed."""
        return insert_many_once(self.db[FREEZES], docs)

    def claim(self, year: int, id_number: str) -> dict[str, Any] | None:
        return self.db[CLAIMS].find_one({"_id": pkey(year, id_number)}, {"_outbox": 0})

    def add_claim(self, doc: dict[str, Any], event, *, correlation_id=None, causation_id=None) -> bool:
        try:
            self.outbox.insert(CLAIMS, doc, [event], correlation_id=correlation_id, causation_id=causation_id)
            return True
        except DuplicateKeyError:
            return False

    def mark_claim_paid(self, claim_id: str, version: int, fields: dict[str, Any], event, *,
                        correlation_id=None) -> None:
        """Compare-and-set on the version read (0: a claim from before versions); StaleVersion when
        another write came first, nothing written."""
        self.outbox.save_versioned(CLAIMS, claim_id, version, {"$set": fields}, [event],
                                   correlation_id=correlation_id)

    def set_claim(self, claim_id: str, version: int, fields: dict[str, Any]) -> None:
        """Compare-and-set on the version read; StaleVersion when another write came first."""
        self.outbox.save_versioned(CLAIMS, claim_id, version, {"$set": fields}, [])

    def drop_freeze(self, year: int, id_number: str, order_no: str) -> None:
        """The freeze of a reversed payment goes (only that payment's: a later one is another's)."""
        self.db[FREEZES].delete_one({"_id": pkey(year, id_number), "order_no": order_no})

    def claims(self, year: int, status: str | None, department: str | None, limit: int) -> list[dict[str, Any]]:
        """Oldest first (then by `_id`, so pages are stable); `limit` 0: all."""
        flt = {"year": year, **{k: v for k, v in (("status", status), ("department", department)) if v}}
        return list(self.db[CLAIMS].find(flt, {"_outbox": 0}).sort([("created_at", 1), ("_id", 1)]).limit(limit))

    def count_ledger(self, year: int, department: str, id_number: str, subsidy_fen: int, fact: dict[str, Any]) -> bool:
        return count_once(self.db, LEDGER, f"{year}:{department}", pkey(year, id_number),
                          {"persons": 1, "owed_fen": subsidy_fen}, fact,
                          on_insert={"year": year, "department": department})

    def uncount_ledger(self, year: int, department: str, id_number: str, subsidy_fen: int, reversal_id: str,
                       fact: dict[str, Any]) -> bool:
        """Take a reversed payment's subsidy back out of its department's ledger, once per reversal;
        the statement lists it as a negative line (冲正)."""
        return count_once(self.db, LEDGER, f"{year}:{department}", f"{pkey(year, id_number)}:reversed:{reversal_id}",
                          {"persons": -1, "owed_fen": -subsidy_fen}, {**fact, "subsidy_fen": -subsidy_fen, "persons": -1},
                          on_insert={"year": year, "department": department})

    def ledger(self, year: int, departments: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for d in departments:  # one `_id` lookup each
            doc = self.db[LEDGER].find_one({"_id": f"{year}:{d}"})
            if doc:
                out[d] = doc
        return out

    def ledger_rows(self, year: int, department: str) -> list[dict[str, Any]]:
        """The statement's lines (a scan of the facts: an export, not a hot path)."""
        return list(self.db[f"{LEDGER}_facts"].find({"counter": f"{year}:{department}"}).sort("_id", 1))

    # ---- coverage ----------------------------------------------------------------------------
    def cover(self, year: int, id_number: str) -> dict[str, Any] | None:
        return self.db[COVER].find_one({"_id": pkey(year, id_number)}, {"_outbox": 0})

    def set_cover(self, year: int, id_number: str, state: dict | None, v: int, pending: dict) -> None:
        self.db[COVER].update_one({"_id": pkey(year, id_number)},
                                  {"$set": {"state": state, "v": v, "pending": pending}}, upsert=True)

    def finish_cover(self, year: int, id_number: str, events, *, correlation_id=None, causation_id=None) -> None:
        self.outbox.update(COVER, pkey(year, id_number), {"$unset": {"pending": ""}}, events,
                           correlation_id=correlation_id, causation_id=causation_id)

    def count_coverage(self, year: int, township: str, fact_key: str, inc: dict[str, int]) -> None:
        """`n` counts the counter's changes: figures read with a higher `n` are newer (the version
        subsidy.coverage.changed carries)."""
        count_once(self.db, COVERAGE, f"{year}:{township}", fact_key, {**inc, "n": 1}, {},
                   on_insert={"year": year, "township": township})

    def coverage(self, year: int, townships: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for t in townships:
            doc = self.db[COVERAGE].find_one({"_id": f"{year}:{t}"})
            if doc:
                out[t] = doc
        return out

    # ---- batches -----------------------------------------------------------------------------
    def add_batch(self, doc: dict[str, Any]) -> None:
        self.db[BATCHES].insert_one(doc)

    def set_batch_state(self, batch_id: str, state: str) -> None:
        self.db[BATCHES].update_one({"_id": batch_id}, {"$set": {"state": state}})

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        return self.db[BATCHES].find_one({"_id": batch_id})
