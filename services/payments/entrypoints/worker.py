"""Worker of payments: keeps the household and entitlement read models, relays its outbox, expires used nonces."""
from shared.worker_main import main

from .loops import nonce_cleanup_loop

if __name__ == "__main__":
    main("payments", background=(nonce_cleanup_loop,))
