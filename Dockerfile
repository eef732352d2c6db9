# stickyguard operator image. Build: `make image`. The Deployment in manifests/base runs
# `stickyguard run` as UID 65532 with a read-only root filesystem (only /tmp is writable).
# PYTHON is any Debian-based image with python3 and its venv module: the official one by
# default; CI passes a local debootstrap of Debian bookworm (hack/build-image.sh, no Docker).
ARG PYTHON=python:3.11.11-slim-bookworm

FROM ${PYTHON} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python3 -m venv /opt/stickyguard \
 && /opt/stickyguard/bin/pip install . \
 && /opt/stickyguard/bin/python -m compileall -q /opt/stickyguard

# The kind demo's shop and load generator (`make image-demo`): the operator plus the dev-only
# test ground. Never deployed as the operator.
FROM build AS demo-build
COPY lab ./lab
RUN /opt/stickyguard/bin/pip install ./lab

FROM ${PYTHON} AS demo
COPY --from=demo-build /opt/stickyguard /opt/stickyguard
ENV PATH=/opt/stickyguard/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    USER=stickyguard HOME=/tmp
USER 65532:65532

# The operator image (the default target): no lab code, no dev dependencies.
FROM ${PYTHON}
COPY --from=build /opt/stickyguard /opt/stickyguard
# USER: UID 65532 has no passwd entry, and kopf names its peer identity with getpass.getuser(),
# which then raises (any UID works with the variable set: OpenShift picks its own). HOME: the
# root filesystem is read-only; /tmp is the Deployment's writable emptyDir.
ENV PATH=/opt/stickyguard/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    USER=stickyguard HOME=/tmp
USER 65532:65532
EXPOSE 8080 8081 8082 9443
CMD ["stickyguard", "run"]
