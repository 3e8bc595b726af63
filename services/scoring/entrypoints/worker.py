"""Worker of scoring: counts enrolment events into township progress, publishes evaluations at their deadlines."""
from shared.worker_main import main

from .loops import evaluation_loop

if __name__ == "__main__":
    main("scoring", background=(evaluation_loop,))
