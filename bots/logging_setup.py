"""Logging for every entry point (server, workers, local bot): one sink, the configured level."""

from __future__ import annotations

import sys

from loguru import logger


def configure_logging(level: str, log_format: str = "text") -> None:
    """One sink on stderr at the configured level (loguru defaults to DEBUG); `json` for shippers."""
    logger.remove()
    logger.add(sys.stderr, level=level, serialize=log_format == "json")
