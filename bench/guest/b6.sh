#!/bin/sh
# B6 alone (bench/run --guest-script bench/guest/b6.sh): the switch's critical section timed on the root wrapper
# N times (rootshift testing switch-window) and in a few migrations of a bench filesystem with a writer busy on it;
# the same rows as bench.sh's B6, for a before/after comparison of the switch window in one sitting.
. /vmtest/bench/common.sh

# ---- migrations whose switch windows B6 also reports (full copies of the smallest set, a writer busy) ------------
n=${SWEEP%% *}
r=1
while [ $r -le 3 ]; do
  ( i=0; while [ ! -e /tmp/b6.stop ] && [ $i -lt 400 ]; do head -c 65536 /dev/urandom > /mnt/$n/b6w.$((i % 8)); i=$((i + 1)); done ) &
  WP=$!
  mig B6-mig $n $r full
  touch /tmp/b6.stop; wait $WP; rm -f /tmp/b6.stop
  r=$((r + 1))
done

b6_rows
finish_bench
