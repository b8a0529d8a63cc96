# voicebot: the server with the embedded offline stack baked in (no model downloads at run time).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline pipeline
COPY processors processors
COPY transports transports
COPY bots bots
# llama.cpp compiled portably (the native build crashes on CPUs that advertise AMX/AVX-512 in VMs).
RUN python -m venv /opt/voicebot \
 && CMAKE_ARGS="-DGGML_NATIVE=OFF" /opt/voicebot/bin/pip install --no-cache-dir ".[offline]"

FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 10001 voicebot
COPY --from=build /opt/voicebot /opt/voicebot
USER voicebot
WORKDIR /home/voicebot
ENV PATH=/opt/voicebot/bin:$PATH \
    VOICEBOT_HOST=0.0.0.0 \
    VOICEBOT_PORT=8000 \
    VOICEBOT_LOG_FORMAT=json
EXPOSE 8000
# One worker per container: scale with replicas; SIGTERM drains calls (VOICEBOT_DRAIN_SECS).
CMD ["voicebot", "serve"]
