# stickyguard operator image. Build: `make image`. The Deployment in manifests/base runs
# `stickyguard run` as UID 65532 with a read-only root filesystem (only /tmp is writable).
ARG PYTHON=python:3.11.11-slim-bookworm

FROM ${PYTHON} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/stickyguard \
 && /opt/stickyguard/bin/pip install . \
 && /opt/stickyguard/bin/python -m compileall -q /opt/stickyguard

FROM ${PYTHON}
COPY --from=build /opt/stickyguard /opt/stickyguard
ENV PATH=/opt/stickyguard/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080 8081 8082 9443
CMD ["stickyguard", "run"]
