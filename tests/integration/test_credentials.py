"""A newcomer's credentials from the CLI (tools/credentials.py), accepted by the real services for
exactly their scope, on the real store: township staff within their township, a system at the one
service and for the permissions it was granted (the HTTP identity batch of docs/identity-feed.md),
a village collector for its village only; a revoked token no longer opens anything.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from datetime import date, datetime

import pytest

from services.payments.entrypoints.flask_app import create_app as payments_app
from services.registry.entrypoints.flask_app import create_app as registry_app
from services.subsidy.entrypoints.flask_app import create_app as subsidy_app
from shared import signing
from shared.clock import SHANGHAI, FixedClock
from shared.config import ROOT
from tests.helpers import household_payload
from tools.ids import make_id

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)


def cli(d, *args):
    """The command as a newcomer runs it (its own process, its exit status, its two streams)."""
    return subprocess.run([sys.executable, "-m", "tools.credentials", "--tokens-file", str(d / "tokens.json"),
                           "--gateways-file", str(d / "gw.json"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def issued(d, *args) -> str:
    r = cli(d, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def files(namespace, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-secrets")
    old = {k: os.environ.get(k) for k in ("AUTH_TOKENS_FILE", "GATEWAY_KEYS_FILE")}
    os.environ.update(AUTH_TOKENS_FILE=str(d / "tokens.json"), GATEWAY_KEYS_FILE=str(d / "gw.json"))
    yield d
    for k, v in old.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def signed(client, gid, secret, path, payload):
    body = json.dumps(payload, ensure_ascii=False).encode()
    ts, nonce = str(int(NOW.timestamp())), secrets.token_hex(16)
    return client.post(path, data=body, headers={
        "X-Gateway-Id": gid, "X-Timestamp": ts, "X-Nonce": nonce, "Content-Type": "application/json",
        "X-Signature": signing.sign(secret, "POST", path, ts, nonce, body)})


def test_issued_tokens_open_exactly_their_scope_and_a_revoked_one_nothing(files):
    county = issued(files, "issue-token", "--role", "county", "--subject", "county-ops")
    baiya = issued(files, "issue-token", "--role", "township", "--township", "白牙市镇", "--subject", "baiyashi-staff")
    civil = issued(files, "issue-token", "--role", "system", "--subject", "civil_affairs",
                   "--permissions", "identities:submit,identities:read", "--services", "subsidy")
    text = (files / "tokens.json").read_text(encoding="utf-8")
    assert all(t and t not in text for t in (county, baiya, civil))  # only hashes are kept
    assert stat.S_IMODE((files / "tokens.json").stat().st_mode) == 0o600
    listed = json.loads(issued(files, "list"))
    assert [(t["subject"], t["role"]) for t in listed["tokens"]] == [
        ("county-ops", "county"), ("baiyashi-staff", "township"), ("civil_affairs", "system")]

    registry = registry_app(FixedClock(NOW)).test_client()
    own = household_payload("CRED-0001", "白牙市镇", seed=501)
    other = household_payload("CRED-0002", "花桥镇", seed=502)
    assert registry.post("/v1/counties/431122/households", json=own, headers=bearer(baiya)).status_code == 201
    r = registry.post("/v1/counties/431122/households", json=other, headers=bearer(baiya))
    assert (r.status_code, r.json["code"]) == (403, "SCOPE_TOWNSHIP")
    r = registry.get("/v1/counties/431122/duplicates", headers=bearer(baiya))  # county staff only (duplicates:manage)
    assert (r.status_code, r.json["code"]) == (403, "ROLE_FORBIDDEN")
    assert registry.get("/v1/counties/431122/duplicates", headers=bearer(county)).status_code == 200
    r = registry.get("/v1/counties/431122/households/2020/CRED-0001", headers=bearer(civil))  # a subsidy-only token
    assert (r.status_code, r.json["code"]) == (401, "AUTH_INVALID")

    subsidy = subsidy_app(FixedClock(NOW)).test_client()
    update = {"id_number": make_id(date(1971, 3, 4), 41), "category": "dibao_rural", "action": "grant",
              "effective_date": "2019-09-01", "source_system": "civil_affairs", "source_ref": "MZ-CLI-1"}
    r = subsidy.post("/v1/counties/431122/identity-batches", json={"updates": [update]}, headers=bearer(civil))
    assert r.status_code == 202 and r.json["items"][0]["status"] == "queued", r.json
    r = subsidy.post("/v1/counties/431122/identity-batches", json={"updates": [update]}, headers=bearer(baiya))
    assert (r.status_code, r.json["code"]) == (403, "ROLE_FORBIDDEN")

    r = cli(files, "revoke", "--subject", "baiyashi-staff")
    assert r.returncode == 0, r.stderr
    restarted = registry_app(FixedClock(NOW)).test_client()  # services read the file at start
    r = restarted.get("/v1/counties/431122/households/2020/CRED-0001", headers=bearer(baiya))
    assert (r.status_code, r.json["code"]) == (401, "AUTH_INVALID")
    assert restarted.get("/v1/counties/431122/households/2020/CRED-0001", headers=bearer(county)).status_code == 200


def test_issued_gateway_keys_sign_within_their_reach(files):
    bank = issued(files, "issue-gateway-key", "--id", "bank-cli", "--kind", "bank", "--channels", "mobile_app,pos")
    collector = issued(files, "issue-gateway-key", "--id", "collector-cli", "--kind", "village_collector",
                       "--villages", "白牙市镇/五一村", "--channels", "village_cash")
    keys = json.loads((files / "gw.json").read_text(encoding="utf-8"))["gateways"]
    assert {g["id"]: g["secret"] for g in keys} == {"bank-cli": bank, "collector-cli": collector}  # it signs
    assert stat.S_IMODE((files / "gw.json").stat().st_mode) == 0o600
    assert all("secret" not in g for g in json.loads(issued(files, "list"))["gateways"])

    payments = payments_app(FixedClock(NOW)).test_client()
    body = {"household_no": "CRED-NONE", "year": 2020}
    r = signed(payments, "bank-cli", bank, "/v1/counties/431122/quotes", body)  # signature accepted: the household is unknown
    assert r.status_code == 404, r.json
    r = signed(payments, "collector-cli", collector, "/v1/counties/431122/quotes", body)  # not in its village
    assert (r.status_code, r.json["code"]) == (403, "GATEWAY_SCOPE")
    r = signed(payments, "bank-cli", "not-the-secret", "/v1/counties/431122/quotes", body)
    assert (r.status_code, r.json["code"]) == (401, "SIGNATURE_INVALID")

    assert cli(files, "revoke", "--gateway", "bank-cli").returncode == 0
    r = signed(payments_app(FixedClock(NOW)).test_client(), "bank-cli", bank, "/v1/counties/431122/quotes", body)
    assert (r.status_code, r.json["code"]) == (401, "SIGNATURE_INVALID")


@pytest.mark.parametrize("args, code", [
    (("issue-token", "--role", "township", "--subject", "x"), "TOWNSHIP_REQUIRED"),
    (("issue-token", "--role", "township", "--township", "火星镇", "--subject", "x"), "TOWNSHIP_UNKNOWN"),
    (("issue-token", "--role", "system", "--subject", "x"), "PERMISSIONS_REQUIRED"),
    (("issue-token", "--role", "system", "--subject", "x", "--permissions", "households:write"),
     "PERMISSION_NOT_GRANTABLE"),
    (("issue-token", "--role", "township", "--township", "白牙市镇", "--subject", "x",
      "--permissions", "corrections:decide"), "PERMISSION_BEYOND_ROLE"),
    (("issue-token", "--role", "county", "--subject", "x", "--services", "payment"), "SERVICE_UNKNOWN"),
    (("issue-token", "--role", "county", "--subject", "x", "--county", "武鸣县"), "COUNTY_UNKNOWN"),
    (("issue-gateway-key", "--id", "c", "--kind", "village_collector", "--channels", "village_cash"),
     "COLLECTOR_SCOPE_REQUIRED"),
    (("issue-gateway-key", "--id", "c", "--kind", "village_collector", "--channels", "village_cash",
      "--villages", "白牙市镇/没有村"), "VILLAGE_UNKNOWN"),
    (("issue-gateway-key", "--id", "b", "--kind", "bank", "--channels", "withholding"), "CHANNEL_UNKNOWN"),
    (("issue-gateway-key", "--id", "b", "--kind", "bank", "--channels", "pos", "--townships", "白牙市镇"),
     "SCOPE_NOT_ALLOWED"),
    (("revoke", "--subject", "nobody"), "NOT_FOUND"),
])
def test_bad_arguments_are_refused_with_their_code_and_nothing_is_written(tmp_path, args, code):
    r = cli(tmp_path, *args)
    assert r.returncode == 2 and code in r.stderr and r.stdout == "", (r.returncode, r.stderr)
    assert not (tmp_path / "tokens.json").exists() and not (tmp_path / "gw.json").exists()


def test_a_subject_holds_one_token_until_it_is_replaced(tmp_path):
    first = issued(tmp_path, "issue-token", "--role", "county", "--subject", "ops")
    r = cli(tmp_path, "issue-token", "--role", "county", "--subject", "ops")
    assert r.returncode == 2 and "SUBJECT_EXISTS" in r.stderr
    second = issued(tmp_path, "issue-token", "--role", "county", "--subject", "ops", "--replace")
    [entry] = json.loads((tmp_path / "tokens.json").read_text())["tokens"]
    assert second != first and first not in json.dumps(entry) and entry["subject"] == "ops"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []  # no temporary left over
