"""The board-driver contract: validation asks each driver (``accepts``), an action without an
implementation is a job error at ``--lava-validate``, a conftest's board type must be a driver,
and validating a job does not load the console engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_lava.boards import BoardDriver, BoardState, ImageFormat, make_board_type
from pytest_lava.core.deadline import Deadline
from pytest_lava.core.errors import ConfigurationError, JobError

DATA = Path(__file__).resolve().parent.parent / "data"
REPO = Path(__file__).resolve().parents[2]

JOB = """
job_name: {name}
device_type: panda
timeout: 600
actions:
  - command: {command}
    parameters: {{}}
"""


@pytest.fixture
def lab(pytester: pytest.Pytester) -> Path:
    shutil.copytree(DATA / "lab", pytester.path / "lab")
    return pytester.path


def test_an_action_without_implementation_fails_validation(pytester: pytest.Pytester, lab: Path) -> None:
    pytester.makeconftest("""
        from pytest_lava.actions.spec import SETUP, ActionSpec

        def pytest_lava_actions():  # known to the job format, but nothing runs it
            return [ActionSpec("flash_spi", SETUP)]
    """)
    (lab / "job.yaml").write_text(JOB.format(name="unimplemented", command="flash_spi"))
    # a subprocess: the hook adds to the process-wide action registry
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-validate", "--lava-job", "job.yaml",
                                "--lava-devices", "lab")
    assert result.ret == 4
    text = "\n".join(result.outlines + result.errlines)
    assert "actions[0].command" in text and "'flash_spi'" in text and "no implementation" in text
    assert "Traceback" not in text


def test_a_conftest_board_type_must_be_a_driver(pytester: pytest.Pytester, lab: Path) -> None:
    class NotADriver:
        pass

    with pytest.raises(ConfigurationError, match="not a BoardDriver"):
        make_board_type("odd", lambda name: NotADriver)


def test_validation_does_not_load_the_console_engine(tmp_path: Path) -> None:
    shutil.copytree(DATA / "lab", tmp_path / "lab")
    (tmp_path / "job.yaml").write_text(JOB.format(name="boot", command="boot_linaro_image"))
    probe = (
        "import sys, pytest\n"
        "rc = pytest.main(['-q', '-p', 'no:cacheprovider', '--lava-validate', '--lava-job', 'job.yaml',"
        " '--lava-devices', 'lab'])\n"
        "engine = [m for m in ('pytest_lava.console.engine', 'pytest_lava.console.connections',"
        " 'pytest_lava.console.pty', 'pytest_lava.console.shell', 'pytest_lava.artifacts.tarballs',"
        " 'pytest_lava.actions.deploy') if m in sys.modules]\n"
        "print('RC', int(rc), 'ENGINE', engine)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "RC 0 ENGINE []" in out.stdout, out.stdout + out.stderr


# --- the base class ---------------------------------------------------------------------------------

class Minimal(BoardDriver):
    name = "minimal"
    supported = frozenset({"boot_linaro_image"})

    def test_shell(self, ctx):  # type: ignore[no-untyped-def]
        raise AssertionError("not used")

    def power_off(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.state = BoardState.OFF


def _ctx() -> SimpleNamespace:
    return SimpleNamespace(action=SimpleNamespace(path="actions[2]"), job=SimpleNamespace(file=Path("job.yaml")),
                           deadline=Deadline(10, "t"))


def test_a_driver_must_say_how_to_reach_a_shell_and_power_off() -> None:
    class Incomplete(BoardDriver):
        name = "incomplete"

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


def test_capabilities_a_driver_lacks_are_job_errors_naming_it() -> None:
    driver = Minimal()
    assert driver.state is BoardState.UNKNOWN and driver.image_format is None
    for call in (lambda: driver.boot_master(_ctx()), lambda: driver.master_shell(_ctx()),
                 lambda: driver.deploy_image(_ctx(), {}), lambda: driver.mount_testrootfs(_ctx(), None)):
        with pytest.raises(JobError) as info:
            call()
        assert "board type 'minimal'" in str(info.value) and "actions[2].command" in str(info.value)


def test_built_in_drivers_declare_how_they_take_an_image() -> None:
    assert make_board_type("master").image_format is ImageFormat.TARBALLS
    qemu = make_board_type("qemu")
    assert qemu.image_format is ImageFormat.DISK_IMAGE
    assert make_board_type("qemu") is not qemu  # one instance per job run: state is never shared
