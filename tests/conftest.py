"""Shared fixtures: a clean settings environment for unit tests."""

from __future__ import annotations

import os

import pytest

from pipeline.settings import OWNED_PREFIXES


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """No setting from the developer's environment or `.env` leaks into a unit test."""
    for name in list(os.environ):
        if name.startswith(OWNED_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch
