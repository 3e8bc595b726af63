"""Worker of payments: keeps the household and entitlement read models, completes its own
transitions from their events, re-drives half-done withholding batches, expires used nonces,
publishes the daily overdue-audit digest, relays its outbox."""
from shared.worker_main import main

from .loops import nonce_cleanup_loop, overdue_audit_loop

if __name__ == "__main__":
    from services.payments.bootstrap import redrive
    main("payments", background=(redrive, nonce_cleanup_loop, overdue_audit_loop))
