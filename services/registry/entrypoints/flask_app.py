"""HTTP API of the registry (thin: parse, call a use case, render)."""
from __future__ import annotations

from flask import Flask

from shared.clock import Clock
from shared.errors import ValidationFailed
from shared.logs import correlation_id, setup
from shared.masking import mask_id, mask_phone
from shared.web import create_base_app

from .. import bootstrap as boot
from ..domain.model import Household
from ..service_layer import handlers
from .schemas import HouseholdIn, HouseholdOut

STAFF = ("county", "township")


def render(hh: Household, full_ids: bool = False) -> dict:
    return {"household_no": hh.household_no, "year": hh.year, "county": hh.county, "township": hh.township,
            "village": hh.village, "head_name": hh.head.name, "head_phone": mask_phone(hh.head_phone),
            "status": hh.enrolment.get("status", "registered"),
            "members": [{"id_number": m.person_id if full_ids else mask_id(m.person_id), "name": m.name,
                         "relation": m.relation, "category": m.category, "status": m.status} for m in hh.members]}


def create_app(clock: Clock | None = None) -> Flask:
    c = boot.bootstrap(clock)
    setup(c.service)
    app, api = create_base_app(c.service, c.tokens, {"store": c.store_ok, "broker": c.broker_ok})
    repo = boot.repository(c)

    @api.route("/v1/households", "POST", summary="登记一户（户主及家庭成员）", roles=STAFF, body=HouseholdIn,
               response=HouseholdOut, status=201)
    def register_household(principal, data):
        hh = handlers.register_household(repo, c.policy, data, principal, correlation_id.get())
        return render(hh)

    @api.route("/v1/households/{year}/{household_no}", "GET", summary="查询一户", roles=STAFF, response=HouseholdOut)
    def get_household(principal, year, household_no):
        if not year.isdigit():
            raise ValidationFailed("BAD_YEAR", "年度必须是数字", {"year": year})
        return render(handlers.get_household(repo, int(year), household_no, principal))

    return app
