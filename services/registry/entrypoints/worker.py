"""Worker of the registry: consumes payment events, relays its outbox, runs roster imports and flags overdue corrections."""
from shared.worker_main import main

from .loops import import_loop, overdue_loop

if __name__ == "__main__":
    main("registry", background=(import_loop, overdue_loop))
