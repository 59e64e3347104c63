"""Where the plugin keeps its per-session state on pytest's config: a module of its own, so the
hooks every pytest run calls (collection, reports, fixtures) can look without importing the job
machinery. A run without ``--lava-job`` imports nothing else of the plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .session import LavaSession  # noqa: F401 (the key's type, named as a string below)

SESSION_KEY = pytest.StashKey["LavaSession"]()  # the session's LavaSession, set by pytest_configure
