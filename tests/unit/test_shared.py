"""Shared library behaviour people notice: masking, signatures, money, event catalogue, clock."""
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from shared import signing
from shared.clock import SHANGHAI, FixedClock, parse_instant
from shared.config import ROOT
from shared.events import CATALOGUE, Envelope, Event, catalogue_markdown, validate_payload
from shared.logs import JsonFormatter
from shared.masking import mask_id, mask_phone, mask_text
from shared.money import yuan


def test_id_and_phone_numbers_are_masked():
    assert mask_id("43112219800506001X") == "431122********001X"
    assert mask_phone("13912345678") == "139****5678"
    text = mask_text("身份证 43112219800506001X 电话 13912345678 订单 P20191115100000ABC")
    assert "19800506" not in text and "1234" not in text and "P20191115100000ABC" in text


def test_log_lines_are_json_and_never_carry_an_id_number():
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "registered %s", ("43112219800506001X",), None)
    line = json.loads(JsonFormatter("registry").format(rec))
    assert line["msg"] == "registered 431122********001X" and line["service"] == "registry"


def test_signature_covers_method_path_time_nonce_and_body():
    args = ("POST", "/v1/counties/431122/notifications", "1573783200", "n" * 16, b'{"amount_fen": 75000}')
    sig = signing.sign("secret", *args)
    assert signing.verify("secret", sig, *args)
    assert not signing.verify("other", sig, *args)
    assert not signing.verify("secret", sig, *args[:4], b'{"amount_fen": 75001}')
    assert not signing.verify("secret", sig, "POST", "/v1/counties/431122/orders", *args[2:])


def test_money_is_integer_fen_and_shown_in_yuan():
    assert yuan(75000) == "750.00" and yuan(5) == "0.05" and yuan(-120) == "-1.20"
    with pytest.raises(TypeError):
        yuan(750.0)


def test_fixed_clock_and_naive_times_are_shanghai():
    clock = FixedClock(datetime(2019, 11, 15, 2, 0, tzinfo=timezone.utc))
    clock.advance(timedelta(hours=1))
    assert clock.today_shanghai().isoformat() == "2019-11-15"
    assert parse_instant("2019-12-31T17:00:00").tzinfo == SHANGHAI


def test_every_event_type_has_publisher_consumers_and_a_schema_that_refuses_bad_payloads():
    for spec in CATALOGUE.values():
        assert spec.type.startswith(spec.publisher + ".")
        assert spec.consumers
        with pytest.raises(ValidationError):
            validate_payload(spec.type, {})
    with pytest.raises(ValidationError):
        validate_payload("nobody.made.this", {})


def test_envelope_round_trips():
    ev = Event("registry.enrolment.changed", {"household_no": "H", "year": 2020, "county": "431122",
                                              "township": "花桥镇", "village": "花桥村", "status": "paid",
                                              "person_ids": ["43112219800506001X"], "order_no": "P1"})
    env = Envelope.new(ev, "registry", datetime.now(timezone.utc))
    again = Envelope.from_dict(json.loads(json.dumps(env.to_dict())))
    assert again.payload == ev.payload and again.correlation_id == env.id


def test_docs_event_catalogue_is_in_sync_with_the_code():
    doc = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    assert catalogue_markdown() in doc, "regenerate docs/events.md: python -m tools.gen_docs"


def test_a_response_map_keyed_by_id_number_is_masked_in_its_keys_too():
    """mask_json masked values only: {"431122…": …} (benefits_from by person, details by person) passed whole."""
    from shared.masking import mask_json
    out = mask_json({"benefits_from": {"431122199001010012": "2020-03-01"}, "order_no": "431122199001010012"})
    assert out == {"benefits_from": {"431122********0012": "2020-03-01"}, "order_no": "431122199001010012"}


def test_an_identity_feed_message_is_stamped_by_the_services_clock():
    """docs/time.md: "now" comes from the injectable clock, also for outside messages' arrival."""
    import json as _json
    from types import SimpleNamespace
    from services.subsidy.entrypoints.identity_feed import decode
    from shared.clock import FixedClock, parse_instant
    at = parse_instant("2019-10-20T09:00:00+08:00")
    env = decode(SimpleNamespace(message_id="m1", correlation_id=None), _json.dumps({"a": 1}).encode(), FixedClock(at))
    assert env.occurred_at == "2019-10-20T09:00:00+08:00"


def test_a_file_clock_is_moved_for_every_process_by_rewriting_its_file(tmp_path):
    # the season simulator's clock (issue 14): one file, read again by each process when it changes
    import os
    from shared.clock import FileClock, clock_from_env
    path = str(tmp_path / "clock")
    FileClock.write(path, datetime(2019, 9, 1, 8, 0, tzinfo=SHANGHAI))
    a, b = clock_from_env(None, path), FileClock(path, check_s=0)
    assert a.now() == b.now() == datetime(2019, 9, 1, 8, 0, tzinfo=SHANGHAI)
    FileClock.write(path, datetime(2019, 12, 31, 17, 0, tzinfo=SHANGHAI))
    assert b.now() == datetime(2019, 12, 31, 17, 0, tzinfo=SHANGHAI)
    with open(path, "w") as f:
        f.write("not a time")  # a broken write keeps the last instant read
    os.utime(path, None)
    assert b.now() == datetime(2019, 12, 31, 17, 0, tzinfo=SHANGHAI)


def test_commuting_events_are_grouped_by_type_between_the_others():
    """A notices queue interleaves confirmations (c) and enrolment changes (e); grouped, each type
    makes one run for its batch handler, in its own order, and any other event (h: a household
    snapshot) stays where it was, bounding the groups on either side."""
    from shared.bus import grouped
    items = ["c1", "e1", "c2", "e2", "h1", "e3", "c3", "e4", "x1", "c4"]
    got = grouped(items, frozenset({"c", "e"}), lambda it: it[0])
    assert got == ["c1", "c2", "e1", "e2", "h1", "e3", "e4", "c3", "x1", "c4"]
    assert grouped(items, frozenset(), lambda it: it[0]) == items  # nothing commutes: delivery order
