#!/bin/bash
# tests/lab/build-boot.sh [--force] - the lab machines' boot payload, into $LAB_BOOT
# (default $REPO/.lab/boot, git-ignored), cached (each output is rebuilt only when missing or
# older than one of its inputs; --force or LAB_BOOT_FORCE=1 rebuilds all):
#   vmlinuz     Debian 12 kernel of the package linux-image-amd64 depends on: `apt-get download`ed
#               once into $LAB_CACHE (default $REPO/.lab/cache) and extracted there (kernel + the
#               few modules used); nothing is installed, /boot is untouched
#   initrd.img  tiny gzip initramfs: busybox-static + dropbear (+ its libs) + guest/init
#               + guest/udhcpc.script + NIC modules (virtio_net, e1000, e1000e) + virtio_blk (disk
#               mode only); the lab SSH key $LAB_KEYS/lab_ed25519.pub is baked in as root's
#               authorized_keys (generated on first run, default $REPO/.lab/keys)
#   disk.img    disk mode's "local system" (VM_DISK): MBR, partition 1 FAT16 type ef active with
#               syslinux (BIOS) and, for UEFI, Debian's signed shim as EFI/BOOT/BOOTX64.EFI and
#               signed GRUB as EFI/BOOT/grubx64.efi (so the disk also boots with Secure Boot
#               enforced: shim (Microsoft) -> GRUB (Debian) -> the Debian-signed kernel), vmlinuz
#               + initrd.img, cmdline "console=ttyS0,115200 panic=10 rig.local=1"; partition 2
#               (1 MiB, type da) = settings area the installer fills. No mounts, loop devices or
#               root needed. Shim comes from $LAB_FIRMWARE/grub/bootx64.efi and GRUB from the
#               grub-efi-amd64-signed .deb in $LAB_CACHE (both by scripts/fetch-firmware.sh).
#   build-info.txt  kernel version, sizes, sha256 of the three files
# Needs (scripts/install-deps.sh): busybox-static dropbear-bin cpio kmod openssh-client apt
#   syslinux syslinux-common mtools dosfstools fdisk
# LAB_KERNEL_VERSION=6.1.0-xx-amd64 pins the kernel; default: what linux-image-amd64 depends on
# (falls back to the newest cached one when apt-cache has no answer).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lab.env"
FORCE="${LAB_BOOT_FORCE:-0}"; [ "${1:-}" = --force ] && FORCE=1
OUT="$LAB_BOOT"
mkdir -p "$OUT" "$LAB_CACHE" "$LAB_KEYS"
t0=$(date +%s.%N)
T=$(mktemp -d "$LAB_CACHE/build.XXXXXX")
trap 'rm -rf "$T"' EXIT
ran=()
# stale OUT INPUT... : OUT must be (re)built
stale() { local o="$1" f; shift; [ "$FORCE" = 1 ] && return 0; [ -s "$o" ] || return 0
  for f in "$@"; do [ "$f" -nt "$o" ] && return 0; done; return 1; }

# ---- kernel (cached package extract) ------------------------------------------------------
KVER="${LAB_KERNEL_VERSION:-}"
if [ -z "$KVER" ]; then
  KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}') || true
  KVER="${KPKG#linux-image-}"
fi
if [ -z "$KVER" ]; then   # no apt lists: newest complete cache entry
  KVER=$(ls -d "$LAB_CACHE"/kernel-*/x/boot 2>/dev/null | sed 's#.*/kernel-\([^/]*\)/x/boot#\1#' | sort -V | tail -n1)
  [ -n "$KVER" ] || { echo "build-boot: cannot tell the kernel version (apt-get update?, or set LAB_KERNEL_VERSION)" >&2; exit 1; }
fi
KPKG="linux-image-$KVER"
KDIR="$LAB_CACHE/kernel-$KVER"
KSRC="$KDIR/x"
MODDIR="$KSRC/lib/modules/$KVER/kernel"
if [ ! -f "$KSRC/boot/vmlinuz-$KVER" ] || [ ! -f "$MODDIR/drivers/block/virtio_blk.ko" ]; then
  echo "build-boot: downloading $KPKG (apt-get download; extracted into $KDIR, not installed)"
  rm -rf "$KDIR"; mkdir -p "$KDIR/dl"
  ( cd "$KDIR/dl" && apt-get download "$KPKG" >/dev/null 2>&1 ) \
    || { echo "build-boot: apt-get download $KPKG failed (run apt-get update?)" >&2; exit 1; }
  mkdir -p "$KDIR/x.tmp"
  # only the kernel image and the few module dirs used (~15 MB instead of ~400 MB)
  dpkg-deb --fsys-tarfile "$KDIR"/dl/"$KPKG"_*.deb | tar -x -C "$KDIR/x.tmp" --wildcards \
    './boot/vmlinuz-*' './lib/modules/*/modules.builtin' './lib/modules/*/kernel/drivers/net/*' \
    './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/net/core/*' \
    './lib/modules/*/kernel/drivers/block/virtio_blk.ko'
  mv "$KDIR/x.tmp" "$KSRC"; rm -rf "$KDIR/dl"
  ran+=("kernel download")
fi
if [ "$FORCE" = 1 ] || ! cmp -s "$KSRC/boot/vmlinuz-$KVER" "$OUT/vmlinuz"; then
  cp "$KSRC/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
  ran+=(vmlinuz)
fi
echo "$KVER" > "$T/kver"; cmp -s "$T/kver" "$OUT/kernel-version" || cp "$T/kver" "$OUT/kernel-version"

# ---- keys -------------------------------------------------------------------------------
[ -f "$LAB_SSH_KEY" ] || { ssh-keygen -q -t ed25519 -N '' -C rackboot-lab -f "$LAB_SSH_KEY"; ran+=("lab key"); }
HOSTKEY="$LAB_KEYS/dropbear_ed25519_host_key"
[ -f "$HOSTKEY" ] || dropbearkey -t ed25519 -f "$HOSTKEY" >/dev/null 2>&1

# ---- initrd.img ---------------------------------------------------------------------------
if stale "$OUT/initrd.img" "$LAB/guest/init" "$LAB/guest/udhcpc.script" "$0" "$LAB_SSH_KEY.pub" \
     "$HOSTKEY" "$OUT/kernel-version" /bin/busybox /usr/sbin/dropbear; then
  ROOT="$T/root"
  mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc/dropbear,proc,sys,dev,run,tmp,root/.ssh,var/log,lib/modules,lib64,www}
  cp /bin/busybox "$ROOT/bin/busybox"
  for a in $(/bin/busybox --list-full); do [ -e "$ROOT/$a" ] || ln -s /bin/busybox "$ROOT/$a"; done
  # dropbear is dynamically linked: copy its libraries (glibc >= 2.34: nss files is in libc)
  cp /usr/sbin/dropbear "$ROOT/usr/sbin/dropbear"
  for lib in $(ldd /usr/sbin/dropbear | awk '/=>/{print $3} /ld-linux/{print $1}'); do
    [ -f "$lib" ] || continue
    mkdir -p "$ROOT$(dirname "$lib")"; cp -L "$lib" "$ROOT$lib"
  done
  cp "$HOSTKEY" "$ROOT/etc/dropbear/"
  # also delivered by the stand-in's kickstart; baked in so ssh works even when ks fails
  cp "$LAB_SSH_KEY.pub" "$ROOT/root/.ssh/authorized_keys"
  chmod 700 "$ROOT/root" "$ROOT/root/.ssh"; chmod 600 "$ROOT/root/.ssh/authorized_keys"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOT/etc/passwd"
  echo 'root:*:19000:0:99999:7:::' > "$ROOT/etc/shadow"; chmod 600 "$ROOT/etc/shadow"
  echo 'root:x:0:' > "$ROOT/etc/group"
  printf '/bin/sh\n/bin/ash\n' > "$ROOT/etc/shells"
  echo 'rackboot-lab' > "$ROOT/etc/hostname"
  # NIC modules with dependencies resolved here (modinfo) into a load order /init replays
  # with insmod; virtio_blk in a second list, loaded only in disk mode (ks installer, rig.local=1)
  declare -A SEEN=()
  : > "$ROOT/etc/rig-modules"; : > "$ROOT/etc/rig-modules-disk"
  addmod() {  # addmod NAME [LIST]
    local name="$1" list="${2:-$ROOT/etc/rig-modules}" f dep
    [ -n "${SEEN[$name]:-}" ] && return 0
    SEEN[$name]=1
    f=$(find "$MODDIR" -name "$name.ko" | head -n1)
    [ -n "$f" ] || { grep -qw "$name" "$KSRC/lib/modules/$KVER/modules.builtin" 2>/dev/null || echo "warn: module $name not found"; return 0; }
    for dep in $(modinfo -F depends "$f" | tr ',' ' '); do addmod "$dep" "$list"; done
    cp "$f" "$ROOT/lib/modules/"
    echo "/lib/modules/$name.ko" >> "$list"
  }
  for m in virtio_pci virtio_net e1000 e1000e; do addmod "$m"; done
  addmod virtio_blk "$ROOT/etc/rig-modules-disk"
  install -m 0755 "$LAB/guest/init" "$ROOT/init"
  install -m 0755 "$LAB/guest/udhcpc.script" "$ROOT/etc/udhcpc.script"
  ( cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet ) \
    | gzip -1 > "$OUT/initrd.img.tmp"
  mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
  ran+=("initrd.img (modules: $(tr '\n' ' ' < "$ROOT/etc/rig-modules")+ disk: $(tr '\n' ' ' < "$ROOT/etc/rig-modules-disk"))")
fi

# ---- disk.img -----------------------------------------------------------------------------
MBR=/usr/lib/syslinux/mbr/mbr.bin
SHIM="$LAB_FIRMWARE/grub/bootx64.efi"
# Debian's signed disk GRUB (built-in prefix /EFI/debian), from the .deb fetch-firmware.sh keeps
grub_deb() { ls "$LAB_CACHE"/grub-efi-amd64-signed_*_amd64.deb 2>/dev/null | sort -V | tail -n1; }
if [ ! -s "$SHIM" ] || [ -z "$(grub_deb)" ]; then
  FIRMWARE_CACHE="$LAB_CACHE" FIRMWARE_DIR="$LAB_FIRMWARE" "$REPO/scripts/fetch-firmware.sh" >/dev/null \
    || { echo "build-boot: scripts/fetch-firmware.sh failed (shim and GRUB for the disk)" >&2; exit 1; }
fi
GRUBDEB=$(grub_deb)
if stale "$OUT/disk.img" "$OUT/vmlinuz" "$OUT/initrd.img" "$0" "$SHIM" "$GRUBDEB"; then
  for f in "$MBR" "$SHIM" "$GRUBDEB" /usr/bin/syslinux /usr/bin/mcopy /usr/sbin/mkfs.fat /usr/sbin/sfdisk; do
    [ -e "$f" ] || { echo "build-boot: missing $f (run scripts/install-deps.sh)" >&2; exit 1; }
  done
  dpkg-deb -x "$GRUBDEB" "$T/grubdeb"
  GRUB="$T/grubdeb/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
  [ -s "$GRUB" ] || { echo "build-boot: $GRUBDEB has no grubx64.efi.signed" >&2; exit 1; }
  export MTOOLS_SKIP_CHECK=1
  CMDLINE="console=ttyS0,115200 panic=10 rig.local=1"
  # syslinux: no SERIAL line (SeaBIOS already copies int10 text to ttyS0; SERIAL doubles it)
  printf 'DEFAULT lab\nPROMPT 0\nTIMEOUT 0\nLABEL lab\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' \
    "$CMDLINE" > "$T/syslinux.cfg"
  # GRUB: the built-in config sources $prefix/grub.cfg (prefix /EFI/debian on the boot device)
  printf 'set timeout=0\nlinux /vmlinuz %s\ninitrd /initrd.img\nboot\n' "$CMDLINE" > "$T/grub.cfg"
  # partition 1: payload + 5 MiB slack, >= 16 MiB (FAT16), at 1 MiB
  kb=$(du -ck "$OUT/vmlinuz" "$OUT/initrd.img" "$SHIM" "$GRUB" /usr/lib/syslinux/modules/bios/ldlinux.* | tail -n1 | cut -f1)
  P1=$(( kb / 1024 + 5 )); [ "$P1" -ge 16 ] || P1=16
  P1_LBA=2048; P2_LBA=$(( P1_LBA + P1 * 2048 ))
  truncate -s "${P1}M" "$T/p1.fat"
  mkfs.fat -F 16 -n LABLOCAL -h "$P1_LBA" "$T/p1.fat" >/dev/null    # -h: hidden sectors = start
  syslinux --install "$T/p1.fat"     # VBR + ldlinux.sys + ldlinux.c32 via mtools (no mcopy over them)
  mmd -i "$T/p1.fat" ::/EFI ::/EFI/BOOT ::/EFI/debian
  mcopy -i "$T/p1.fat" "$T/syslinux.cfg" "$OUT/vmlinuz" "$OUT/initrd.img" ::/
  mcopy -i "$T/p1.fat" "$SHIM" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$T/p1.fat" "$GRUB" ::/EFI/BOOT/grubx64.efi
  mcopy -i "$T/p1.fat" "$T/grub.cfg" ::/EFI/debian/grub.cfg
  truncate -s "$(( (P2_LBA + 2048) * 512 ))" "$T/disk.img"
  sfdisk --quiet "$T/disk.img" <<SF
label: dos
start=$P1_LBA, size=$(( P1 * 2048 )), type=ef, bootable
start=$P2_LBA, size=2048, type=da
SF
  dd if="$MBR" of="$T/disk.img" bs=440 count=1 conv=notrunc status=none
  dd if="$T/p1.fat" of="$T/disk.img" bs=512 seek="$P1_LBA" conv=notrunc status=none
  mv "$T/disk.img" "$OUT/disk.img"
  ran+=("disk.img (p1 ${P1} MiB FAT16: syslinux, shim + GRUB $(basename "$GRUBDEB" .deb); p2 1 MiB)")
fi

if [ ${#ran[@]} -gt 0 ] || [ ! -s "$OUT/build-info.txt" ]; then
  { echo "kernel $KVER (Debian package $KPKG, extracted from the .deb)"
    for f in vmlinuz initrd.img disk.img; do echo "$f $(stat -c %s "$OUT/$f") $(sha256sum "$OUT/$f" | cut -d' ' -f1)"; done
  } > "$OUT/build-info.txt"
fi
t1=$(date +%s.%N)
if [ ${#ran[@]} -gt 0 ]; then
  printf 'build-boot: built %s\n' "${ran[@]}"
  awk -v a="$t0" -v b="$t1" -v o="$OUT" 'BEGIN{printf "build-boot: %s up to date after %.1fs\n", o, b-a}'
  sed 's/^/  /' "$OUT/build-info.txt"
else
  echo "build-boot: $OUT up to date (kernel $KVER)"
fi
