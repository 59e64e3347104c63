"""The lab's Debian image helpers (lab/lablib/debian.py) on tiny .debs made here: dpkg database
entries as dpkg writes them, merged /usr, and the apt repository's Packages/Release."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
from lablib import debian  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def make_deb(tmp: Path, name: str, files: dict[str, str], *, multi_arch: str = "", conffiles: str = "") -> Path:
    tree = tmp / f"{name}-tree"
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    (tree / "DEBIAN").mkdir(parents=True)
    control = f"Package: {name}\nVersion: 1.0-1\nArchitecture: arm64\nMaintainer: t <t@t>\nDescription: test\n"
    if multi_arch:
        control += f"Multi-Arch: {multi_arch}\n"
    (tree / "DEBIAN/control").write_text(control)
    if conffiles:
        (tree / "DEBIAN/conffiles").write_text(conffiles)
    (tree / "DEBIAN/postinst").write_text("#!/bin/sh\necho never runs\n")
    (tree / "DEBIAN/postinst").chmod(0o755)
    deb = tmp / f"{name}_1.0-1_arm64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True,
                   capture_output=True)
    return deb


def test_unpack_writes_what_dpkg_would_and_usr_is_merged(tmp_path: Path) -> None:
    root, info = tmp_path / "root", tmp_path / "root/var/lib/dpkg/info"
    info.mkdir(parents=True)
    tool = make_deb(tmp_path, "tool", {"bin/tool": "#!/bin/sh\n", "usr/bin/other": "x\n", "etc/tool.conf": "a=1\n"},
                    conffiles="/etc/tool.conf\n")
    lib = make_deb(tmp_path, "libthing1", {"lib/aarch64-linux-gnu/libthing.so.1": "elf\n"}, multi_arch="same")
    stanzas = [debian.unpack(tool, root, info), debian.unpack(lib, root, info)]
    assert stanzas[0].startswith("Package: tool\nStatus: install ok installed\n")
    md5 = hashlib.md5(b"a=1\n").hexdigest()
    assert f"Conffiles:\n /etc/tool.conf {md5}\n" in stanzas[0]
    assert (info / "tool.list").read_text().splitlines()[:2] == ["/.", "/bin"]
    assert "/bin/tool" in (info / "tool.list").read_text()
    assert (info / "tool.postinst").is_file() and (info / "libthing1:arm64.list").is_file()
    debian.merge_usr(root)
    assert (root / "bin").is_symlink() and (root / "bin/tool").read_text() == "#!/bin/sh\n"
    assert (root / "usr/bin/other").is_file() and (root / "usr/lib/aarch64-linux-gnu/libthing.so.1").is_file()
    assert (root / "lib").resolve() == (root / "usr/lib").resolve()


def test_repository_has_packages_and_a_release_that_hashes_them(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    deb = make_deb(tmp_path, "tool", {"usr/bin/tool": "x\n"})
    packages, release = debian.write_repo(tmp_path / "repo", [deb])
    assert "Package: tool\n" in packages and "Filename: pool/tool_1.0-1_arm64.deb\n" in packages
    assert f"SHA256: {hashlib.sha256(deb.read_bytes()).hexdigest()}" in packages
    bindir = tmp_path / "repo/dists/lab/main/binary-arm64"
    assert gzip.decompress((bindir / "Packages.gz").read_bytes()).decode() == packages
    digest = hashlib.sha256(packages.encode()).hexdigest()
    assert f" {digest} {len(packages.encode())} main/binary-arm64/Packages\n" in release
    assert (tmp_path / "repo/pool/tool_1.0-1_arm64.deb").samefile(deb)
    root = tmp_path / "img"
    debian.apt_config(root, packages, release)
    assert (root / "etc/apt/sources.list").read_text() == "deb [trusted=yes] http://10.0.2.2:7080/debian lab main\n"
    lists = root / "var/lib/apt/lists"
    assert (lists / "10.0.2.2:7080_debian_dists_lab_main_binary-arm64_Packages").read_text() == packages


def test_posix_runner_prints_lava_tests_lines_maps_exit_codes_and_leaves_out_tests(tmp_path: Path) -> None:
    from lablib import posix

    area = tmp_path / "conformance/interfaces/sigaction"
    area.mkdir(parents=True)
    for name, code in (("1-1", "exit 0"), ("2-1", "echo why; exit 1"), ("3-1", "exit 4"), ("4-1", "sleep 5")):
        (area / f"{name}.test").write_text(f"#!/bin/sh\n{code}\n")
        (area / f"{name}.test").chmod(0o755)
    (tmp_path / "run-tests").write_text(posix.RUNNER)
    (tmp_path / "run-tests").chmod(0o755)
    out = subprocess.run([str(tmp_path / "run-tests"), "-t", "1", "-x", "sigaction/3-*", "sig*"],
                         capture_output=True, text=True, timeout=30).stdout
    assert out.splitlines()[:3] == ["conformance/interfaces/sigaction/1-1 execution: PASSED", "    why",
                                    "conformance/interfaces/sigaction/2-1 execution: FAILED"]
    assert [line for line in out.splitlines() if not line.startswith(" ")][2:] == [
        "conformance/interfaces/sigaction/4-1 execution: INTERRUPTED"]
