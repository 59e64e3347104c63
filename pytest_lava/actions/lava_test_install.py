"""``lava_test_install``: definitions, pip requirements and Debian packages into the test image.

From the master (``chroot`` into the mounted test root filesystem, as the old dispatcher did), on
the running test image, or, when no image is up, left in :class:`~.lava_test_state.LavaTestState` for
the first run. Before installing anything with apt, ``apt-get update`` runs once per image (the
old dispatcher did too), so a repository that ``add_apt_repository`` added is really used.
Each sub-step is its own result of the ``lava`` run.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from ..boards.driver import BoardState
from ..console.text import ConsoleTimeout
from ..core.deadline import Deadline
from ..core.errors import InfrastructureError, JobError, LavaError
from ..testdefs.classic import resolve_test
from ..testdefs.device import DeviceRunner, test_dirname
from ..testdefs.load import load_url
from ..testdefs.model import TestDefinition
from . import lava_test as _lt  # the module (not its names): lava_test imports this one back
from .implementations import implements
from .lava_test_state import state

if TYPE_CHECKING:
    from ..jobs.runner import ActionContext


@implements("lava_test_install")
def lava_test_install(ctx: ActionContext, params: dict[str, Any]) -> None:
    st = state(ctx)
    for url in params.get("register") or []:
        try:
            definition = load_url(url, timeout=min(60.0, ctx.deadline.remaining()))
        except LavaError as exc:
            ctx.record(f"lava_test_install register ({url})", "fail", str(exc))
            continue
        st.registered[definition.name] = definition
        ctx.record(f"lava_test_install register ({url})", "pass")
    definitions: list[TestDefinition] = []
    for name in params["tests"]:
        try:
            definitions.append(resolve_test(name, registered=st.registered, base=ctx.job.file.parent))
        except LavaError as exc:
            ctx.record(f"lava_test_install ({name})", "fail", str(exc))
    python, debs = list(params.get("install_python") or []), list(params.get("install_deb") or [])
    booted = ctx.driver.state
    if booted is BoardState.MASTER and ctx.device.partitions.get("testrootfs"):
        _install_from_master(ctx, definitions, python, debs)
    elif booted in (BoardState.MASTER, BoardState.TEST, BoardState.ANDROID):
        install_on_image(ctx, _lt._runner(ctx, ctx.test_shell()), definitions, python, debs)
    else:
        st.pending_python += python
        st.pending_deb += debs
        st.pending_tests += definitions
        names = ", ".join(d.name for d in definitions) or "nothing"
        ctx.log(f"lava_test_install: no image is up; installing {names} on the test image before the first run")


def _install_from_master(ctx: ActionContext, definitions: list[TestDefinition], python: list[str],
                         debs: list[str]) -> None:
    """The old way: mount testrootfs on the master, write the files, chroot for installs."""
    shell = ctx.master_shell()
    mounted_by_us = False
    mnt = ctx.driver.testrootfs_mount or ""
    if not mnt:
        mnt = str(ctx.device.extra.get("lava_testrootfs_mount", "/mnt/lava-testrootfs"))
        part = ctx.device.partitions["testrootfs"]
        q = shlex.quote(mnt)
        shell.run(f"mkdir -p {q} && mount {shlex.quote(part)} {q}", ctx.deadline, check=True)
        mounted_by_us = True
    q = shlex.quote(mnt.rstrip("/"))
    needs_chroot = bool(python or debs or any(_lt._has_install_work(d) for d in definitions))
    try:
        if needs_chroot:
            shell.run(f"mount --bind /proc {q}/proc 2>/dev/null; mount --rbind /dev {q}/dev 2>/dev/null; "
                      f"cp {q}/etc/resolv.conf {q}/etc/resolv.conf.lava 2>/dev/null; "
                      f"cp /etc/resolv.conf {q}/etc/resolv.conf 2>/dev/null; true", ctx.deadline)
        runner = _lt._runner(ctx, shell)
        install_on_image(ctx, runner, definitions, python, debs, root=mnt.rstrip("/"),
                          prefix=f"chroot {q} ")
    finally:
        if needs_chroot:
            shell.run(f"mv {q}/etc/resolv.conf.lava {q}/etc/resolv.conf 2>/dev/null; "
                      f"umount -l {q}/dev 2>/dev/null; umount {q}/proc 2>/dev/null; true", ctx.deadline)
        if mounted_by_us:
            shell.run(f"sync; umount {q}", ctx.deadline)


def _has_tool(runner: DeviceRunner, prefix: str, tools: list[str], deadline: Deadline) -> str | None:
    for tool in tools:
        probe = f"{prefix}sh -c {shlex.quote(f'command -v {tool}')} >/dev/null 2>&1 && echo yes || echo no"
        if runner.shell.run(probe, deadline).output.strip().endswith("yes"):
            return tool
    return None


def _apt_update(ctx: ActionContext, runner: DeviceRunner, prefix: str) -> None:
    """``apt-get update`` (its own result): the sources added since the image was built count."""
    res = runner.shell.run(f"{prefix}apt-get update 2>&1", ctx.deadline)
    ctx.record("lava_test_install apt-get update", "pass" if res.ok else "fail",
               "" if res.ok else _lt._tail(res.output, f"apt-get update exited {res.status}"))


def _install_python(ctx: ActionContext, runner: DeviceRunner, prefix: str, python: list[str],
                    has_apt: bool) -> None:
    """pip install each requirement (into the system, as in 2012: PEP 668 is waived); an image
    with apt but no pip gets Debian's python3-pip first."""
    pip = _has_tool(runner, prefix, ["pip3", "pip"], ctx.deadline)
    if pip is None and has_apt:
        res = runner.shell.run(f"{prefix}env DEBIAN_FRONTEND=noninteractive apt-get -y install python3-pip 2>&1",
                               ctx.deadline)
        ctx.record("lava_test_install python (python3-pip)", "pass" if res.ok else "fail",
                   "" if res.ok else _lt._tail(res.output, f"apt-get exited {res.status}"))
        pip = _has_tool(runner, prefix, ["pip3", "pip"], ctx.deadline)
    for req in python:
        if pip is None:
            ctx.record(f"lava_test_install python ({req})", "fail", "the test image has no pip; cannot install it")
            continue
        res = runner.shell.run(f"{prefix}env PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "
                               f"{pip} install {shlex.quote(req)} 2>&1", ctx.deadline)
        ctx.record(f"lava_test_install python ({req})", "pass" if res.ok else "fail",
                   "" if res.ok else _lt._tail(res.output, f"pip install exited {res.status}"))


def install_on_image(ctx: ActionContext, runner: DeviceRunner, definitions: list[TestDefinition],
                      python: list[str], debs: list[str], *, root: str = "", prefix: str = "") -> None:
    """Each sub-step is its own entry of the ``lava`` run; what the image cannot do fails with
    the reason and the next sub-step still runs."""
    st = state(ctx)
    deadline = ctx.deadline
    runner.install_helpers(deadline, root=root)
    has_apt = _has_tool(runner, prefix, ["apt-get"], deadline) is not None
    if has_apt and (debs or python or any(d.deps for d in definitions)):
        _apt_update(ctx, runner, prefix)
    if python:
        _install_python(ctx, runner, prefix, python, has_apt)
    if debs:
        name = f"lava_test_install deb ({' '.join(debs)})"
        if not has_apt:
            ctx.record(name, "fail", "the test image has no apt-get; cannot install Debian packages")
        else:
            pkgs = " ".join(shlex.quote(d) for d in debs)
            res = runner.shell.run(f"{prefix}env DEBIAN_FRONTEND=noninteractive apt-get -y install {pkgs} 2>&1",
                                   deadline)
            ctx.record(name, "pass" if res.ok else "fail",
                       "" if res.ok else _lt._tail(res.output, f"apt-get exited {res.status}"))
    for definition in definitions:
        name = f"lava_test_install ({definition.name})"
        dirname = test_dirname(definition)
        try:
            runner.install_definition(definition, dirname, deadline, root=root)
            if _lt._has_install_work(definition):
                lines: list[str] = []
                rc = runner.run_live(f"{prefix}sh {shlex.quote(f'{runner.lava_dir}/tests/{dirname}/install.sh')} 2>&1",
                                     deadline, lines.append)
                if rc != 0:
                    why = ("the test image has no apt-get for the definition's deps" if rc == _lt.NO_APT
                           else f"install.sh exited {rc}")
                    ctx.record(name, "fail", _lt._tail("\n".join(lines), why))
                    continue
        except (InfrastructureError, JobError) as exc:
            ctx.record(name, "fail", str(exc))
            if isinstance(exc, ConsoleTimeout):
                raise
            continue
        st.installed[definition.name] = definition
        ctx.record(name, "pass")
    runner.flush(deadline)  # helpers staged above and not sent with a definition
