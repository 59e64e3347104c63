"""The fastmodel board type through the plugin, on the FAKE FVP (``pytest_lava.testing.fake_fvp``):
FVP's own default patterns, the disk image built on the host from hwpack+rootfs, the boot files
found in it, the job's allowed option, ``rtsm.log`` in the results and the bundle, the simulator
gone afterwards; a licence failure fails the boot at once; an unknown placeholder is a clear
configuration error at validation."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import sys
import tarfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DEVICE = """
device_type: fvp
simulator_command: "{python} -m pytest_lava.testing.fake_fvp {mode} -a {{AXF}} -C motherboard.mmc.p_mmc_file={{IMG}}"
"""

DEVICE_TYPE = """
board_type: fastmodel
simulator_boot_options:
  cache_state_modelled: "0"
  semihosting-enable: "1"
simulator_allowed_options: [cache_state_modelled]
simulator_env:
  ARMLMD_LICENSE_FILE: 8224@127.0.0.1
simulator_version_command: "{python} -c \\"print('Fast Models [FAKE] 11.0')\\""
tester_str: 'root@linaro:~# '
boot_retries: 1
boot_linaro_timeout: 120
"""

JOB = """
job_name: {name}
target: {target}
timeout: 300
actions:
  - command: deploy_linaro_image
    parameters: {{hwpack: "file://{dir}/hwpack.tar.gz", rootfs: "file://{dir}/rootfs.tar.gz"}}
  - command: boot_linaro_image
    parameters: {{options: {options}}}
"""


def _tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.fixture
def lab(pytester: pytest.Pytester) -> Path:
    devices = pytester.path / "devices"
    (devices / "device-types").mkdir(parents=True)
    (devices / "device-types" / "fvp.yaml").write_text(DEVICE_TYPE.format(python=sys.executable))
    for name, mode in (("fvp01", ""), ("fvp-nolicence", "--mode licence-fail")):
        (devices / f"{name}.yaml").write_text(DEVICE.format(python=sys.executable, mode=mode))
    _tar(pytester.path / "hwpack.tar.gz", {"img.axf": b"boot wrapper", "Image": b"kernel",
                                            "HWPACK": b"KERNEL_VERSION=0.0-fake\n"})
    _tar(pytester.path / "rootfs.tar.gz", {"etc/hostname": b"linaro\n", "etc/lava-test-image": b""})
    return pytester.path


def _run(pytester: pytest.Pytester, name: str, target: str, options: str) -> pytest.RunResult:
    job = JOB.format(name=name, target=target, options=options, dir=pytester.path)
    (pytester.path / f"{name}.yaml").write_text(job)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-job", f"{name}.yaml",
                                         "--lava-devices", "devices", "--lava-results", "results", "-rA",
                                         timeout=240)


def _pids(results: Path) -> list[int]:
    console = (results / "console.log").read_text()
    return [int(p) for p in re.findall(r"started \S*python\S* -m pytest_lava\.testing\.fake_fvp .*\(pid (\d+)\)",
                                       console)]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_a_job_on_the_fake_fvp(pytester: pytest.Pytester, lab: Path) -> None:
    result = _run(pytester, "fvp-job", "fvp01", "[cache_state_modelled=1]")
    text = "\n".join(result.outlines + result.errlines)
    assert result.ret == 0, text[-4000:]
    results = lab / "results" / "fvp-job"
    rtsm = (results / "rtsm.log").read_text()
    assert "terminal_0: Listening for serial connection on port" in rtsm and "Simulation is started" in rtsm
    # the job's allowed option over the device's default; the other default kept; files from the image
    assert "fake FVP: option cache_state_modelled=1" in rtsm and "option semihosting-enable=1" in rtsm
    args = re.search(r"fake FVP: arguments -a (\S+)", rtsm)
    assert args and args.group(1).endswith("/img.axf"), rtsm
    assert re.search(r"option motherboard\.mmc\.p_mmc_file=\S+/sd\.img", rtsm)
    assert not Path(args.group(1)).exists()  # the per-job files are removed at the end
    bundle = json.loads((results / "bundle.json").read_text())
    lava = next(r for r in bundle["test_runs"] if r["test_id"] == "lava")
    attached = {a["pathname"]: base64.b64decode(a["content"]).decode() for a in lava["attachments"]}
    assert attached["rtsm.log"] == rtsm
    assert lava["attributes"]["target.simulator_version"] == "Fast Models [FAKE] 11.0"
    assert {r["test_case_id"]: r["result"] for r in lava["test_results"]}["boot_image"] == "pass"
    pids = _pids(results)
    assert len(pids) == 1 and _gone(pids[0])


def test_a_licence_failure_fails_the_boot_at_once(pytester: pytest.Pytester, lab: Path) -> None:
    t0 = time.monotonic()
    result = _run(pytester, "nolicence", "fvp-nolicence", "[]")
    elapsed = time.monotonic() - t0
    text = "\n".join(result.outlines + result.errlines)
    assert result.ret != 0
    assert "fvp-nolicence simulator: the simulator failed: ERROR: License check failed!" in text, text[-4000:]
    assert elapsed < 100  # the boot deadline is 120 s; the fake hangs for an hour after the line
    assert "Traceback" not in text
    pids = _pids(lab / "results" / "nolicence")
    assert len(pids) == 1 and _gone(pids[0])  # one attempt only, and nothing left running


def test_an_unknown_placeholder_and_a_forbidden_option_fail_validation(pytester: pytest.Pytester, lab: Path) -> None:
    dev = lab / "devices" / "fvp01.yaml"
    dev.write_text(dev.read_text().replace("{IMG}", "{IMAGE}"))
    (lab / "job.yaml").write_text(JOB.format(name="bad", target="fvp01", options="[semihosting-enable=0]", dir=lab))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-validate", "--lava-job", "job.yaml",
                                           "--lava-devices", "devices", timeout=120)
    text = "\n".join(result.outlines + result.errlines)
    assert result.ret == 4, text
    assert "device fvp01" in text and "unknown placeholder {IMAGE}" in text
    assert "boot option 'semihosting-enable' is not allowed" in text and "Traceback" not in text


def test_a_prebuilt_image_is_copied_and_its_boot_files_found(pytester: pytest.Pytester, lab: Path) -> None:
    from pytest_lava.artifacts.mkdisk import PartSpec, make_disk
    from pytest_lava.core.deadline import Deadline

    boot, root = lab / "t-boot", lab / "t-root"
    (root / "boot").mkdir(parents=True)
    boot.mkdir()
    (root / "boot" / "linux-system.axf").write_bytes(b"boot wrapper in the root partition")
    (root / "etc").mkdir()
    make_disk(lab / "prebuilt.img", [PartSpec("boot", boot), PartSpec("rootfs", root)], Deadline(60, "t"), lab)
    before = (lab / "prebuilt.img").read_bytes()
    job = JOB.format(name="prebuilt", target="fvp01", options="[]", dir=lab).replace(
        f'hwpack: "file://{lab}/hwpack.tar.gz", rootfs: "file://{lab}/rootfs.tar.gz"', f'image: "file://{lab}/prebuilt.img"')
    (lab / "prebuilt.yaml").write_text(job)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-job", "prebuilt.yaml", "--lava-devices",
                                           "devices", "--lava-results", "results", timeout=240)
    assert result.ret == 0, "\n".join(result.outlines[-40:])
    rtsm = (lab / "results" / "prebuilt" / "rtsm.log").read_text()
    assert re.search(r"fake FVP: arguments -a \S+/linux-system\.axf", rtsm), rtsm
    assert re.search(r"p_mmc_file=\S+/sd\.img", rtsm) and "prebuilt.img" not in rtsm
    assert (lab / "prebuilt.img").read_bytes() == before
