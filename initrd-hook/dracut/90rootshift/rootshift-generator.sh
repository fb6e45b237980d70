#!/bin/sh
# systemd generator in the initrd (dracut with systemd): order rootshift-wrap.service before the root mount and,
# when the root will be wrapped, point sysroot.mount and the root's fsck at the wrapper (see
# rootshift-systemd-lib.sh). Drop-ins only: sysroot.mount itself comes from systemd-fstab-generator,
# dracut's rootfs-generator or dmsquash-generator. Writes nothing outside its output directory.
#   rootshift-generator NORMAL-DIR [EARLY-DIR LATE-DIR]

# ROOTSHIFT_LIBDIR: where the libraries are (the initrd's /lib; initrd-hook/test-generator points it elsewhere)
command -v getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. "${ROOTSHIFT_LIBDIR:-/lib}/rootshift-lib.sh"
. "${ROOTSHIFT_LIBDIR:-/lib}/rootshift-systemd-lib.sh"

GENERATOR_DIR=$1
[ -n "$GENERATOR_DIR" ] || exit 1
mkdir -p "$GENERATOR_DIR/sysroot.mount.d"

# the choice (rootshift choose) runs whether or not the root is wrapped: always before the mount
{
    echo "[Unit]"
    echo "Wants=rootshift-wrap.service"
    echo "After=rootshift-wrap.service"
} > "$GENERATOR_DIR/sysroot.mount.d/50-rootshift.conf"

_what=$(rootshift_systemd_what) || exit 0
_dev=$(rootshift_systemd_root) || _dev=

echo "[Mount]" >> "$GENERATOR_DIR/sysroot.mount.d/50-rootshift.conf"
echo "What=$_what" >> "$GENERATOR_DIR/sysroot.mount.d/50-rootshift.conf"

# The root fsck checks what is mounted, not the claimed component: systemd-fsck@<root device>.service (dracut's
# rootfs-generator, systemd-fstab-generator of newer systemd) or systemd-fsck-root.service (systemd-fstab-generator
# in Debian 12's initrd). A drop-in for a unit nothing starts is inert.
_fsck=
for _d in /usr/lib/systemd /lib/systemd; do
    [ -x "$_d/systemd-fsck" ] && _fsck=$_d/systemd-fsck && break
done
[ -n "$_fsck" ] || exit 0
_units=systemd-fsck-root.service
case "$_dev" in
    /dev/mapper/live-rw | "") ;;
    *) _units="$_units systemd-fsck@$(dev_unit_name "$_dev").service" ;;
esac
for _u in $_units; do
    mkdir -p "$GENERATOR_DIR/$_u.d"
    {
        echo "[Unit]"
        echo "After=rootshift-wrap.service"
        echo "[Service]"
        echo "ExecStart="
        echo "ExecStart=$_fsck $_what"
    } > "$GENERATOR_DIR/$_u.d/50-rootshift.conf"
done
exit 0
