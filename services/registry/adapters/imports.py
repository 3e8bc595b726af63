"""Import jobs in the store: the uploaded file in 1 MiB chunks, a status document, problem pages.

Keeping the file in the registry's own database means the web process that receives it and the
worker that runs it share nothing but the store. All lookups are by `_id`.
"""
from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import IO, Any, Iterator

from shared.store import IndexSpec

IMPORTS, CHUNKS, PROBLEMS = "imports", "import_chunks", "import_problems"
CHUNK = 1 << 20
LEASE = timedelta(minutes=2)
INDEXES = (IndexSpec(IMPORTS, (("status", 1),)),)


class ImportStore:
    def __init__(self, db):
        self.db = db

    def create(self, import_id: str, stream: IO[bytes], *, kind: str, file_name: str, year: int,
               principal: dict[str, Any] | None, at: datetime) -> dict[str, Any]:
        size, n = 0, 0
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            self.db[CHUNKS].insert_one({"_id": f"{import_id}:{n:06d}", "data": data})
            size += len(data)
            n += 1
        doc = {"_id": import_id, "status": "queued", "kind": kind, "file_name": file_name, "year": year,
               "size": size, "chunks": n, "principal": principal, "created_at": at, "fraction": 0.0,
               "counts": {}, "lease_until": None}
        self.db[IMPORTS].insert_one(doc)  # written last: a job is only visible once its file is whole
        return doc

    def get(self, import_id: str) -> dict[str, Any] | None:
        return self.db[IMPORTS].find_one({"_id": import_id})

    def claim_next(self, at: datetime) -> dict[str, Any] | None:
        """A queued job, or a running one whose worker stopped renewing its lease (it restarts whole:
        imports are idempotent)."""
        for doc in self.db[IMPORTS].find({"status": {"$in": ["queued", "running"]}}).sort("created_at", 1):
            if doc["status"] == "running" and doc.get("lease_until") and doc["lease_until"] > at:
                continue
            res = self.db[IMPORTS].update_one(
                {"_id": doc["_id"], "status": doc["status"], "lease_until": doc.get("lease_until")},
                {"$set": {"status": "running", "lease_until": at + LEASE, "started_at": at}})
            if res.modified_count:
                return self.get(doc["_id"])
        return None

    def progress(self, import_id: str, fraction: float, counts: dict[str, int], at: datetime) -> None:
        self.db[IMPORTS].update_one({"_id": import_id}, {"$set": {
            "fraction": round(fraction, 4), "counts": counts, "lease_until": at + LEASE}})

    def finish(self, import_id: str, status: str, counts: dict[str, int], at: datetime, error: dict | None = None) -> None:
        self.db[IMPORTS].update_one({"_id": import_id}, {"$set": {
            "status": status, "counts": counts, "fraction": 1.0, "finished_at": at, "error": error,
            "lease_until": None}})

    def write_problems(self, import_id: str, page: int, problems: list[dict]) -> None:
        self.db[PROBLEMS].replace_one({"_id": f"{import_id}:{page:06d}"},
                                      {"_id": f"{import_id}:{page:06d}", "problems": problems}, upsert=True)

    def problems(self, import_id: str, page: int) -> list[dict] | None:
        doc = self.db[PROBLEMS].find_one({"_id": f"{import_id}:{page:06d}"})
        return doc["problems"] if doc else None

    def open(self, job: dict[str, Any]) -> IO[bytes]:
        return _ChunkStream(self.db[CHUNKS], job["_id"], job["chunks"])


class _ChunkStream(io.RawIOBase):
    def __init__(self, coll, import_id: str, chunks: int):
        self.coll, self.import_id, self.chunks = coll, import_id, chunks
        self.n, self.buf = 0, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self.buf and self.n < self.chunks:
            self.buf = self.coll.find_one({"_id": f"{self.import_id}:{self.n:06d}"})["data"]
            self.n += 1
        k = min(len(b), len(self.buf))
        b[:k] = self.buf[:k]
        self.buf = self.buf[k:]
        return k

    def seekable(self) -> bool:
        return False
