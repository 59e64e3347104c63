"""Hostile artifacts end to end, through `pytest --lava-job` on the lab's arm64 master board.

A job deploys a disk image whose root partition holds an ext4 directory entry named
``../../..<tmp>/outside/pwned`` (debugfs ``rdump`` used to write that path on the host), or a
root filesystem tarball whose ``.//etc`` symlink leads out of the partition it is unpacked in. The
deploy must fail on the host, before the board is needed, with a clear artifact error of kind
``job`` (which never counts against the board's health), and nothing may be written outside the
harness's own directories.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pytest_lava.plugin.session import default_state_dir

REPO = Path(__file__).resolve().parents[2]
BOARD = "arm64-01"
WWW = REPO / "lab" / "build" / "www"
pytestmark = pytest.mark.skipif(not (shutil.which("mkfs.ext4") and shutil.which("debugfs")),
                                reason="needs e2fsprogs")


def ext4(path: Path, tree: Path, size_mb: int = 8) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^metadata_csum", "-d", str(tree), str(path)], check=True,
                   timeout=60)
    return path


def rename_entry(fs: Path, old: bytes, new: bytes) -> None:
    """Rename a directory entry in the raw filesystem bytes (same length, no checksums to fix)."""
    img = bytearray(fs.read_bytes())
    hits, i = [], img.find(old)
    while i >= 0:
        if i >= 8 and img[i - 2] == len(old):  # the name of a directory entry (name_len before it)
            hits.append(i)
        i = img.find(old, i + 1)
    assert len(hits) == 1
    img[hits[0]:hits[0] + len(old)] = new
    fs.write_bytes(bytes(img))


def disk(out: Path, parts: list[Path]) -> Path:
    """An MBR disk image with the given filesystems as primary partitions 1, 2, ..."""
    mbr = bytearray(512)
    body = b""
    lba = 2048
    for i, fs in enumerate(parts):
        data = fs.read_bytes()
        sectors = (len(data) + 511) // 512
        mbr[446 + 16 * i:462 + 16 * i] = struct.pack("<B3xB3xII", 0, 0x83, lba, sectors)
        body += data + bytes(sectors * 512 - len(data))
        lba += sectors
    mbr[510:512] = b"\x55\xaa"
    out.write_bytes(bytes(mbr) + bytes(2048 * 512 - 512) + body)
    return out


def hostile_image(tmp_path: Path, target: Path) -> Path:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "Image").write_bytes(b"not a kernel")
    hostile = b"../" * 40 + str(target).lstrip("/").encode()
    assert len(hostile) <= 255
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("linaro\n")
    (root / "etc" / ("A" * len(hostile))).write_text("evil\n")
    root_fs = ext4(tmp_path / "root.fs", root)
    rename_entry(root_fs, b"A" * len(hostile), hostile)
    return disk(tmp_path / "hostile.img", [ext4(tmp_path / "boot.fs", boot), root_fs])


def hostile_rootfs(tmp_path: Path, target: Path) -> Path:
    out = tmp_path / "rootfs.tar.gz"
    with tarfile.open(out, "w:gz") as tf:
        link = tarfile.TarInfo(".//etc")
        link.type, link.linkname = tarfile.SYMTYPE, str(target.parent)
        tf.addfile(link)
        evil = tarfile.TarInfo("./etc/pwned")
        evil.size = 5
        tf.addfile(evil, io.BytesIO(b"evil\n"))
    return out


def run_job(tmp_path: Path, params: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    job = tmp_path / "hostile.json"
    job.write_text(json.dumps({"job_name": "hostile", "device_type": "lab-arm64-master", "timeout": 600,
                               "actions": [{"command": "deploy_linaro_image", "parameters": params},
                                           {"command": "boot_linaro_image"}]}))
    env = dict(os.environ, PYTEST_LAVA_CACHE=str(tmp_path / "harness" / "cache"))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lava-job", str(job),
                           "--lava-device", BOARD, "--lava-devices", str(REPO / "devices"),
                           "--lava-results", str(tmp_path / "harness" / "results"), "-rA"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["image", "rootfs"])
def test_hostile_artifact_fails_on_the_host_and_writes_nothing_outside(tmp_path: Path, lab_built: Path,
                                                                       kind: str, stop_new_boards: None) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "pwned"
    if kind == "image":
        params = {"image": f"file://{hostile_image(tmp_path, target)}"}
        why = "name contains '/'"
    else:
        params = {"hwpack": f"file://{WWW / 'hwpack_lab-arm64.tar'}",
                  "rootfs": f"file://{hostile_rootfs(tmp_path, target)}"}
        why = "below the symbolic link 'etc'"
    p = run_job(tmp_path, params)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-4000:]
    assert "unsafe" in out and why in out and "[job]" in out, out[-4000:]
    # nothing outside the harness's directories; nothing half-made inside them either
    assert not target.exists() and list(outside.iterdir()) == []
    cache = tmp_path / "harness" / "cache"
    assert not list(cache.rglob("lava-part-*")) and not list(cache.rglob("*.part-*"))
    assert not [p for p in cache.rglob("*") if "pwned" in p.name]
    # the board was never needed, and the job's fault does not count against it
    results = tmp_path / "harness" / "results" / "hostile"
    bundle = json.loads((results / "bundle.json").read_text())
    run = next(r for r in bundle["test_runs"] if r["test_id"] == "lava")
    assert [(t["test_case_id"], t["result"]) for t in run["test_results"]][:1] == [("deploy_linaro_image", "fail")]
    state = Path(os.environ.get("PYTEST_LAVA_STATE") or default_state_dir(REPO / "devices"))
    history = json.loads((state / "health" / f"{BOARD}.json").read_text()).get("history", [])
    assert history and history[-1]["job"] == "hostile" and history[-1]["infrastructure_failure"] is False
