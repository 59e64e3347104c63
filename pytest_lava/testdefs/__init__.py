"""Test definitions: the two YAML dialects, where they come from, how their output is parsed,
and the device-side runner that executes them over the console.

See docs/testdefs.md. Public API::

    from pytest_lava.testdefs import TestDefinition, resolve, load_builtin, library_names
"""

from .load import library_names, load_builtin, load_git, load_inline, load_path, load_url, resolve
from .model import DEFAULT_FIXUPDICT, DEFAULT_PATTERN, FORMAT_1_0, ParseSpec, TestDefinition
from .parse import CaseCollector

__all__ = [
    "DEFAULT_FIXUPDICT", "DEFAULT_PATTERN", "FORMAT_1_0", "CaseCollector", "ParseSpec", "TestDefinition",
    "library_names", "load_builtin", "load_git", "load_inline", "load_path", "load_url", "resolve",
]
