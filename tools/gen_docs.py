"""Regenerates docs/events.md from the event catalogue in shared/events.py."""
from shared.config import ROOT
from shared.events import catalogue_markdown

HEADER = """# Event catalogue

Generated from `shared/events.py` by `python -m tools.gen_docs`; a unit test fails when it is stale.
Exchange `<ns>.events` (topic, durable); routing key = event type. Every message is an envelope:
`id, type, version, occurred_at, producer, correlation_id, causation_id, payload` (JSON, UTF-8).

"""

if __name__ == "__main__":
    (ROOT / "docs" / "events.md").write_text(HEADER + catalogue_markdown(), encoding="utf-8")
    print("wrote docs/events.md")
