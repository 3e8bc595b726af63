# syntax=docker/dockerfile:1.7-labs
# One image for every service of the enrolment suite; docker-compose.yml picks
# the web (gunicorn) or worker command per container.
#
# The 1.7-labs syntax is only needed for `COPY --exclude`: it keeps the local
# virtualenv, git metadata and ./var (which holds the secret JSON files mounted
# as docker secrets) out of the image layers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app

WORKDIR /app

COPY requirements.txt ./
RUN pip install -r requirements.txt

# Source stays root-owned and read-only for the runtime user.
COPY --exclude=.git --exclude=.venv --exclude=var --exclude=.env \
     --exclude=deploy/ferretdb/bin --exclude=**/__pycache__ --exclude=.pytest_cache \
     . ./

USER 10001:10001

# Web ports 8101-8105, worker metrics ports 9101-9105 (see docker-compose.yml).
EXPOSE 8101 8102 8103 8104 8105 9101 9102 9103 9104 9105
