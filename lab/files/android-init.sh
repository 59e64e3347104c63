#!/bin/sh
# /init of the lab's busybox "android" ramdisk (boot.tar.bz2). Not Android: a stand-in with the
# same partition roles (system, data) and the Linaro Android prompt "root@linaro: ".
export PATH=/bin:/sbin:/system/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
kver=$(uname -r)
[ -f "/lib/modules/$kver/load-order" ] && for m in $(cat "/lib/modules/$kver/load-order"); do insmod "/lib/modules/$kver/$m" 2>/dev/null; done
system=/dev/vda8
data=/dev/vda9
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        androidboot.system=*) system="${arg#androidboot.system=}" ;;
        androidboot.data=*) data="${arg#androidboot.data=}" ;;
    esac
done
sleep 0.5
mount "$system" /system || echo "init: cannot mount system ($system)"
mount "$data" /data || echo "init: cannot mount data ($data)"
dmesg -n 1
hostname linaro
ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
echo "init: lab android booted (system=$system data=$data)"
[ -f /system/build.prop ] && grep ro.build.display.id /system/build.prop
export PS1='root@linaro: '
export ANDROID_ROOT=/system ANDROID_DATA=/data
while :; do setsid cttyhack sh; sleep 1; done
