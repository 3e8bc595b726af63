"""Worker of subsidy: relays its outbox (no consumers yet)."""
from shared.worker_main import main

if __name__ == "__main__":
    main("subsidy")
