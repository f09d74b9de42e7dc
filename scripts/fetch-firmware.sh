#!/bin/bash
# scripts/fetch-firmware.sh - copy the iPXE network boot programs rackboot serves over TFTP from
# Debian's `ipxe` package into $REPO/firmware/ and record where they came from:
#   undionly.kpxe  BIOS PXE -> iPXE (UNDI driver, keeps PXE stack)   /usr/lib/ipxe/undionly.kpxe
#   ipxe.efi       UEFI x64 iPXE with its own NIC drivers            /usr/lib/ipxe/ipxe.efi (-> /boot/ipxe.efi)
#   snponly.efi    UEFI x64 iPXE using the firmware's SNP driver     /usr/lib/ipxe/snponly.efi
#   arm64/ipxe.efi UEFI ARM64 iPXE: Debian 12's package has none, so it comes from Debian 13's
#                  `ipxe` .deb (/usr/lib/ipxe/ipxe-arm64.efi), fetched from deb.debian.org by a
#                  pinned URL and checked against a pinned sha256 (never installed).
# The binaries are git-ignored (.gitignore: /firmware/*.kpxe, /firmware/*.efi); firmware/SOURCES.md
# (file, source package + version, sha256) is committed. Needs the `ipxe` package
# (scripts/install-deps.sh). Idempotent; FIRMWARE_DIR overrides the destination.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${FIRMWARE_DIR:-$REPO/firmware}"
PKG=ipxe
ver=$(dpkg-query -W -f='${Version}' "$PKG" 2>/dev/null) && [ -n "$ver" ] \
  || { echo "fetch-firmware: package $PKG not installed (run scripts/install-deps.sh)" >&2; exit 1; }
arch=$(dpkg-query -W -f='${Architecture}' "$PKG")

# file in firmware/ <TAB> path in the package <TAB> what it is
FILES=$'undionly.kpxe\t/usr/lib/ipxe/undionly.kpxe\tBIOS: chainloaded by the NIC PXE ROM (DHCP arch 0), loads iPXE over UNDI\n'
FILES+=$'ipxe.efi\t/usr/lib/ipxe/ipxe.efi\tUEFI x64 (DHCP arch 7/9): iPXE with its own NIC drivers\n'
FILES+=$'snponly.efi\t/usr/lib/ipxe/snponly.efi\tUEFI x64 (DHCP arch 7/9): iPXE on the firmware SNP driver (NICs iPXE has no driver for)'

mkdir -p "$DEST"
trap 'rm -f "$DEST"/*.tmp "$DEST"/grub/*.tmp' EXIT
rows=""
while IFS=$'\t' read -r name src what; do
  real=$(readlink -f "$src")
  [ -f "$real" ] || { echo "fetch-firmware: $src missing (dpkg -L $PKG)" >&2; exit 1; }
  # the path must belong to the package we claim it comes from
  dpkg -S "$src" 2>/dev/null | grep -q "^$PKG:" || dpkg -S "$real" 2>/dev/null | grep -q "^$PKG:" \
    || { echo "fetch-firmware: $src is not from package $PKG" >&2; exit 1; }
  install -m 0644 "$real" "$DEST/$name.tmp" && mv "$DEST/$name.tmp" "$DEST/$name"
  sum=$(sha256sum "$DEST/$name" | cut -d' ' -f1)
  size=$(stat -c %s "$DEST/$name")
  rows+="| \`$name\` | $what | \`$src\` | $PKG $ver ($arch) | $size | \`$sum\` |"$'\n'
  echo "fetch-firmware: $name <- $src ($size bytes, sha256 $sum)"
done <<< "$FILES"

# ARM64 iPXE from Debian 13's package (an `all` .deb holding every architecture's build).
A64_VER="1.21.1+git20250501.dad20602+dfsg-1"
A64_DEB="ipxe_${A64_VER}_all.deb"
A64_URL="http://deb.debian.org/debian/pool/main/i/ipxe/${A64_DEB//+/%2B}"
A64_SHA="eeaca79dbde0fb86c102bf1d362c6f6a67ed0ddab38b3dd12e1b332339f5dd99"
A64_SRC=/usr/lib/ipxe/ipxe-arm64.efi
CACHE="${FIRMWARE_CACHE:-$REPO/.lab/cache}"
mkdir -p "$CACHE" "$DEST/arm64"
if ! echo "$A64_SHA  $CACHE/$A64_DEB" | sha256sum -c --status 2>/dev/null; then
  curl -fsS --retry 3 -o "$CACHE/$A64_DEB.tmp" "$A64_URL" \
    || { echo "fetch-firmware: cannot download $A64_URL" >&2; exit 1; }
  echo "$A64_SHA  $CACHE/$A64_DEB.tmp" | sha256sum -c --status \
    || { rm -f "$CACHE/$A64_DEB.tmp"; echo "fetch-firmware: $A64_DEB: sha256 mismatch" >&2; exit 1; }
  mv "$CACHE/$A64_DEB.tmp" "$CACHE/$A64_DEB"
fi
X=$(mktemp -d); dpkg-deb -x "$CACHE/$A64_DEB" "$X"
install -m 0644 "$X$A64_SRC" "$DEST/arm64/ipxe.efi.tmp" && mv "$DEST/arm64/ipxe.efi.tmp" "$DEST/arm64/ipxe.efi"
rm -rf "$X"
sum=$(sha256sum "$DEST/arm64/ipxe.efi" | cut -d' ' -f1)
size=$(stat -c %s "$DEST/arm64/ipxe.efi")
rows+="| \`arm64/ipxe.efi\` | UEFI ARM64 (DHCP arch 11/19): iPXE with its own NIC drivers | \`$A64_SRC\` | $PKG $A64_VER (all, Debian 13; .deb sha256 $A64_SHA) | $size | \`$sum\` |"$'\n'
echo "fetch-firmware: arm64/ipxe.efi <- $A64_DEB:$A64_SRC ($size bytes, sha256 $sum)"

# Secure Boot chain (profile `loader = "grub"`): Debian's signed shim and signed network GRUB,
# from their .debs (downloaded with apt-get into the cache, never installed). Both sit in grub/:
# shim loads "directory of its own boot file + grubx64.efi" from the DHCP siaddr over TFTP.
#   grub/bootx64.efi  shim-signed           /usr/lib/shim/shimx64.efi.signed (Microsoft UEFI CA)
#   grub/grubx64.efi  grub-efi-amd64-signed /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed
#                     (Debian Secure Boot CA; built-in prefix /grub, reads /grub/grub.cfg)
# SB_PKGS overrides the package=version pins (default: apt's candidate of each).
mkdir -p "$DEST/grub"
SB_FILES=$'grub/bootx64.efi\tshim-signed\t/usr/lib/shim/shimx64.efi.signed\tUEFI x64 Secure Boot (loader = grub, DHCP arch 7/9): shim, signed by Microsoft; loads grub/grubx64.efi\n'
SB_FILES+=$'grub/grubx64.efi\tgrub-efi-amd64-signed\t/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed\tUEFI x64 Secure Boot: network GRUB signed by Debian, prefix /grub; reads grub/grub.cfg over TFTP'
while IFS=$'\t' read -r name pkg src what; do
  pver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2}')
  [ -n "$pver" ] && [ "$pver" != "(none)" ] \
    || { echo "fetch-firmware: apt knows no $pkg (apt-get update? bookworm main in sources?)" >&2; exit 1; }
  deb=$(ls "$CACHE/${pkg}_${pver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    (cd "$CACHE" && apt-get download -q "$pkg=$pver" >/dev/null) \
      || { echo "fetch-firmware: apt-get download $pkg=$pver failed" >&2; exit 1; }
    deb=$(ls "$CACHE/${pkg}_${pver//:/%3a}_"*.deb | head -n1)
  fi
  dsum=$(sha256sum "$deb" | cut -d' ' -f1)
  darch=$(dpkg-deb -f "$deb" Architecture)
  X=$(mktemp -d); dpkg-deb -x "$deb" "$X"
  [ -f "$X$src" ] || { rm -rf "$X"; echo "fetch-firmware: $src missing from $deb" >&2; exit 1; }
  install -m 0644 "$X$src" "$DEST/$name.tmp" && mv "$DEST/$name.tmp" "$DEST/$name"
  rm -rf "$X"
  sum=$(sha256sum "$DEST/$name" | cut -d' ' -f1)
  size=$(stat -c %s "$DEST/$name")
  rows+="| \`$name\` | $what | \`$src\` | $pkg $pver ($darch; .deb sha256 $dsum) | $size | \`$sum\` |"$'\n'
  echo "fetch-firmware: $name <- $(basename "$deb"):$src ($size bytes, sha256 $sum)"
done <<< "$SB_FILES"

cat > "$DEST/SOURCES.md.tmp" <<MD
# firmware/ — network boot programs served over TFTP

Generated by \`scripts/fetch-firmware.sh\` (do not edit by hand). The binaries are copied from the
Debian 12 package \`$PKG\` ($ver, $arch), the ARM64 one from Debian 13's, the Secure Boot pair
(\`grub/\`) from Debian 12's \`shim-signed\` and \`grub-efi-amd64-signed\`, and are **not** committed
(\`.gitignore\`); this file is. Re-run the script after upgrading the package and commit the diff.
Check the copies (from firmware/):
\`\`\`sh
sha256sum -c <(awk -F'\`' '/^\| \`/{print \$6"  "\$2}' SOURCES.md)
\`\`\`

| file | role | path in package | source package | bytes | sha256 |
| --- | --- | --- | --- | --- | --- |
$rows
Upstream: iPXE (https://ipxe.org), GPL-2.0-or-later with UBDL; Debian source package \`ipxe\`
(\`apt-get source ipxe=$ver\`), https://tracker.debian.org/pkg/ipxe.
shim (https://github.com/rhboot/shim, BSD-2-Clause), Debian source packages \`shim-signed\` /
\`shim\`; GRUB (https://www.gnu.org/software/grub/, GPL-3.0-or-later), Debian source packages
\`grub-efi-amd64-signed\` / \`grub2\`. The signatures are Microsoft's (shim) and Debian's (GRUB):
Secure Boot firmware with the Microsoft UEFI CA 2011 in db starts shim, shim trusts Debian's CA.
MD
mv "$DEST/SOURCES.md.tmp" "$DEST/SOURCES.md"
echo "fetch-firmware: wrote $DEST/SOURCES.md"
