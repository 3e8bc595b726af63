"""What assessments read besides progress, and the evaluations they publish; every read an `_id` lookup.

- `assessment_inputs`: the prior year's absolute counts (`prior:<year>`, one document per policy
  year, with who loaded them), the items county staff score by hand (`entry:<year>:<township>`,
  Dong'an 2.4), and the money townships remitted into the county fund account (Nayong 000 二:
  汇划县新农合基金专户累计金额): one document per credit (`credit:<year>:<ref>`, the bank's
  reference: a credit sent twice is kept once); and `fund_credit_totals`, one document per year
  and township listing its credits (`<year>:<township>`, written with `$addToSet`, so a retried
  write adds nothing; townships × years, so a year's are read with one `_id $in` query).
- `evaluations`: one immutable document per published version (`<year>:<kind>:<no>:v<n>`, inserted
  once with its event), and `evaluation_heads` pointing at the newest version; a head left behind by
  a crash is healed by reading on to the next version.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from shared.store import insert_once, public

INPUTS = "assessment_inputs"
CREDIT_TOTALS = "fund_credit_totals"
EVALUATIONS = "evaluations"
HEADS = "evaluation_heads"
OUTBOX_COLLECTIONS = (EVALUATIONS,)


def evaluation_key(year: int, kind: str, no: int) -> str:
    return f"{year}:{kind}:{no}"


class AssessmentStore:
    def __init__(self, db, outbox=None):
        self.db = db
        self.outbox = outbox

    # ---- inputs --------------------------------------------------------------------------------

    def prior_year(self, year: int) -> dict | None:
        return public(self.db[INPUTS].find_one({"_id": f"prior:{year}"}))

    def save_prior_year(self, year: int, doc: dict[str, Any]) -> None:
        self.db[INPUTS].replace_one({"_id": f"prior:{year}"}, {"_id": f"prior:{year}", **doc}, upsert=True)

    def entry(self, year: int, township: str) -> dict | None:
        return public(self.db[INPUTS].find_one({"_id": f"entry:{year}:{township}"}))

    def save_entry(self, year: int, township: str, doc: dict[str, Any]) -> None:
        key = f"entry:{year}:{township}"
        self.db[INPUTS].replace_one({"_id": key}, {"_id": key, **doc}, upsert=True)

    def add_credit(self, year: int, township: str, ref: str, amount_fen: int, credited_at: datetime,
                   by: str, at: datetime) -> bool:
        """A credit into the county fund account; False when this reference was recorded before (the
        township's list is written either way: a crash between the two writes heals on the retry)."""
        fresh = insert_once(self.db[INPUTS], {"_id": f"credit:{year}:{ref}", "year": year, "township": township,
                                              "amount_fen": amount_fen, "credited_at": credited_at, "by": by, "at": at})
        stored = self.db[INPUTS].find_one({"_id": f"credit:{year}:{ref}"})
        self.db[CREDIT_TOTALS].update_one({"_id": f"{year}:{stored['township']}"}, {"$addToSet": {"credits": {
            "ref": ref, "amount_fen": stored["amount_fen"], "credited_at": stored["credited_at"]}}}, upsert=True)
        return fresh

    def credit(self, year: int, ref: str) -> dict | None:
        return public(self.db[INPUTS].find_one({"_id": f"credit:{year}:{ref}"}))

    def credit_lists(self, year: int, townships: list[str]) -> dict[str, list[dict]]:
        """Each township's credits (ref, amount_fen, credited_at), one query."""
        keys = [f"{year}:{t}" for t in townships]
        return {doc["_id"].split(":", 1)[1]: doc.get("credits", [])
                for doc in self.db[CREDIT_TOTALS].find({"_id": {"$in": keys}})}

    # ---- evaluations ---------------------------------------------------------------------------

    def latest(self, year: int, kind: str, no: int) -> dict | None:
        key = evaluation_key(year, kind, no)
        head = self.db[HEADS].find_one({"_id": key})
        n = head["version"] if head else 0
        doc = None
        while True:  # the head may lag behind a version whose head write was lost
            nxt = self.db[EVALUATIONS].find_one({"_id": f"{key}:v{n + 1}"})
            if nxt is None:
                break
            doc, n = nxt, n + 1
        if doc is None and n:
            doc = self.db[EVALUATIONS].find_one({"_id": f"{key}:v{n}"})
        return public(doc)

    def version(self, year: int, kind: str, no: int, version: int) -> dict | None:
        return public(self.db[EVALUATIONS].find_one({"_id": f"{evaluation_key(year, kind, no)}:v{version}"}))

    def publish(self, doc: dict[str, Any], events, correlation_id: str | None = None) -> bool:
        """Insert version `doc["version"]` with its events (once: False if that version exists, e.g.
        a second worker evaluated the same deadline), then move the head to it."""
        key = evaluation_key(doc["year"], doc["kind"], doc["no"])
        try:
            self.outbox.insert(EVALUATIONS, {"_id": f"{key}:v{doc['version']}", **doc}, events,
                               correlation_id=correlation_id)
        except DuplicateKeyError:
            return False
        self.db[HEADS].update_one({"_id": key}, {"$max": {"version": doc["version"]}}, upsert=True)
        return True


    def last_of(self, year: int, kind: str) -> dict | None:
        """The newest of a series numbered by instant (the rankings of a rhythm)."""
        head = self.db[HEADS].find_one({"_id": f"{year}:{kind}:last"})
        return self.version(year, kind, head["no"], 1) if head else None

    def note_last(self, year: int, kind: str, no: int) -> None:
        self.db[HEADS].update_one({"_id": f"{year}:{kind}:last"}, {"$max": {"no": no}}, upsert=True)
