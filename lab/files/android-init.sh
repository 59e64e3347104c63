#!/bin/sh
# /init of the lab's busybox "android" ramdisk (boot.tar.bz2). Not Android: a stand-in with the
# same partition roles (system, data, cache), a property service (/sbin/getprop, setprop over
# /dev/__properties__, one file per property), adbd on TCP 5555 and the Linaro Android prompt
# "root@linaro: ". See lab/lablib/android.py and lab/README.md.
export PATH=/sbin:/bin:/system/bin:/system/xbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
kver=$(uname -r)
[ -f "/lib/modules/$kver/load-order" ] && for m in $(cat "/lib/modules/$kver/load-order"); do insmod "/lib/modules/$kver/$m" 2>/dev/null; done
system=/dev/vda8
data=/dev/vda9
cache=/dev/vda10
serialno=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        androidboot.system=*) system="${arg#androidboot.system=}" ;;
        androidboot.data=*) data="${arg#androidboot.data=}" ;;
        androidboot.cache=*) cache="${arg#androidboot.cache=}" ;;
        androidboot.serialno=*) serialno="${arg#androidboot.serialno=}" ;;
    esac
done
sleep 0.5
mount "$system" /system || echo "init: cannot mount system ($system)"
mount "$data" /data || echo "init: cannot mount data ($data)"
mount "$cache" /cache 2>/dev/null || echo "init: cannot mount cache ($cache)"
mkdir -p /data/local/tmp /data/media && ln -sfn /data/media /sdcard
dmesg -n 1
hostname linaro
ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2

# property service: a tmpfs directory, one file per property; ro.* are write-once (first wins)
export ANDROID_PROPERTY_DIR=/dev/__properties__
mkdir -p "$ANDROID_PROPERTY_DIR" && mount -t tmpfs -o mode=0755 properties "$ANDROID_PROPERTY_DIR"
load_props() {
    while IFS= read -r line; do
        case "$line" in
            ''|'#'*) ;;
            *=*) setprop "${line%%=*}" "${line#*=}" 2>/dev/null ;;
        esac
    done < "$1"
}
[ -n "$serialno" ] && setprop ro.serialno "$serialno"
for f in /default.prop /system/build.prop /data/local.prop; do [ -f "$f" ] && load_props "$f"; done
setprop ro.boot.hardware qemu-virt
setprop init.svc.property_service running

export ANDROID_ROOT=/system ANDROID_DATA=/data ANDROID_CACHE=/cache EXTERNAL_STORAGE=/sdcard HOME=/data
# adbd: its own session (Ctrl-C on the console never reaches it); reboot: goes back through U-Boot
setsid adbd --port 5555 --root / --chdir / --reboot-cmd 'sync; reboot -f' </dev/null >/tmp/adbd.log 2>&1 &
setprop init.svc.adbd running
echo "init: lab android booted (system=$system data=$data cache=$cache)"
[ -f /system/build.prop ] && grep ro.build.display.id /system/build.prop
setprop sys.boot_completed 1
export PS1='root@linaro: '
cd /
while :; do setsid cttyhack sh; sleep 1; done
