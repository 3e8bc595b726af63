"""Worker of the registry: consumes payment events, relays its outbox."""
import os

os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # before prometheus_client is imported

from shared.container import worker_main  # noqa: E402

from .. import bootstrap as boot  # noqa: E402


def main() -> None:
    c = boot.bootstrap()
    worker_main(c, boot.event_handlers(c))


if __name__ == "__main__":
    main()
