# voicebot: the server with the embedded offline stack baked in (no model downloads at run time).
# BASE: any Debian bookworm image with Python 3.11 and venv; `make image` passes a locally made one
# (scripts/image-base.sh) where the registry's image cannot be pulled. Both stages use the same
# base, so the venv's interpreter link points at the same Python in the final image.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, from pyproject.toml alone: the slow layer (llama.cpp compiled portably: the
# native build crashes on CPUs that advertise AMX/AVX-512 in VMs) is reused until they change.
# The optional build secret `ca` is a CA bundle for pip behind a TLS-inspecting proxy (`make image`
# passes the build machine's); it is mounted for this step only and never stored in the image.
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python -m venv /opt/voicebot \
 && python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["offline"]))' > requirements.txt \
 && CMAKE_ARGS="-DGGML_NATIVE=OFF" /opt/voicebot/bin/pip install --no-cache-dir -r requirements.txt
COPY README.md ./
COPY pipeline pipeline
COPY processors processors
COPY transports transports
COPY bots bots
# Everything readable by the runtime user whatever modes a wheel shipped with, nothing writable
# by it (only the files that need it are touched, so the layer stays small).
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && /opt/voicebot/bin/pip install --no-cache-dir --no-deps . \
 && find /opt/voicebot ! -type l \( ! -perm -a+r -o -perm /go+w -o -type d ! -perm -a+x \) \
      -exec chmod a+rX,go-w {} +

FROM ${BASE}
# libgomp1: llama.cpp's OpenMP runtime (libllama.so needs libgomp.so.1; no compilers come with it).
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 voicebot \
 && useradd --create-home --uid 10001 --gid 10001 voicebot
COPY --from=build /opt/voicebot /opt/voicebot
# Numeric, so Kubernetes' runAsNonRoot can verify it. The root filesystem may be read-only:
# the app writes only to TMPDIR (the llama.cpp server's log), an emptyDir in deploy/k8s/.
USER 10001:10001
WORKDIR /home/voicebot
# ORT_DISABLE_TELEMETRY: onnxruntime (1.29 and later, for Piper and Silero) otherwise writes a
# device id under HOME and uploads usage events over HTTPS; an offline voice bot sends nothing.
# OPENBLAS_NUM_THREADS: one BLAS thread for every library that loads one (the server limits
# numpy's at start-up too; pipeline/native_threads.py says why).
ENV PATH=/opt/voicebot/bin:$PATH \
    HOME=/home/voicebot \
    ORT_DISABLE_TELEMETRY=1 \
    OPENBLAS_NUM_THREADS=1 \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VOICEBOT_HOST=0.0.0.0 \
    VOICEBOT_PORT=8000 \
    VOICEBOT_LOG_FORMAT=json
EXPOSE 8000
# One worker per container: scale with replicas; SIGTERM drains calls (VOICEBOT_DRAIN_SECS).
CMD ["voicebot", "serve"]
