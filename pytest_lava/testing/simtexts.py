"""What the SIMULATED board (:mod:`.simboard`) prints — a FAKE: a U-Boot banner and a kernel and
systemd boot log shaped like a Debian board's, so prompt and banner matching meet real-looking text."""

from __future__ import annotations

from .simshell import KERNEL


def boot_log(hostname: str, bootargs: str) -> list[str]:
    """The kernel and init part of the boot log (about 45 lines)."""
    k = [
        f"Linux version {KERNEL} (sim@lab) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC",
        f"Command line: {bootargs}",
        "BIOS-provided physical RAM map:", "Memory: 498432K/523768K available", "smp: Bringing up secondary CPUs",
        "smp: Brought up 1 node, 2 CPUs", "devtmpfs: initialized", "clocksource: Switched to clocksource tsc",
        "NET: Registered PF_INET protocol family", "PCI: Using configuration type 1 for base access",
        "Serial: 8250/16550 driver, 4 ports, IRQ sharing enabled",
        "serial8250: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A",
        "printk: console [ttyS0] enabled", "virtio_blk virtio0: [vda] 4194304 512-byte logical blocks",
        " vda: vda1 vda2 vda3 vda4 < vda5 vda6 vda7 >", "e1000 0000:00:03.0 eth0: (PCI:33MHz:32-bit)",
        "EXT4-fs (vda2): mounted filesystem with ordered data mode", "VFS: Mounted root (ext4 filesystem)",
        "devtmpfs: mounted", "Freeing unused kernel image (initmem) memory: 2824K", "Run /sbin/init as init process",
    ]
    k += [f"random: crng init done ({i})" if i == 0 else f"sim: probing bus {i}" for i in range(8)]
    out = [f"[{0.1 * i + 0.000321 * i * i:12.6f}] {line}" for i, line in enumerate(k)]
    out += [
        "systemd[1]: Detected architecture x86-64.", f"systemd[1]: Hostname set to <{hostname}>.",
        "[  OK  ] Reached target Local File Systems.", "[  OK  ] Started Journal Service.",
        "[  OK  ] Reached target Network.", "[  OK  ] Started Serial Getty on ttyS0.",
        "[  OK  ] Reached target Multi-User System.", "",
        f"Debian GNU/Linux 12 {hostname} ttyS0", "", f"{hostname} login: root (automatic login)", "",
    ]
    return out


UBOOT_BANNER = [
    "", "U-Boot 2023.01+dfsg-2 (simulated board)", "", "DRAM:  512 MiB", "Core:  18 devices, 10 uclasses",
    "MMC:   mmc@1c0f000: 0", "In:    serial", "Out:   serial", "Err:   serial", "Net:   eth0: ethernet@1c30000",
]
