"""Shared engine fixtures."""

from __future__ import annotations

import pytest

from engine.data.synthetic import generate_scene


@pytest.fixture(scope="session")
def synthetic_scene(tmp_path_factory) -> dict:
    """A small seeded synthetic scene (256 x 256, seed 3): paths ``optical``, ``sar``, ``label``,
    ``label_vector`` and the generator's figures. Treat the files as read-only."""
    return generate_scene(tmp_path_factory.mktemp("synthetic_scene"), size=256, seed=3)
