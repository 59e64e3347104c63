"""The lab's devices: device files, the device directory, power, the board pool and health."""
