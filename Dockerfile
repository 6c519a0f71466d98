# sealroom: one container per bot device (the data directory is locked).
#   Config: mounted read-only at /etc/sealroom/config.yaml (SEALROOM_CONFIG), with
#           bot.data_dir: /data, http.bind: 0.0.0.0 (docs/container.md has a complete one).
#   State:  /data, a volume: the bot's crypto store, device login, keys and the default SQLite.
# Build:  docker build -t sealroom .     Check: docker run --rm sealroom --version
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SEALROOM_CONFIG=/etc/sealroom/config.yaml

# A fixed, unprivileged UID/GID (runAsNonRoot-friendly) owning only /data.
RUN groupadd --system --gid 10001 sealroom \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin sealroom \
    && mkdir -p /data /etc/sealroom \
    && chown 10001:10001 /data \
    && chmod 0700 /data

WORKDIR /app

# 1. The dependencies alone, read from pyproject.toml: this layer is rebuilt only when they
#    change, not at every change of the source.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. sealroom itself (config.example.yaml goes into the package: `sealroom example-config`).
COPY README.md LICENSE config.example.yaml ./
COPY bridge ./bridge
COPY store ./store
RUN pip install --no-deps . && rm -rf /app/build /app/*.egg-info

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# http.port (the public endpoints) and, if set, metrics.port: publish only the first, and only
# to the reverse proxy.
EXPOSE 8080 9090
# `sealroom healthcheck` reads the same config as `run`, so it follows http.bind and http.port.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["sealroom", "healthcheck"]
# A wrong config exits 2 with check-config's lines; nothing rewrites the config.
ENTRYPOINT ["sealroom"]
CMD ["run"]
