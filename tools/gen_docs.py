"""Regenerates docs/events.md from the event catalogue in shared/events.py."""
from shared.config import ROOT
from shared.events import catalogue_markdown

HEADER = """# Event catalogue

Generated from `shared/events.py` by `python -m tools.gen_docs`; a unit test fails when it is stale.
Exchange `<ns>.events` (topic, durable); routing key = event type. Every message is an envelope:
`id, type, version, occurred_at, producer, correlation_id, causation_id, county, payload` (JSON, UTF-8).
`county` is the GB/T 2260 code of the county whose data the event is about (东安县 431122): the writer
stamps it from the county database it writes to, and each consumer hands the event to that county's
handlers and database; an event naming no county the suite serves is dead-lettered with the reason.

"""

if __name__ == "__main__":
    (ROOT / "docs" / "events.md").write_text(HEADER + catalogue_markdown(), encoding="utf-8")
    print("wrote docs/events.md")
