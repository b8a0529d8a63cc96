"""Prometheus metrics for sessions: what an operator watches and alerts on."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_SESSIONS = Gauge("voicebot_active_sessions", "Sessions in progress in this process")
# `bot` is a profile name from the profiles file (or "default"): bounded by the operator, never
# a client-chosen string.
SESSIONS_STARTED = Counter("voicebot_sessions_started_total", "Sessions started", ["transport", "bot"])
SESSIONS_REFUSED = Counter(
    "voicebot_sessions_refused_total", "Sessions refused (full or draining)", ["transport"]
)
SESSIONS_ENDED = Counter("voicebot_sessions_ended_total", "Sessions ended, by reason", ["reason", "bot"])
SESSION_SECONDS = Histogram(
    "voicebot_session_duration_seconds",
    "How long sessions last",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
TURN_LATENCY = Histogram(
    "voicebot_turn_latency_seconds",
    "Per-turn latency by stage: stt_finalisation, llm_ttft, tts_ttfb, voice_to_voice",
    ["stage"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
)
SPECULATIVE_REPLIES = Counter(
    "voicebot_speculative_replies_total",
    "Replies started at the VAD's stop, before the turn ended: kept (heard) or withdrawn (dropped)",
    ["outcome"],
)
SERVICE_ERRORS = Counter("voicebot_service_errors_total", "Errors reported by services", ["service"])
CLIENT_INPUT_DROPPED = Counter(
    "voicebot_client_input_dropped_total",
    "Client messages dropped before the pipeline: oversized, audio ahead of real time, or not allowed",
    ["transport", "reason"],
)


def drop_client_input(transport: str, reason: str) -> None:
    """Count a client message refused before the pipeline; returns None so a serializer's
    `deserialize` can `return drop_client_input(...)` (none of these is worth a log line)."""
    CLIENT_INPUT_DROPPED.labels(transport, reason).inc()
