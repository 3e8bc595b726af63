"""Worker of notices: turns payment events into receipt notices."""
from shared.worker_main import main

if __name__ == "__main__":
    main("notices")
