#!/usr/bin/env bash
# The README's quick start: build, make a demo disk (a real ext4 filesystem from files on
# this machine), back it up twice (the second stores almost nothing), restore and verify.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d dist ] && [ dist -nt package.json ] || npm run build --silent

work=${DEMO_DIR:-/tmp/chunkvault-demo}
rm -rf "$work"
mkdir -p "$work/tree"
cp -a /usr/share/doc /usr/share/man /usr/share/locale "$work/tree/" 2>/dev/null || true
image="$work/demo-disk.img"
mkfs.ext4 -q -F -d "$work/tree" "$image" 1G
rm -rf "$work/tree"
echo "demo disk: $image ($(du -h --apparent-size "$image" | cut -f1) logical, $(du -h "$image" | cut -f1) allocated)"

export CHUNKVAULT_STORE="$work/store"
cv() { echo "+ chunkvault $*"; bin/chunkvault.js "$@"; }
cv init
cv backup "$image" --name demo
cv backup "$image" --name demo
cv list
cv restore demo@latest "$work/restored.img"
sha256sum "$image" "$work/restored.img"
cv verify --read-data
cv stats
echo "demo store: $CHUNKVAULT_STORE"
