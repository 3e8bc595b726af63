"""Read-your-writes across services: a token a writer's reply carries, a reader's promise to wait.

Registry's reply to a mid-year approval (201) carries `consistency_token`; payments learns of the
approval only when registry.mid_year.approved reaches it (about half a second later). A quote that
names the token answers SYNC_PENDING (409, `Retry-After`) until payments has seen that approval's
version, instead of a refusal (WINDOW_CLOSED) the caller's own approval contradicts.

Form: `my1.<version>.<person digest>.<year>.<household_no>`. The digest (16 hex of SHA-256 over
year and ID number, in letters) keeps the ID number out of the reply, as the masked `id_number` beside it; it
is no secret and no proof of anything: the token only says what to wait for.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import Conflict, ValidationFailed

PREFIX = "my1"
RETRY_AFTER_SECONDS = 1


_LETTERS = str.maketrans("0123456789abcdef", "ghijklmnopqrstuv")
DIGEST_ALPHABET = frozenset("ghijklmnopqrstuv")


def person_digest(year: int, person_id: str) -> str:
    """16 hex digits of SHA-256 written in letters: no run of digits a reply's masking would take
    for a phone or ID number."""
    return hashlib.sha256(f"{year}:{person_id}".encode()).hexdigest()[:16].translate(_LETTERS)


@dataclass(frozen=True)
class MidYearSeen:
    """The approval (its person and write count) a reader must have seen before it answers."""
    version: int
    digest: str
    year: int
    household_no: str

    def token(self) -> str:
        return f"{PREFIX}.{self.version}.{self.digest}.{self.year}.{self.household_no}"

    def names(self, year: int, person_id: str) -> bool:
        return person_digest(year, person_id) == self.digest


def mid_year_token(year: int, household_no: str, person_id: str, version: int) -> str:
    return MidYearSeen(version, person_digest(year, person_id), year, household_no).token()


def parse_mid_year_token(text: str) -> MidYearSeen:
    parts = text.split(".", 4)
    digits = re.compile(r"[0-9]{1,12}")  # ASCII: '²'.isdigit() is True but int('²') raises
    ok = (len(parts) == 5 and parts[0] == PREFIX and digits.fullmatch(parts[1]) and digits.fullmatch(parts[3]) and parts[4]
          and len(parts[2]) == 16 and set(parts[2]) <= DIGEST_ALPHABET)
    if not ok:
        raise ValidationFailed("CONSISTENCY_TOKEN_INVALID", "一致性令牌格式不正确（应原样使用中途参保批准应答中的 consistency_token）")
    return MidYearSeen(int(parts[1]), parts[2], int(parts[3]), parts[4])


class SyncPending(Conflict):
    """The reader has not yet seen the write the caller's token names: retry after a moment."""

    retry_after = RETRY_AFTER_SECONDS

    def __init__(self, message: str, details=None):
        super().__init__("SYNC_PENDING", message, details)
