# sealroom: one process per bot device. Mount the config read-only at /data/config.yaml and keep
# /data (crypto store, device login, SQLite) on a volume.
FROM python:3.11-slim

RUN useradd --system --uid 10001 --home-dir /data sealroom \
    && mkdir -p /data && chown sealroom /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY store ./store
RUN pip install --no-cache-dir .

USER sealroom
VOLUME ["/data"]
EXPOSE 8080
# Fails with check-config's output instead of rewriting the config.
ENTRYPOINT ["sealroom"]
CMD ["run", "-c", "/data/config.yaml"]
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status == 200 else 1)"
