"""Which actions have an implementation, and where it lives.

The catalogue (the job vocabulary) never depends on board code: built-in implementations are
named here by module and function and imported on first use (:class:`LazyRun`), so validating a
job loads neither the console engine nor the artifact code. A third-party module may register
with ``@implements("name")``; an action with no implementation at all is refused at validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from .spec import ActionRun

RUNNERS: dict[str, ActionRun] = {}

# action -> "module:function" of its built-in implementation
BUILTIN_RUNNERS: dict[str, str] = {
    "deploy_linaro_image": "pytest_lava.actions.deploy:deploy_linaro_image",
    "deploy_linaro_kernel": "pytest_lava.actions.deploy:deploy_linaro_kernel",
    "boot_master_image": "pytest_lava.actions.boot:boot_master_image",
    "boot_linaro_image": "pytest_lava.actions.boot:boot_linaro_image",
    "add_apt_repository": "pytest_lava.actions.apt:add_apt_repository",
    "lava_test_install": "pytest_lava.actions.lava_test_install:lava_test_install",
    "lava_test_run": "pytest_lava.actions.lava_test:lava_test_run",
    "lava_test_shell": "pytest_lava.actions.test_shell:lava_test_shell",
    "deploy_linaro_android_image": "pytest_lava.actions.android:deploy_linaro_android_image",
    "android_install_binaries": "pytest_lava.actions.android:android_install_binaries",
    "boot_linaro_android_image": "pytest_lava.actions.android:boot_linaro_android_image",
    "lava_android_test_install": "pytest_lava.actions.android_test:lava_android_test_install",
    "lava_android_test_run": "pytest_lava.actions.android_test:lava_android_test_run",
    "lava_android_test_run_custom": "pytest_lava.actions.android_test:lava_android_test_run_custom",
}


@dataclass(frozen=True)
class LazyRun:
    """An action implementation imported when the action first runs."""

    target: str  # "module:function"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, _, name = self.target.partition(":")
        return getattr(import_module(module), name)(*args, **kwargs)


def implements(name: str):  # type: ignore[no-untyped-def]
    """Decorator: ``@implements("flash_spi") def run(ctx, params): ...`` (for actions whose
    implementation is imported before the registry is built)."""

    def register(fn: ActionRun) -> ActionRun:
        RUNNERS[name] = fn
        return fn

    return register


def runner_for(name: str) -> ActionRun | None:
    """The implementation of action ``name``, or ``None`` if it has none."""
    if name in RUNNERS:
        return RUNNERS[name]
    target = BUILTIN_RUNNERS.get(name)
    return LazyRun(target) if target else None
