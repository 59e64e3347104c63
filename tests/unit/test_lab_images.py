"""The lab's image helpers that need no Debian package: the ELF kernel inside a bzImage."""

from __future__ import annotations

import lzma
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
from lablib import images  # noqa: E402
from lablib.host import LabError  # noqa: E402


def test_vmlinux_of_extracts_the_xz_compressed_elf_of_a_bzimage(tmp_path: Path) -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(b"MZ setup code" + b"\0" * 500 + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"trailer")
    images.vmlinux_of(bz, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == elf
    assert not list(tmp_path.glob("*.tmp"))


def test_vmlinux_of_names_the_kernel_that_has_no_xz_stream(tmp_path: Path) -> None:
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(b"MZ gzip kernel \x1f\x8b")
    with pytest.raises(LabError, match="vmlinuz: no xz stream"):
        images.vmlinux_of(bz, tmp_path / "vmlinux")
    bz.write_bytes(b"MZ" + lzma.compress(b"not an elf", format=lzma.FORMAT_XZ))
    with pytest.raises(LabError, match="not an ELF kernel"):
        images.vmlinux_of(bz, tmp_path / "vmlinux")
    assert not (tmp_path / "vmlinux").exists()
