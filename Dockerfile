# smartby platform image: one image, one console script; the compose file picks the
# subcommand (`smartby ingest`, `smartby api`, `smartby db migrate`, ...).
#
#   docker build -t smartby .
#   docker run --rm smartby --help
FROM python:3.11-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    SMARTBY_ENV=production

# An unprivileged user with a fixed uid, so volume permissions are predictable.
RUN groupadd --system --gid 10001 smartby \
 && useradd --system --uid 10001 --gid smartby --home-dir /home/smartby --create-home \
      --shell /usr/sbin/nologin smartby

# pg_dump and pg_restore for `smartby db backup|restore`, of the server's major version
# (compose runs PostgreSQL 17; python:3.11-slim is Debian 13, whose client is 17).  The
# backups volume starts out owned by the service user.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-17 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o smartby -g smartby /backups

WORKDIR /src

# Dependencies first: this layer is reused until the lock file changes.
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock

# Then the project itself, without touching the locked dependencies.
COPY core/ core/
COPY db/ db/
COPY stack/ stack/
COPY ingest/ ingest/
COPY api/ api/
COPY devices/ devices/
COPY dashboards/ dashboards/
COPY web/ web/
COPY smartby/ smartby/
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf /src

# compose's broker-config service writes the broker's accounts file here as the
# eclipse-mosquitto image's user (uid 1883): an empty named volume mounted on this
# folder starts out with its owner and mode, so broker and smartby can both write it.
# The same for the TLS listener's certificates (broker-certs).
RUN install -d -o 1883 -g 1883 -m 0700 /mosquitto/dynsec /mosquitto/bridge /mosquitto/certs

WORKDIR /home/smartby
USER smartby

# 8000: the open-data API (and its /metrics); 9101: the ingest worker's /metrics.
EXPOSE 8000 9101

ENTRYPOINT ["smartby"]
CMD ["--help"]
