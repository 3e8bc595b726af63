"""Worker of scoring: counts enrolment events into township progress."""
from shared.worker_main import main

if __name__ == "__main__":
    main("scoring")
