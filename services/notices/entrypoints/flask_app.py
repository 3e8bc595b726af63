"""HTTP API of notices: what was sent (or queued) to a household."""
from __future__ import annotations

from flask import Flask
from marshmallow import Schema, fields

from shared.clock import Clock
from shared.logs import setup
from shared.masking import mask_phone
from shared.web import county_routes, create_service_app, path_year, query_param

from .. import bootstrap as boot


class NoticeOut(Schema):
    notice_id = fields.String()
    kind = fields.String()
    household_no = fields.String(allow_none=True, metadata={"description": "null on a town's list item about no one household"})
    recipient_name = fields.String(allow_none=True)
    recipient_phone = fields.String(allow_none=True, metadata={"description": "masked; null when no phone is known"})
    channel = fields.String()
    status = fields.String()
    text = fields.String()


class NoticeList(Schema):
    notices = fields.List(fields.Nested(NoticeOut))


def render(d: dict) -> dict:
    return {"notice_id": d["_id"], "kind": d["kind"], "household_no": d.get("household_no"),
            "recipient_name": d.get("recipient_name"), "recipient_phone": mask_phone(d.get("recipient_phone")),
            "channel": d["channel"], "status": d["status"], "text": d["text"]}


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, api = create_service_app(c)
    county_routes(api, c, declare)
    return app


def declare(api, c) -> None:
    """The routes of one county, bound to its container `c` (shared/web.py county_routes)."""
    repo = boot.repository(c)

    @api.route("/v1/households/{year}/{household_no}/notices", "GET", summary="某户的通知记录",
               permission="notices:read", response=NoticeList)
    def household_notices(principal, year, household_no):
        path_year(year)
        docs = repo.for_household(household_no, int(year))
        for d in docs:
            principal.check_township(d["township"])
        return {"notices": [render(d) for d in docs]}

    @api.route("/v1/townships/{township}/notices/{year}", "GET", summary="乡镇工作清单（代扣失败、困难群众未参保等）",
               permission="notices:read", response=NoticeList, query=[query_param("kind", maxLength=60)])
    def township_notices(principal, township, year):
        from flask import request
        principal.check_township(township)
        path_year(year)
        return {"notices": [render(d) for d in repo.listing(int(year), township, request.args.get("kind"))]}
