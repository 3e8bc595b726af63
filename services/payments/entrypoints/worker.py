"""Worker of payments: keeps the household read model, relays its outbox."""
from shared.worker_main import main

if __name__ == "__main__":
    main("payments")
