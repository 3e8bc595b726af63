"""Worker of notices: turns events into notices, reminds unpaid households, delivers them all (SMS, webhook, work lists)."""
from shared.worker_main import main

from ..service_layer.reminders import reminder_loop
from .loops import delivery_loop

if __name__ == "__main__":
    main("notices", background=(delivery_loop, reminder_loop))
