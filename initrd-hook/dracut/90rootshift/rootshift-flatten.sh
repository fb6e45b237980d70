#!/bin/sh
# dracut pre-pivot hook (with or without systemd in the initrd: dracut-pre-pivot.service runs these): finish a
# `rootshift flatten` on the root mounted at $NEWROOT before it is entered (see src/plain/flatmove.rs).
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
if [ -e "$NEWROOT/rootshift-flat.ready" ] || [ -e "$NEWROOT/rootshift-flat.moving" ] || [ -d "$NEWROOT/rootshift-old" ]; then
    rootshift boot flatten-finish "$NEWROOT" \
        || die "rootshift: could not move the flattened system into place; 'rootshift boot flatten-finish $NEWROOT' goes on from where it stopped"
fi
