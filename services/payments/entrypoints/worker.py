"""Worker of payments: keeps the household and entitlement read models, relays its outbox."""
from shared.worker_main import main

if __name__ == "__main__":
    main("payments")
