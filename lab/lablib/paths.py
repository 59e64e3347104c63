"""Where the lab keeps things: everything is relative to this file, never to the cwd."""

from __future__ import annotations

from pathlib import Path

LAB = Path(__file__).resolve().parent.parent  # <repo>/lab
REPO = LAB.parent
FILES = LAB / "files"  # init scripts and templates (tracked)
BUILD = LAB / "build"  # build outputs (gitignored)
CACHE = LAB / "cache"  # downloaded .debs and extracted trees (gitignored)
RUN = LAB / "run"  # pid files, logs, per-board disks (gitignored)
WWW = BUILD / "www"  # artifacts served over HTTP
DEVICES = REPO / "devices"
