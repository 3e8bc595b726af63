"""Worker of the registry: consumes payment events, relays its outbox, runs roster imports."""
from shared.worker_main import main

from .import_runner import import_loop

if __name__ == "__main__":
    main("registry", background=(import_loop,))
