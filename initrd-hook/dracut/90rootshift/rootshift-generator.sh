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

# An encrypted root moves as ciphertext: the wrapper goes below dm-crypt. rootshift-crypt-wrap.service wraps the
# container's device before systemd-cryptsetup opens it, by a path (/dev/disk/by-uuid/...) that then names the
# wrapper; the root stays the mapping, so sysroot.mount and the fsck are left as they are.
case "$(rootshift_backend)" in
    dm | md)
        if _centry=$(rootshift_dracut_crypt_entry); then
            _cname=${_centry%% *}
            _csrc=${_centry#* }
            case "$_csrc" in
                UUID=* | LABEL=* | PARTUUID=* | PARTLABEL=*) _cdev=$(label_uuid_to_dev "$_csrc") ;;
                *) _cdev=$_csrc ;;
            esac
            _cunit=$(dev_unit_name "$_cdev").device
            _esc=$(systemd-escape -- "$_cname")
            {
                echo "[Unit]"
                echo "Description=rootshift: wrap the encrypted root's device before it is opened"
                echo "Documentation=man:rootshift(8)"
                echo "DefaultDependencies=no"
                echo "Wants=$_cunit"
                echo "After=$_cunit systemd-udev-trigger.service"
                echo "Before=systemd-cryptsetup@$_esc.service cryptsetup.target"
                echo "ConditionPathExists=/etc/initrd-release"
                echo "Conflicts=shutdown.target emergency.target"
                echo "[Service]"
                echo "Type=oneshot"
                echo "RemainAfterExit=yes"
                echo "Environment=DRACUT_SYSTEMD=1"
                echo "ExecStart=/bin/sh /lib/rootshift-crypt-wrap.sh $_cname $_csrc"
                echo "StandardInput=null"
                echo "StandardOutput=journal+console"
                echo "StandardError=journal+console"
                echo "KillMode=process"
            } > "$GENERATOR_DIR/rootshift-crypt-wrap.service"
            mkdir -p "$GENERATOR_DIR/systemd-cryptsetup@$_esc.service.d"
            {
                echo "[Unit]"
                echo "Wants=rootshift-crypt-wrap.service"
                echo "After=rootshift-crypt-wrap.service"
            } > "$GENERATOR_DIR/systemd-cryptsetup@$_esc.service.d/50-rootshift.conf"
            exit 0
        fi
        ;;
esac

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
