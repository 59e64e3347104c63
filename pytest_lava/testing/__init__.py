"""Simulated boards (FAKES) for tests: the supported testing toolkit of pytest-lava.

This subpackage is for authors of board types and drivers (a ``pytest_lava_board_type`` hook, a
new action, a power or console driver) and for tests and benchmarks that need a board without
hardware or QEMU. Nothing in the plugin imports it: it is a set of fakes, not a board type.

* :mod:`pytest_lava.testing.simboard` — one simulated board: a process serving a scripted serial
  console over TCP on 127.0.0.1 (U-Boot banner and ``=> `` prompt, a kernel boot log, a root
  shell), with power on/off/reset through a control port, like a board behind ser2net and a PDU.
* :mod:`pytest_lava.testing.simshell` — :class:`~pytest_lava.testing.simshell.SimShell`, the
  board's shell: a small POSIX-shell look-alike that runs nothing on the host, only builtins on a
  sandbox directory.
* :mod:`pytest_lava.testing.adbd` — the lab's device-side ADB daemon (``lab/adbd/adbd.c``) built
  with the host ``cc`` and run on 127.0.0.1 with a sandbox root and property store, for tests of
  adb code against the real ``adb`` client without QEMU (``running_adbd``, ``adbd_fixture``).
* :mod:`pytest_lava.testing.simlab` — :class:`SimLab`: starts N simulated boards (each its own
  process, stopped by PID) and writes a device directory for them that ``--lava-devices`` loads
  like any lab (``<board>.yaml`` per board, ``device-types/sim.yaml`` with ``board_type: master``).

In a test::

    from pytest_lava.testing import SimLab

    with SimLab(2, tmp_path / "boards", boot_time=0.5) as lab:
        lab.write_devices(tmp_path / "devices")
        ...  # pytest --lava-devices tmp_path/devices ...

By hand, one board and its power control (``serve`` records its ports in
``<state-dir>/simboard.json``), or a whole lab that stays up until Ctrl-C::

    python -m pytest_lava.testing.simboard serve --port 0 --name sim-01 --state-dir /tmp/sim-01
    python -m pytest_lava.testing.simboard power reset --state-dir /tmp/sim-01  # on, off, status, stop
    python -m pytest_lava.testing.simlab --boards 4 --dir /tmp/simlab

``docs/pool.md`` describes what the simulated board does and does not do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .simlab import SimLab

__all__ = ["SimLab"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``python -m pytest_lava.testing.simlab`` does not import simlab twice.
    if name == "SimLab":
        from .simlab import SimLab

        return SimLab
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
