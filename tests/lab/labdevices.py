"""Device directories for lab tests (importable: ``from tests.lab.labdevices import ...``)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEVICES = REPO / "devices"


def devices_left_on(where: Path) -> Path:
    """A copy of ``devices/`` whose boards stay on after a job (``end_of_job: leave-on``), for tests
    that look at the board after the job ran. Power commands run from the device directory's parent,
    so ``lab`` there is a link to the repository's ``lab/`` (labctl finds its files from its own path)."""
    base = where / "devices-left-on"
    (base / "devices").mkdir(parents=True, exist_ok=True)
    if not (base / "lab").exists():
        (base / "lab").symlink_to(REPO / "lab")
        (base / "devices" / "device-types").symlink_to(DEVICES / "device-types")
    for src in DEVICES.glob("*.yaml"):
        (base / "devices" / src.name).write_text(src.read_text() + "\nend_of_job: leave-on\n")
    return base / "devices"
