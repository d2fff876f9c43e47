# embedfleet/python: the base plus a Python 3.11 virtualenv, the unprivileged
# `embedfleet` user (uid 10001) and /data. The manager and Python worker
# images build FROM it, so Python is installed once. Nothing of the
# project is in it, so it is rebuilt only when the base changes.
#
# BASE_IMAGE: embedfleet/base:bookworm (made by build-base.sh, no registry
# needed), or an official debian:bookworm-slim / python:3.11-slim where a
# registry is reachable. On python:3.11-slim the image's own python3 is used.
ARG BASE_IMAGE=embedfleet/base:bookworm
FROM ${BASE_IMAGE}

RUN set -eux; \
    if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends python3 python3-venv; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'; \
    groupadd --gid 10001 embedfleet; \
    useradd --uid 10001 --gid embedfleet --home-dir /var/lib/embedfleet --create-home \
        --shell /usr/sbin/nologin embedfleet; \
    install -d -o embedfleet -g embedfleet /data; \
    python3 -m venv /opt/embedfleet/venv

ENV PATH=/opt/embedfleet/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    EMBEDFLEET_DATA_ROOT=/data
