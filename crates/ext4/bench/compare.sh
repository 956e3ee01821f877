#!/bin/sh
# Times layers2ext4 against `tar -x` and `mkfs.ext4 -d` on one layer.
# Usage: compare.sh LAYER.tar [WORKDIR]   (best of 3 runs each, warm page cache)
set -eu
layer=$1
work=${2:-$(mktemp -d)}
bin=${LAYERS2EXT4:-target/release/examples/layers2ext4}
mkdir -p "$work"
cat "$layer" > /dev/null
best() { sort -n | head -1; }
t() { s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
prep() { rm -rf "$work/x" "$work/out.img" "$work/mk.img"; sync; sleep 1; }
ours=$(for i in 1 2 3; do prep; t "$bin" "$work/out.img" "$layer"; done | best)
e2fsck -fn "$work/out.img" > /dev/null
tarx=$(for i in 1 2 3; do prep; mkdir "$work/x"; t tar -xf "$layer" -C "$work/x"; done | best)
size=$(du -sb "$work/x" | cut -f1)
mkfs=$(for i in 1 2 3; do rm -f "$work/mk.img"; sync; sleep 1; truncate -s $((size * 2 + (256 << 20))) "$work/mk.img";
       t mkfs.ext4 -q -F -i 4096 -d "$work/x" "$work/mk.img"; done | best)
echo "layers2ext4 ${ours}s  tar -x ${tarx}s  mkfs.ext4 -d ${mkfs}s"
echo "ratio vs tar -x: $(echo "scale=2; $ours / $tarx" | bc)  vs mkfs.ext4 -d: $(echo "scale=2; $ours / $mkfs" | bc)"
rm -rf "$work/x" "$work/out.img" "$work/mk.img"
