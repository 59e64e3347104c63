# U-Boot script of the lab master image (found by distro boot on the bootable partition 1)
echo "lab: booting the master image from ${devtype} ${devnum}:${distro_bootpart}"
setenv bootargs "console=ttyAMA0 root=/dev/vda2 rootwait panic=10"
load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} /Image
load ${devtype} ${devnum}:${distro_bootpart} ${ramdisk_addr_r} /initrd.gz
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
