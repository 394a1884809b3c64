"""Tests never touch the user's cache: one temporary cache for the whole session."""

import pytest


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dogbench-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache, monkeypatch):
    monkeypatch.setenv("DOGBENCH_CACHE", str(session_cache))
    monkeypatch.delenv("DOGBENCH_DATA", raising=False)
