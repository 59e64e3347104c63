#!/bin/sh
# /init of the lab's switch_root initrd (master boot and the "Linaro" test image's hwpack).
# Loads the virtio/ext4 modules of the running kernel (the initrd carries the modules of every
# kernel the lab ships, so a kernel-matrix kernel boots it too), finds root= (a device node or
# LABEL=...), mounts it read-write and switch_roots into it.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
kver=$(uname -r)
if [ -f "/lib/modules/$kver/load-order" ]; then
    for m in $(cat "/lib/modules/$kver/load-order"); do insmod "/lib/modules/$kver/$m" 2>/dev/null; done
else
    echo "initrd: no modules for kernel $kver in this initrd"
fi
root=""
init=/sbin/init
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root="${arg#root=}" ;;
        init=*) init="${arg#init=}" ;;
    esac
done
rescue() { echo "initrd: $*"; echo "initrd: dropping to a rescue shell"; export PS1='initrd-rescue# '; exec setsid cttyhack sh; }
[ -n "$root" ] || rescue "no root= on the kernel command line"
n=0
while :; do
    case "$root" in
        LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
        *) dev="$root" ;;
    esac
    [ -n "$dev" ] && [ -b "$dev" ] && break
    n=$((n + 1))
    [ $n -gt 200 ] && rescue "root device $root did not appear"
    sleep 0.1
done
mkdir -p /newroot
mount "$dev" /newroot || rescue "cannot mount $dev ($root)"
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || rescue "$init not found on $dev"
echo "initrd: switching to root $dev ($root)"
umount /proc /sys
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
exec switch_root /newroot "$init"
