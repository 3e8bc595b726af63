"""Households in MongoDB: one document per household and year (`_id` = "<year>:<household_no>"),
members inside it, and a person index (`_id` = "<year>:<id_number>") that makes a person belong to
one household per year.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.store import IndexSpec, OutboxWriter, insert_once

from ..domain.model import Household, Member

HOUSEHOLDS = "households"
PERSONS = "persons"
OUTBOX_COLLECTIONS = (HOUSEHOLDS,)
INDEXES = (
    IndexSpec(HOUSEHOLDS, (("year", 1), ("township", 1), ("village", 1))),
    IndexSpec(PERSONS, (("household", 1),)),
)


def household_key(year: int, household_no: str) -> str:
    return f"{year}:{household_no}"


def to_doc(hh: Household) -> dict[str, Any]:
    return {"_id": household_key(hh.year, hh.household_no), "household_no": hh.household_no, "year": hh.year,
            "county": hh.county, "township": hh.township, "village": hh.village, "head_phone": hh.head_phone,
            "members": [{**m.to_doc(), "status": m.status} for m in hh.members], "enrolment": hh.enrolment}


def from_doc(doc: dict[str, Any]) -> Household:
    members = [Member(m["person_id"], m["name"], m["relation"], m["category"], date.fromisoformat(m["birth_date"]),
                      m["sex"], m.get("status", "registered")) for m in doc["members"]]
    return Household(doc["household_no"], doc["year"], doc["county"], doc["township"], doc["village"],
                     doc.get("head_phone"), members, doc.get("enrolment") or {})


class HouseholdRepository:
    def __init__(self, db, outbox: OutboxWriter):
        self.db = db
        self.outbox = outbox

    def get(self, year: int, household_no: str) -> Household | None:
        doc = self.db[HOUSEHOLDS].find_one({"_id": household_key(year, household_no)}, {"_outbox": 0})
        return from_doc(doc) if doc else None

    def household_of(self, year: int, person_id: str) -> str | None:
        doc = self.db[PERSONS].find_one({"_id": f"{year}:{person_id}"})
        return doc["household"] if doc else None

    def add(self, hh: Household, correlation_id: str | None = None) -> None:
        """Claim every member for this household, then write the household with its events.

        A claim left by a write that failed half-way is taken over (its household does not exist).
        """
        key = household_key(hh.year, hh.household_no)
        claimed = []
        try:
            for m in hh.members:
                pid = f"{hh.year}:{m.person_id}"
                claim = {"_id": pid, "household": key, "township": hh.township, "village": hh.village}
                if insert_once(self.db[PERSONS], claim):
                    claimed.append(pid)
                    continue
                other = self.db[PERSONS].find_one({"_id": pid})
                if other and other["household"] != key:
                    owner = self.db[HOUSEHOLDS].find_one({"_id": other["household"]}, {"township": 1, "village": 1})
                    if owner is not None:  # 多地重复参保: the same person in another household
                        raise Conflict("DUPLICATE_PERSON", "该人员已在其他户登记参保", {
                            "person_id": m.person_id, "township": owner["township"], "village": owner["village"]})
                    self.db[PERSONS].replace_one({"_id": pid}, claim)
            try:
                self.outbox.insert(HOUSEHOLDS, to_doc(hh), hh.events, correlation_id=correlation_id)
            except DuplicateKeyError:
                raise Conflict("HOUSEHOLD_EXISTS", "该户本年度已登记", {"household_no": hh.household_no})
        except Exception:
            for pid in claimed:
                self.db[PERSONS].delete_one({"_id": pid})
            raise
        hh.events.clear()

    def save_payment(self, hh: Household, causation_id: str, correlation_id: str) -> None:
        doc = to_doc(hh)
        self.outbox.update(HOUSEHOLDS, doc["_id"], {"$set": {"enrolment": doc["enrolment"], "members": doc["members"]}},
                           hh.events, causation_id=causation_id, correlation_id=correlation_id)
        hh.events.clear()
