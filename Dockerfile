# The image the backup CronJobs run (components/backup_jobs.py): `python -m scripts.backup run|verify|config`.
# It packages the library drtopo/ and the commands in scripts/ (no Pulumi code), the pinned Python packages they import,
# the client tools (pg_dump, pg_restore) of the PostgreSQL major the database runs, kubectl for the configuration
# export and the RDS CA bundle (the jobs connect with PGSSLMODE=verify-full). It holds no configuration: the CronJobs
# mount the stack's settings and outputs at /etc/drtopo. Build from the repository root, one image per major, tagged
# -pg<major> as drtopo:kubernetes.backupImage must be for drtopo:database.engineVersion (drtopo/settings.py):
#   docker build --build-arg PG_MAJOR=15 -t ghcr.io/biopro/drtopo-backup:1.0.0-pg15 .
# Where each part comes from is a build argument, so a build with no registry or internet can supply its own: the lab
# (lab/images.py) builds this file with buildah FROM a Debian base of its own (BASE_IMAGE, which must provide
# python/pip of Python 3.11), the client tools from Debian's archive (PG_APT=debian: bookworm ships one major, 15),
# and kubectl and a CA bundle from a file server of its own on loopback (KUBECTL_BASE_URL, RDS_CA_BUNDLE_URL).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TARGETARCH=amd64
ARG PG_MAJOR=15
# pgdg: the PostgreSQL project's apt repository (every supported major); debian: the base's own archive.
ARG PG_APT=pgdg
ARG KUBECTL_VERSION=v1.33.4
ARG KUBECTL_BASE_URL=https://dl.k8s.io/release
ARG RDS_CA_BUNDLE_URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Every supported major comes from the PostgreSQL project's apt repository (PGDG), set up by postgresql-common's own
# script; the client tools land in /usr/lib/postgresql/${PG_MAJOR}/bin, where drtopo/database/pg_tools.py looks.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    case "${PG_APT}" in \
      pgdg) apt-get install -y --no-install-recommends postgresql-common; \
            /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y ;; \
      debian) ;; \
      *) echo "PG_APT=${PG_APT}: expected pgdg or debian" >&2; exit 2 ;; \
    esac; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}"; \
    base="${KUBECTL_BASE_URL}/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}"; \
    curl -fsSLo /usr/local/bin/kubectl "${base}/kubectl"; \
    echo "$(curl -fsSL "${base}/kubectl.sha256")  /usr/local/bin/kubectl" | sha256sum -c -; \
    chmod 0755 /usr/local/bin/kubectl; \
    curl -fsSLo /etc/ssl/certs/rds-global-bundle.pem "${RDS_CA_BUNDLE_URL}"; \
    chmod 0644 /etc/ssl/certs/rds-global-bundle.pem; \
    apt-get purge -y curl; \
    apt-get autoremove -y; \
    rm -rf /var/lib/apt/lists/*; \
    "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version | grep -q " ${PG_MAJOR}\."

# Only the packages the backup scripts and the scheduled readiness check (scripts.status: Kafka's client) import, at
# the versions requirements.txt pins (one source of truth).
COPY requirements.txt /tmp/requirements.txt
RUN set -eux; \
    grep -E '^(boto3|confluent-kafka|psycopg\[binary\]|pydantic|PyYAML)==' /tmp/requirements.txt > /tmp/backup-requirements.txt; \
    test "$(wc -l < /tmp/backup-requirements.txt)" -eq 5; \
    pip install -r /tmp/backup-requirements.txt; \
    rm /tmp/requirements.txt /tmp/backup-requirements.txt

WORKDIR /app
COPY drtopo/ drtopo/
COPY scripts/ scripts/

RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin drtopo
USER 10001:10001

ENV PYTHONPATH=/app \
    HOME=/tmp \
    DRTOPO_PROJECT_DIR=/etc/drtopo

CMD ["python", "-m", "scripts.backup", "--help"]
