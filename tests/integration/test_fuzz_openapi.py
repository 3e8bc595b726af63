"""Schema fuzzing of every service's OpenAPI document (schemathesis), in process against the Flask
apps on the real store and broker, with a county token: no 5xx, every reply as documented.
Bounded: a few examples per operation (FUZZ_EXAMPLES, default 8), so all five run in minutes."""
from __future__ import annotations

import os
import secrets
from datetime import datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, \
    status_code_conformance

from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from tests.helpers import secret_files

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)
COUNTY = secrets.token_hex(8)
GATEWAY_SECRET = secrets.token_hex(16)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module", autouse=True)
def files(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
            {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "东安县"}],
            gateways=[{"id": "bank-a", "secret": GATEWAY_SECRET, "kind": "bank", "channels": ["mobile_app"]}]):
        yield


def _app(service: str):
    import importlib
    return importlib.import_module(f"services.{service}.entrypoints.flask_app").create_app(FixedClock(NOW))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", ["registry", "payments", "subsidy", "scoring", "notices"])
def test_no_operation_answers_5xx_or_off_its_schema(service):
    app = _app(service)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.generate], database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {COUNTY}"}
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except Exception as e:  # noqa: BLE001 — collect every operation's first failure
            failures.append(f"{op.method.upper()} {op.path}: {str(e)[:600]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("service, path", [("scoring", "/v1/progress/%C2%B2"), ("subsidy", "/v1/coverage/%C2%B2"),
                                           ("registry", "/v1/accuracy/%C2%B2"), ("notices", "/v1/townships/x/notices/%C2%B2")])
def test_a_year_of_unicode_digits_is_a_clear_refusal_not_a_500(service, path):
    """Found by the fuzzing above: '²'.isdigit() is True but int('²') raises."""
    r = _app(service).test_client().get(path, headers={"Authorization": f"Bearer {COUNTY}"})
    assert 400 <= r.status_code < 500 and r.json["code"], (r.status_code, r.json)


@pytest.mark.parametrize("service", ["registry", "payments", "subsidy", "scoring", "notices"])
def test_every_year_in_a_path_outside_2000_2100_is_a_clear_refusal(service):
    """Found by FUZZ_EXAMPLES=60: GET /v1/holidays/0 was a 500 (date(0, 6, 1)) and a 12-digit year a
    500 on every year path (the store's 8-byte int limit); one parser (shared.web.path_year) now."""
    import re
    client = _app(service).test_client()
    ops = client.get("/openapi.json").json["paths"]
    answers = []
    for path, methods in ops.items():
        if "{year}" not in path:
            continue
        for method in methods:
            for year in ("0", "0000", "1999", "2101", "9" * 30, "9" * 5000):
                url = re.sub(r"\{[a-z_]+\}", "x", path.replace("{year}", year))
                r = client.open(url, method=method.upper(), json={}, headers={"Authorization": f"Bearer {COUNTY}"})
                answers.append((method, path, year[:8], r.status_code, (r.json or {}).get("code")))
    assert answers
    wrong = [a for a in answers if not 400 <= a[3] < 500 or not a[4]]  # a body check may speak first
    assert not wrong, wrong


HUGE = 10 ** 20


def test_a_body_year_outside_2000_2100_is_refused_not_stored():
    """An exclusion list for year 10**20 was accepted (200) and stored; a body year is now bounded as a
    path year is (shared.web.year_range), and the bounds are in the OpenAPI document."""
    app = _app("registry")
    r = app.test_client().post("/v1/exclusions", json={"year": HUGE, "id_numbers": ["431122199001010012"],
                                                       "source": "人社局名单"}, headers={"Authorization": f"Bearer {COUNTY}"})
    assert (r.status_code, r.json["code"]) == (400, "VALIDATION_FAILED"), r.json
    year = app.test_client().get("/openapi.json").json["components"]["schemas"]["ExclusionIn"]["properties"]["year"]
    assert (year.get("minimum"), year.get("maximum")) == (2000, 2100), year


@pytest.mark.parametrize("body", [
    {"year": 2020, "household_no": "4311220001", "consistency_token": "my1.².ghijklmnopqrstuv.2020.4311220001"},
])
def test_a_signed_quote_with_a_bad_consistency_token_is_a_clear_refusal(body):
    """Signed routes are out of the fuzzer's reach (it has no gateway key): a consistency token with '²'
    for its version passed isdigit() and crashed int() (500)."""
    from tests.helpers import signed_post
    r = signed_post(_app("payments").test_client(), "/v1/quotes", body, secret=GATEWAY_SECRET, at=NOW)
    assert (r.status_code, r.json["code"]) == (400, "CONSISTENCY_TOKEN_INVALID"), r.json
