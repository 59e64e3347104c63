"""The action registry: built-in actions plus third-party ones registered by entry point.

A lab's ``conftest.py`` adds actions with the ``pytest_lava_actions`` hook (see hookspecs.py); a
third-party package may instead use an entry point in the group ``pytest_lava.actions`` whose
object is an :class:`ActionSpec` (or a list of them)::

    [project.entry-points."pytest_lava.actions"]
    flash_spi = "my_lab.actions:FLASH_SPI"
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import entry_points

from ..core.errors import ConfigurationError
from .catalog import BUILTIN
from .spec import SETUP, SUBMIT, TEST, ActionSpec, Param

ENTRY_POINT_GROUP = "pytest_lava.actions"


@cache
def registry() -> dict[str, ActionSpec]:
    """Every known action by name. Implementations attach their ``run`` on import."""
    specs = {spec.name: spec for spec in BUILTIN}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plugin must not hide the others
            raise ConfigurationError.single(f"entry point {ep.name}", ep.value,
                                            f"cannot load action plugin: {exc}") from None
        for spec in loaded if isinstance(loaded, list | tuple) else [loaded]:
            if not isinstance(spec, ActionSpec):
                raise ConfigurationError.single(f"entry point {ep.name}", ep.value,
                                                "must be an ActionSpec or a list of them")
            specs[spec.name] = spec
    _attach_implementations(specs)
    return specs


def add_actions(specs: object, source: str) -> None:
    """Add actions a plugin gives (the ``pytest_lava_actions`` hook) to the registry."""
    for spec in specs if isinstance(specs, list | tuple) else [specs]:
        if not isinstance(spec, ActionSpec):
            raise ConfigurationError.single(source, "pytest_lava_actions", "must return ActionSpec objects")
        registry()[spec.name] = spec


def _attach_implementations(specs: dict[str, ActionSpec]) -> None:
    from .implementations import runner_for

    for name, spec in specs.items():
        if spec.run is None:
            spec.run = runner_for(name)


def suggest(name: str) -> str:
    """A 'did you mean' hint for an unknown action name."""
    close = difflib.get_close_matches(name, registry(), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


__all__ = ["ActionSpec", "Param", "SETUP", "SUBMIT", "TEST", "add_actions", "registry", "suggest"]
