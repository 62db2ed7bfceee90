"""Shared test fixtures and the backend report header."""

from __future__ import annotations

import os

import pytest


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"cpu count: {os.cpu_count()}"]
    return lines
