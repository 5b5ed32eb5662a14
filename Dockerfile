# The stream-scorer image: one image for every role (worker, evaluator, simulator), chosen by the
# command: `docker run stream-scorer run`, `... evaluate`, `... simulate --to-kafka`.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# a C compiler for the hot path's loops (stream_scorer/model/_kernels.c); the runtime image has none
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
# README.md is named by pyproject.toml (the glob keeps the build working without it)
COPY pyproject.toml README.m[d] ./
COPY stream_scorer ./stream_scorer
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STREAM_SCORER_LOG_FORMAT=json
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 10001 --user-group --home-dir /var/lib/stream-scorer --create-home scorer
USER scorer
WORKDIR /var/lib/stream-scorer
# 9108: /metrics, /healthz and /readyz of a worker; the evaluator's port is its own setting.
EXPOSE 9108
ENTRYPOINT ["stream-scorer"]
CMD ["run"]
