"""The common library every service imports: events, bus, outbox, store, web, metrics, clock."""
