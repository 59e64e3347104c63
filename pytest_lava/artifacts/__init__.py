"""Host-side handling of test image artifacts: tarballs, hwpacks, kernel packages, disk images.

Everything here works on files, never on the host's own system: no root loop mounts, no device
nodes created on the host, no path ever escaping its target directory. The artifacts a job
points at are not trusted (the harness may run with more rights than a job should have): every
name inside them is checked by code of our own before anything is written; an unsafe or malformed
artifact is an
:class:`ArtifactError` (the job's fault, kind ``job``: it never counts against a board's health).

* :func:`decompress` (:mod:`.compress`) — gz, bz2, xz (by magic number) to a plain file,
  streaming, at most :data:`~.limits.MAX_DECOMPRESSED` bytes; the board gets uncompressed
  tarballs (guest-side gunzip under TCG is far slower than the network).
* :func:`check_tar` (:mod:`.tarballs`, the one path-safety policy) — refuse a tarball whose
  members would land outside the directory it is unpacked in on the board (absolute names,
  ``..``, a member below or replacing a symlink member however it is spelled, a hard link out or
  to a symlink).
* :func:`safe_extract` (:mod:`.extract`) — unpack on the host, member by member, by our own code:
  the same checks plus symbolic links that point outside (absolute, ``..``, or through a chain of
  links), no device nodes or FIFOs (skipped), never through a symlink on disk (``O_NOFOLLOW`` at
  every step), at most :data:`~.limits.MAX_EXTRACTED` bytes. The interpreter's ``data`` filter is
  applied on top where it exists (it is absent from Python 3.11.2, and not enough alone:
  CVE-2025-4517).
* :func:`replace_kernel` (:mod:`.hwpack`) — the ``kernel_matrix`` step: a hwpack with its kernel
  taken from a .deb (:mod:`.deb`: the ``ar`` container and its data archive).
* :func:`read_partitions` (:mod:`.partitions`) / :func:`partition_tar` (:mod:`.disks`) — MBR
  (with logical partitions) and GPT parsed here with every field bounded; ext2/3/4 contents
  (:mod:`.extfs`) taken out with e2fsprogs ``debugfs`` on ``image?offset=N`` only after every
  directory entry has been read raw and checked (:mod:`.fsnames`: no ``/``, NUL or newline in a
  name, no ``.``/``..`` besides the first two, no duplicate; no directory linked twice); FAT read
  by a small reader of our own straight into the tarball (:mod:`.fat`, no mtools).

The caps on what a hostile artifact can make the host do are module constants of
:mod:`.limits`, read from there at each use: a lab with bigger images raises them there, a test
monkeypatches that module. The ``MAX_*`` names re-exported here are copies of the defaults.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from ..core.errors import ArtifactError
from .limits import MAX_DECOMPRESSED, MAX_EXTRACTED

if TYPE_CHECKING:
    from .compress import compression_of, decompress
    from .deb import deb_data, deb_files
    from .disks import filesystem_of, partition_tar
    from .extract import lookup, safe_extract
    from .hwpack import read_hwpack_meta, replace_kernel
    from .partitions import Partition, read_partitions
    from .tarballs import check_tar, make_tar

# each name from its module on first use: a job that downloads nothing or boots a kernel directly
# does not import the disk-image readers (``from ..artifacts.download import ...`` runs this file)
_LAZY = {"compression_of": "compress", "decompress": "compress", "deb_data": "deb", "deb_files": "deb",
         "filesystem_of": "disks", "partition_tar": "disks", "lookup": "extract", "safe_extract": "extract",
         "read_hwpack_meta": "hwpack", "replace_kernel": "hwpack", "Partition": "partitions",
         "read_partitions": "partitions", "check_tar": "tarballs", "make_tar": "tarballs"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

__all__ = ["ArtifactError", "MAX_DECOMPRESSED", "MAX_EXTRACTED", "Partition", "check_tar", "compression_of",
           "deb_data", "deb_files", "decompress", "filesystem_of", "make_tar", "partition_tar", "read_hwpack_meta",
           "lookup", "read_partitions", "replace_kernel", "safe_extract"]
