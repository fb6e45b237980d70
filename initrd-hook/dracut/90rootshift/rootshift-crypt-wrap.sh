#!/bin/sh
# rootshift-crypt-wrap.service (dracut with systemd in the initrd; written by rootshift-generator for an encrypted
# root): wrap the LUKS device of the container NAME (crypttab SOURCE) before systemd-cryptsetup@NAME opens it.
# systemd-cryptsetup opens SOURCE's /dev/disk/by-* path, which names the wrapper once udev has seen it
# (69-rootshift.rules: the component loses its links, the wrapper carries them): wait for that. Only a refusal
# to choose (twins after an interrupted migration) stops the boot; on any other failure the container opens from
# its own device, unwrapped.
#   rootshift-crypt-wrap.sh NAME SOURCE

. /lib/dracut-lib.sh
. /lib/rootshift-lib.sh

_node=$(rootshift_crypt_wrap_entry "$1" "$2")
case $? in
    0) ;;
    2) die "rootshift: not booting: no device is known to be complete after an interrupted migration; see the message above (it names rd.rootshift.pick=)" ;;
    *) exit 0 ;;
esac
case "$2" in
    UUID=* | LABEL=* | PARTUUID=* | PARTLABEL=*) _link=$(label_uuid_to_dev "$2") ;;
    *) exit 0 ;;
esac
_want=$(rootshift_resolve "$_node")
_n=0
while [ "$(rootshift_resolve "$_link")" != "$_want" ] && [ $_n -lt 40 ]; do
    udevadm trigger --action=change "/sys/class/block/${_want##*/}" 2> /dev/null
    udevadm settle --timeout=2 2> /dev/null
    sleep 0.25
    _n=$((_n + 1))
done
[ "$(rootshift_resolve "$_link")" = "$_want" ] \
    || rootshift_log 3 "$_link still names $(rootshift_resolve "$_link"), not the wrapper $_node: systemd-cryptsetup may fail to open $1 (the wrapper holds its device)"
exit 0
