"""Worker of the registry: consumes payment events, relays its outbox."""
from shared.worker_main import main

if __name__ == "__main__":
    main("registry")
