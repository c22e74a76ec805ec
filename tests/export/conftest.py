"""Fixtures of the export tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def wan(wan_test_dir: Path):
    """diffusers' Wan test configuration (``wan_test_dir``) loaded as a ``T2VModel``, once per module."""
    from turbo_edge.core.pipeline_io import load_teacher

    return load_teacher(wan_test_dir)
