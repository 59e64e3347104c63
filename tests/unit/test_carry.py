"""Files carried into the test image at boot (testdefs/carry.py): the cpio archive the kernel
unpacks, the initramfs it is appended to, and a runner that sends nothing the boot carried."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_lava.core.deadline import Deadline
from pytest_lava.testdefs import load_builtin
from pytest_lava.testdefs.carry import Carried, carry_files, cpio_newc, initrd_with, is_cpio_initrd
from pytest_lava.testdefs.device import DeviceRunner, definition_files
from pytest_lava.testdefs.helpers import HELPERS, RUNNER_VERSION
from pytest_lava.testdefs.parse import CaseCollector
from tests.unit.fake_busybox import BUSYBOX

needs_cpio = pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")


def unpack(archive: bytes, where: Path) -> None:
    """GNU cpio reads the archive as the kernel does (newc, relative names, directories first)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=archive, cwd=where, check=True)


@needs_cpio
def test_the_carried_archive_holds_helpers_definition_and_stamp(tmp_path: Path) -> None:
    definition = load_builtin("smoke")
    extra = definition_files(definition, "/lava", "0_smoke")
    files, carried = carry_files("/lava", extra)
    unpack(cpio_newc(files), tmp_path)
    lava = tmp_path / "lava"
    assert (lava / "bin" / ".version").read_text().strip() == RUNNER_VERSION
    for name in HELPERS:
        assert (lava / "bin" / name).read_text() == HELPERS[name]
        assert os.access(lava / "bin" / name, os.X_OK)
    assert (lava / "tests/0_smoke/run.sh").read_bytes() == extra[0][1]
    assert not os.access(lava / "tests/0_smoke/testdef.yaml", os.X_OK)
    assert (lava / f".carried-{carried.ident}").read_text() == f"{carried.stamp_line}\n"
    assert carried.stamp_path == f"/lava/.carried-{carried.ident}"
    assert set(carried.files) == {path for path, _, _ in files} - {carried.stamp_path}


def test_an_initramfs_is_extended_only_if_it_is_a_cpio_archive(tmp_path: Path) -> None:
    base = cpio_newc([("/init", b"#!/bin/sh\n", "0755")])
    gz, xz, plain = tmp_path / "a.cpio.gz", tmp_path / "a.cpio.xz", tmp_path / "a.cpio"
    gz.write_bytes(gzip.compress(base))
    xz.write_bytes(lzma.compress(base))
    plain.write_bytes(base)
    ext2 = tmp_path / "ramdisk.gz"
    ext2.write_bytes(gzip.compress(b"\0" * 1024 + b"\x53\xef" + b"\0" * 4096))  # an old-style ramdisk image
    assert all(is_cpio_initrd(p) for p in (gz, xz, plain))
    assert not is_cpio_initrd(ext2)
    assert not is_cpio_initrd(tmp_path / "missing")
    files, _ = carry_files("/lava")
    out = tmp_path / "initrd"
    initrd_with(gz, files, out)
    data, original = out.read_bytes(), gz.read_bytes()
    aligned = len(original) + (-len(original) % 4)  # the appended archive starts 4-byte aligned
    assert data[:len(original)] == original and data[len(original):aligned] == b"\0" * (aligned - len(original))
    assert gzip.decompress(data[aligned:]) == cpio_newc(files)
    assert gzip.decompress(data).startswith(base)  # the concatenation, read as the kernel reads it


def _carry_onto(lava: str, definition_name: str) -> tuple[list[tuple[str, bytes, str]], Carried]:
    definition = load_builtin(definition_name)
    files, carried = carry_files(lava, definition_files(definition, lava, "smoke"))
    for path, data, mode in files:  # what the kernel does with the appended archive
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
        Path(path).chmod(int(mode, 8))
    return files, carried


@needs_busybox
def test_a_runner_sends_nothing_the_boot_carried_and_the_definition_runs(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lava = str(tmp_path / "rootfs" / "lava")
    _files, carried = _carry_onto(lava, "smoke")
    runner = DeviceRunner(shell, lava, carried=carried)
    sent: list[list[str]] = []
    real = runner.transfer.push_many
    runner.transfer.push_many = lambda files, d: (sent.append([p for p, _, _ in files]), real(files, d))  # type: ignore[method-assign]
    assert runner.install_helpers(30) is False  # the carried .version is this version
    d = load_builtin("smoke")
    runner.install_definition(d, "smoke", 30)
    assert sent == [[]]  # nothing travelled over the console
    c = CaseCollector(d)
    assert runner.run_test("smoke", Deadline(60, "run"), c.feed) == 0
    assert c.cases and all(x.result == "pass" for x in c.cases)
    assert carried.verified is True
    # the carried copies are used once: the same files again (another action) travel as before
    runner.install_definition(d, "smoke", 30)
    assert sent[-1] == [path for path, _, _ in definition_files(d, lava, "smoke")]


@needs_busybox
def test_without_the_stamp_on_the_image_the_files_are_sent_and_the_command_runs(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An image that did not keep the carried files (another root filesystem): the first command's
    guard says so instead of running, the runner sends everything, then runs it."""
    lava = str(tmp_path / "rootfs" / "lava")
    _files, carried = _carry_onto(lava, "smoke")
    shutil.rmtree(lava)
    runner = DeviceRunner(shell, lava, carried=carried)
    assert runner.install_helpers(30) is False  # trusted: no round trip of its own
    d = load_builtin("smoke")
    runner.install_definition(d, "smoke", 30)
    assert not Path(lava, "tests").exists()  # nothing sent yet
    lines: list[str] = []
    c = CaseCollector(d)
    assert runner.run_test("smoke", Deadline(60, "run"), lambda line: (lines.append(line), c.feed(line))) == 0
    assert carried.verified is False and not any("CARRY" in line for line in lines)
    assert Path(lava, "bin", ".version").read_text().strip() == RUNNER_VERSION
    assert c.cases and all(x.result == "pass" for x in c.cases)
    # the next runner of this boot does not trust the carried files any more
    again = DeviceRunner(shell, lava, carried=carried)
    assert again.install_helpers(30) is False  # the helpers are there now: checked by a round trip
    assert again._unverified is None


@needs_busybox
def test_the_next_test_shell_s_definitions_are_carried_and_the_action_sends_nothing(tmp_path: Path) -> None:
    """files_to_carry, from the boot action of a real job, gives the very files lava_test_shell
    would send: with them on the image, the action sends nothing and reports its cases."""
    import yaml

    from pytest_lava.actions import registry
    from pytest_lava.actions.lava_test_state import files_to_carry, lava_dir
    from pytest_lava.jobs.job import load_job
    from pytest_lava.testdefs.transfer import ConsoleTransfer
    from tests.unit.test_lava_test_actions import FakeCtx

    inline = {"metadata": {"format": "Lava-Test Test Definition 1.0", "name": "carried"},
              "run": {"steps": ["lava-test-case one --shell true", "lava-test-case two --shell false"]}}
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({"job_name": "carry", "device_type": "qemu", "timeout": 60, "actions": [
        {"command": "boot_linaro_image"},
        {"command": "lava_test_shell", "parameters": {"testdefs": [inline, "smoke"]}}]}))
    job = load_job(job_file)
    ctx = FakeCtx(tmp_path)
    try:
        ctx.job, ctx.action = job, job.actions[0]  # type: ignore[assignment]
        extra = files_to_carry(ctx)  # type: ignore[arg-type]
        assert sorted({path.rsplit("/", 2)[-2] for path, _, _ in extra}) == ["0_carried", "1_smoke"]
        files, carried = carry_files(lava_dir(ctx), extra)  # type: ignore[arg-type]
        for path, data, mode in files:  # what the kernel does with the appended archive
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
            Path(path).chmod(int(mode, 8))
        ctx.driver.carried = carried  # type: ignore[attr-defined]
        sent: list[str] = []
        real = ConsoleTransfer.push_many

        def spy(self: ConsoleTransfer, batch: list[tuple[str, bytes, str]], deadline: object) -> None:
            sent.extend(path for path, _, _ in batch)
            real(self, batch, deadline)  # type: ignore[arg-type]

        ConsoleTransfer.push_many = spy  # type: ignore[method-assign]
        try:
            ctx.action = job.actions[1]  # type: ignore[assignment]
            registry()["lava_test_shell"].run(ctx, job.actions[1].parameters)  # type: ignore[misc]
        finally:
            ConsoleTransfer.push_many = real  # type: ignore[method-assign]
        assert sent == [] and carried.verified is True
        results = {c.test_case_id: c.result for c in ctx.cases}
        assert results["carried.one"] == "pass" and results["carried.two"] == "fail"
        assert any(k.startswith("smoke.") for k in results)
    finally:
        ctx.close()


def test_no_definition_is_carried_for_a_repository_or_an_url(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pytest_lava.actions.lava_test_state import files_to_carry

    def ctx_for(params: dict) -> object:
        action = SimpleNamespace(index=1, command="lava_test_shell", parameters=params, path="actions[1]")
        return SimpleNamespace(action=None, job=SimpleNamespace(actions=[action], file=tmp_path / "job.yaml"),
                               device=SimpleNamespace(extra={}), run=SimpleNamespace(slot=lambda cls: cls()))

    assert files_to_carry(ctx_for({"testdef_repos": [{"git-repo": "https://example.org/x.git"}]})) == []  # type: ignore[arg-type]
    assert files_to_carry(ctx_for({"testdefs": ["https://example.org/x.yaml"]})) == []  # type: ignore[arg-type]
    assert files_to_carry(ctx_for({"testdefs": [{"metadata": {}}]})) == []  # type: ignore[arg-type]  # invalid: the action says so
    assert files_to_carry(ctx_for({"testdefs": ["smoke"]}))  # type: ignore[arg-type]
