# syntax=docker/dockerfile:1.7
#
# migrate-job: deploy-time PostgreSQL migrations as a container image.
#
# Build arguments (see docs/image.md):
#   BASE_IMAGE  a Debian-based image; an official python:*-slim image by default. A base without
#               Python (e.g. a debootstrap bookworm for offline builds) gets Debian's python3.
#   PG_CLIENT   "pgdg" (PostgreSQL project's apt repository, PG_MAJOR) or "debian" (Debian's own
#               postgresql-client: 15 on bookworm; no network beyond the Debian mirror).
#   PG_MAJOR    major version of pg_dump/pg_restore/psql from pgdg. pg_dump refuses servers newer
#               than itself, so this must be >= every server the image will back up.
#   EXTRAS      optional dependency groups baked in (cloud secret sources and backup targets).
#   PIP_INDEX_URL / PIP_EXTRA_INDEX_URL  a package index other than PyPI, if the builder needs one.
# A custom CA for the package index (a TLS-intercepting proxy) is passed as a build secret:
#   --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt
# so it never lands in a layer.

ARG BASE_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------------------------------------
# base: the interpreter both stages share. The venv built below points at this exact Python, so
# builder and runtime must come from the same stage.
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBIAN_FRONTEND=noninteractive
# Versions come from the base's Debian release; pinning them here would break every base but one.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log; \
    fi \
    && python3 --version

# ---------------------------------------------------------------------------------------------
# builder: resolves and installs the package and its dependencies into /opt/venv. Anything a
# source build needs (compilers, headers) stays in this stage.
FROM base AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG EXTRAS=aws,azure
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120
# Debian's python3 ships without ensurepip; the official python images have it.
# hadolint ignore=DL3008
RUN if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY job ./job
# Non-editable install: the runtime copies /opt/venv only, never /src. pip compiles .pyc files
# here, so a read-only root filesystem still starts without recompiling every module.
RUN --mount=type=secret,id=pip_cert \
    set -e; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    if [ -z "${PIP_INDEX_URL:-}" ]; then unset PIP_INDEX_URL; fi; \
    if [ -z "${PIP_EXTRA_INDEX_URL:-}" ]; then unset PIP_EXTRA_INDEX_URL; fi; \
    /opt/venv/bin/pip install --no-cache-dir "/src${EXTRAS:+[$EXTRAS]}"; \
    /opt/venv/bin/pip uninstall -y -q pip setuptools wheel 2>/dev/null; \
    /opt/venv/bin/migrate-job --version

# ---------------------------------------------------------------------------------------------
# runtime: Python, the venv, PostgreSQL client tools, tini. No compilers, no pip, no apt lists.
FROM base AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG PG_CLIENT=pgdg
ARG PG_MAJOR=18
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/migrate-job/migrate-job

# The PostgreSQL project's signing key is fetched over HTTPS and pinned to its repository only
# (signed-by), and curl is removed again in the same layer. The tools are linked into
# /usr/local/bin so they are called directly, not through Debian's perl pg_wrapper (which picks a
# version from cluster configuration a container does not have).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && if [ "$PG_CLIENT" = "pgdg" ]; then \
        apt-get install -y --no-install-recommends curl \
        && . /etc/os-release \
        && install -d /usr/share/postgresql-common/pgdg \
        && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
            https://www.postgresql.org/media/keys/ACCC4CF8.asc \
        && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
            > /etc/apt/sources.list.d/pgdg.list \
        && apt-get update \
        && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
        && apt-get purge -y --auto-remove curl; \
    elif [ "$PG_CLIENT" = "debian" ]; then \
        apt-get install -y --no-install-recommends postgresql-client; \
    else \
        echo "PG_CLIENT must be pgdg or debian, not '$PG_CLIENT'" >&2; exit 1; \
    fi \
    && pgbin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1)" \
    && for tool in pg_dump pg_restore psql pg_dumpall; do ln -sf "$pgbin/$tool" "/usr/local/bin/$tool"; done \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old \
        /var/log/apt /var/log/dpkg.log /usr/share/doc /usr/share/man \
    && pg_dump --version && tini --version

# A fixed numeric UID/GID: Kubernetes runAsNonRoot can only verify a numeric USER. HOME and
# TMPDIR point at /tmp, the one writable mount a read-only root filesystem needs. USER is set
# because libraries ask getpass.getuser(), which fails for a UID without a passwd entry.
RUN groupadd --system --gid 10001 migrate \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --no-log-init \
        --shell /usr/sbin/nologin migrate \
    && install -d -m 0755 /app/migrations

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    USER=migrate \
    HOME=/tmp \
    TMPDIR=/tmp \
    MIGRATE_MIGRATIONS_DIR=/app/migrations \
    MIGRATE_IMAGE=migrate-job:${VERSION}

LABEL org.opencontainers.image.title="migrate-job" \
      org.opencontainers.image.description="Deploy-time PostgreSQL migrations: locked, atomic, verified, observable." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.migrate-job.pg-client="${PG_CLIENT}"

# Fargate (and Docker) mount a task volume over /tmp; declaring it a VOLUME makes the mount
# inherit this directory's mode (1777) instead of root-owned 0755, so UID 10001 can write there.
VOLUME ["/tmp"]
WORKDIR /app
USER 10001:10001
# tini as PID 1: forwards SIGTERM/SIGINT to migrate-job (which cancels the running statement and
# releases its lock) and reaps pg_dump children; its exit code is the job's (143 on SIGTERM).
ENTRYPOINT ["tini", "--", "migrate-job"]
CMD ["run"]
