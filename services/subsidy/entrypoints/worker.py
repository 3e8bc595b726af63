"""Worker of subsidy: consumes registry and payment events and the identity feed, relays its outbox."""
from shared.worker_main import main

if __name__ == "__main__":
    from services.subsidy.bootstrap import rollover_loop
    main("subsidy", background=(rollover_loop,))
