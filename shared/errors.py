"""Errors a caller can act on: a stable machine code, a zh-CN message and details.

Domain code raises these; the web adapter maps them to HTTP, the worker to retry or dead-letter.
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A caller's mistake or a rule that refuses the request (4xx, never retried)."""

    status = 422

    def __init__(self, code: str, message: str, details: Any = None, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Unauthorized(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class ValidationFailed(DomainError):
    status = 400
