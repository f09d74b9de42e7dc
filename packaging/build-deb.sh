#!/bin/bash
# packaging/build-deb.sh - build the rackboot Debian package and print its path (last line).
#   1. cargo build --release (skipped with NO_BUILD=1 when target/release/rackboot exists)
#   2. stage the generated files under target/pkg/stage/ (the [package.metadata.deb] assets):
#        etc/rackboot/...     starter config: the built binary's `rackboot init --interface lo`
#                             with data_dir /var/lib/rackboot (dpkg conffiles; replace it on the
#                             target with `rackboot --config /etc/rackboot init --interface IF --force`)
#        firmware/...         the iPXE binaries + SOURCES.md from firmware/ (scripts/fetch-firmware.sh
#                             fills it; run here when a binary is missing)
#        man/rackboot.1.gz    `rackboot man | gzip -9n`
#        completions/...      `rackboot completions bash|zsh`
#   3. cargo deb --no-build (cargo-deb: scripts/install-deps.sh installs it) into target/pkg/.
# The staged config must pass `rackboot check`, or no package is built.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
BIN=target/release/rackboot
STAGE=target/pkg/stage
OUT=target/pkg
FIRMWARE="${FIRMWARE_DIR:-$REPO/firmware}"
FW_FILES=(undionly.kpxe ipxe.efi snponly.efi arm64/ipxe.efi)

command -v cargo-deb >/dev/null || { echo "build-deb: cargo-deb missing (scripts/install-deps.sh)" >&2; exit 1; }

if [ "${NO_BUILD:-0}" = 1 ] && [ -x "$BIN" ]; then
  echo "build-deb: NO_BUILD=1: using $BIN" >&2
else
  echo "build-deb: cargo build --release" >&2
  cargo build --release --locked >&2
fi

missing=0
for f in "${FW_FILES[@]}"; do [ -f "$FIRMWARE/$f" ] || missing=1; done
if [ "$missing" = 1 ]; then
  echo "build-deb: firmware missing in $FIRMWARE: scripts/fetch-firmware.sh" >&2
  FIRMWARE_DIR="$FIRMWARE" "$REPO/scripts/fetch-firmware.sh" >&2
fi

rm -rf "$STAGE"
mkdir -p "$STAGE/etc/rackboot" "$STAGE/firmware/arm64" "$STAGE/man" "$STAGE/completions"

# Starter config: loopback, so the build host's interfaces do not leak into the package.
"$BIN" init --dir "$STAGE/etc/rackboot" --interface lo --data-dir /var/lib/rackboot \
  --firmware-dir /usr/share/rackboot/firmware >/dev/null
grep -q '^data_dir = "/var/lib/rackboot"' "$STAGE/etc/rackboot/rackboot.toml" \
  || { echo "build-deb: starter config has no data_dir /var/lib/rackboot" >&2; exit 1; }
"$BIN" --config "$STAGE/etc/rackboot" check >&2 \
  || { echo "build-deb: the starter config fails rackboot check" >&2; exit 1; }

for f in "${FW_FILES[@]}"; do install -m 0644 "$FIRMWARE/$f" "$STAGE/firmware/$f"; done
install -m 0644 "$FIRMWARE/SOURCES.md" "$STAGE/firmware/SOURCES.md"

"$BIN" man | gzip -9n > "$STAGE/man/rackboot.1.gz"
"$BIN" completions bash > "$STAGE/completions/rackboot.bash"
"$BIN" completions zsh > "$STAGE/completions/_rackboot"
# every staged file world-readable, nothing else (the assets' modes are set in Cargo.toml too)
find "$STAGE" -type f -exec chmod 0644 {} +

echo "build-deb: cargo deb --no-build" >&2
deb=$(cargo deb --no-build --output "$OUT/" | tail -n 1)
[ -f "$deb" ] || { echo "build-deb: cargo deb printed no .deb path ($deb)" >&2; exit 1; }
echo "$deb"
