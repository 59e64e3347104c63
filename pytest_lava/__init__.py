"""pytest-lava: run LAVA jobs on boards from pytest."""

__version__ = "0.1.0"
