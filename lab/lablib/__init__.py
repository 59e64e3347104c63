"""The emulated lab: build (images from Debian packages) and run (QEMU boards behind ser2net)."""
