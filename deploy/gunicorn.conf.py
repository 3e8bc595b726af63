"""gunicorn settings shared by the five web services (multiprocess Prometheus metrics)."""
import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
# Idle keep-alive connections stay open 75 s: longer than the idle timeout of the load balancers in
# front (nginx keepalive_timeout and AWS ALB idle timeout: 60 s by default), so the balancer, not
# gunicorn, closes an idle connection; gunicorn's default of 2 s made a client polling every 2 s
# meet a connection closed under it (RemoteDisconnected).
keepalive = 75
graceful_timeout = 10
accesslog = None


def on_starting(server):
    d = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if d:
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):  # stale files from a previous run would double-count
            os.remove(os.path.join(d, f))


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
