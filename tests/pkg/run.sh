#!/bin/bash
# tests/pkg/run.sh - the Debian package end to end (root; scripts/test.sh runs it after the lab):
#   1. packaging/build-deb.sh, lintian (errors fail, warnings printed)
#   2. dpkg -i: binary, conffiles, firmware, man page, completions, unit, _rackboot, state dir;
#      rackboot check on /etc/rackboot; systemd-analyze verify and security (offline: systemd need
#      not be PID 1; overall exposure must be <= PKG_MAX_EXPOSURE, default 2.0)
#   3. a network namespace pair (server rbpkgs-PID, client rbpkgc-PID, a veth between them):
#      `rackboot init --interface` inside the server namespace, one machine added with
#      `rackboot systems add`, then the INSTALLED /usr/bin/rackboot serves as _rackboot with only
#      CAP_NET_BIND_SERVICE + CAP_NET_RAW (setpriv, ambient caps, bounding set, no_new_privs), as
#      the unit runs it: ss shows :67 and :69, busybox udhcpc (as the lab does) gets an OFFER and a
#      lease, curl reads undionly.kpxe over TFTP and the bytes match; SIGTERM stops it
#   4. dpkg -r keeps conffiles and /var/lib/rackboot; dpkg -P removes them; prints what is left
# Every wait is bounded; the EXIT trap stops the daemon, deletes the namespaces and purges the
# package if this script installed it. Refuses to run when rackboot is already installed.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
source "$REPO/tests/lab/lib.sh"   # lab_wait_grep, lab_wait_gone, lab_realpid, lab_now/lab_since
cd "$REPO"
T0=$(lab_now)
MAX_EXPOSURE="${PKG_MAX_EXPOSURE:-2.0}"
[ "$(id -u)" = 0 ] || { echo "tests/pkg/run.sh: run as root" >&2; exit 1; }
for t in cargo-deb lintian dpkg-deb setpriv ip ss curl busybox systemd-analyze timeout cmp; do
  command -v "$t" >/dev/null || { echo "tests/pkg/run.sh: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
if dpkg-query -W -f='${Status}' rackboot 2>/dev/null | grep -qv 'not-installed'; then
  echo "tests/pkg/run.sh: a rackboot package is on this host ($(dpkg-query -W -f='${Status}' rackboot)); dpkg -P rackboot first" >&2
  exit 1
fi
for p in /etc/rackboot /var/lib/rackboot; do
  [ ! -e "$p" ] || { echo "tests/pkg/run.sh: $p exists without the package; move it away first" >&2; exit 1; }
done

NS_S="rbpkgs-$$"; NS_C="rbpkgc-$$"
IF_S=rbpkg0; IF_C=rbpkg1
SRV_IP=10.97.0.1; CLI_IP=10.97.0.50; CLI_MAC=52:54:00:97:00:50
W=$(mktemp -d /tmp/rackboot-pkg.XXXXXX)
INSTALLED=0; SRV_PID=""
fails=0
ok()   { echo "ok   $*"; }
bad()  { echo "FAIL $*"; fails=$((fails+1)); }
step() { echo; echo "== $* ($(lab_since "$T0") s)"; }
cleanup() {
  local rc=$?
  set +e
  if [ -n "$SRV_PID" ] && [ -d "/proc/$SRV_PID" ]; then kill -TERM "$SRV_PID"; lab_wait_gone "$SRV_PID" 10 || kill -KILL "$SRV_PID"; fi
  for ns in "$NS_S" "$NS_C"; do
    if [ -e "/run/netns/$ns" ]; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p"; done
      ip netns del "$ns"
    fi
  done
  if [ "$INSTALLED" = 1 ] && dpkg-query -W -f='${Status}' rackboot 2>/dev/null | grep -qv not-installed; then
    echo "cleanup: dpkg -P rackboot"; dpkg -P rackboot >/dev/null
  fi
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT

step "build (packaging/build-deb.sh)"
DEB=$(packaging/build-deb.sh | tail -n 1)
[ -f "$DEB" ] || { echo "no .deb from build-deb.sh" >&2; exit 1; }
echo "$DEB ($(stat -c %s "$DEB") bytes)"
dpkg-deb --info "$DEB" | sed -n '/Package:/,$p'
dpkg-deb --contents "$DEB" | awk '{print $1, $NF}'

step "lintian"
lrc=0; timeout 600 lintian --fail-on error "$DEB" > "$W/lintian.txt" 2>&1 || lrc=$?
cat "$W/lintian.txt"
echo "lintian: $(grep -c '^E:' "$W/lintian.txt" || true) errors, $(grep -c '^W:' "$W/lintian.txt" || true) warnings, $(grep -c '^I:' "$W/lintian.txt" || true) info (rc $lrc)"
if [ "$lrc" = 0 ]; then ok "lintian: no errors"; else bad "lintian: errors (rc $lrc)"; exit 1; fi

step "dpkg -i"
INSTALLED=1
dpkg -i "$DEB"
[ -x /usr/bin/rackboot ] && ok "/usr/bin/rackboot: $(/usr/bin/rackboot --version)" || bad "/usr/bin/rackboot"
conffiles=$(dpkg-query --control-show rackboot conffiles 2>/dev/null || cat /var/lib/dpkg/info/rackboot.conffiles)
echo "conffiles:"; echo "$conffiles" | sed 's/^/  /'
for f in rackboot.toml systems.toml profiles/base.toml profiles/debian12.toml profiles/rhel9.toml \
         profiles/ubuntu2404.toml kickstarts/debian12.preseed.j2 kickstarts/rhel9.ks.j2 \
         kickstarts/ubuntu/user-data.j2 kickstarts/ubuntu/meta-data.j2; do
  if grep -qx "/etc/rackboot/$f" <<< "$conffiles" && [ -f "/etc/rackboot/$f" ]; then :; else bad "conffile /etc/rackboot/$f"; fi
done
[ "$(grep -c '^/etc/rackboot/' <<< "$conffiles")" = 10 ] && ok "10 conffiles under /etc/rackboot" || bad "conffile count"
grep -q '^data_dir = "/var/lib/rackboot"' /etc/rackboot/rackboot.toml && ok "starter config: data_dir /var/lib/rackboot" || bad "data_dir"
for f in undionly.kpxe ipxe.efi snponly.efi arm64/ipxe.efi; do
  if cmp -s "firmware/$f" "/usr/share/rackboot/firmware/$f"; then :; else bad "firmware $f"; fi
done
ok "firmware: $(cd /usr/share/rackboot/firmware && find . -type f | sort | tr '\n' ' ')"
[ -f /usr/share/doc/rackboot/firmware-SOURCES.md ] && ok "firmware SOURCES.md" || bad "firmware SOURCES.md"
if zcat /usr/share/man/man1/rackboot.1.gz | grep -q '^\.TH rackboot 1'; then ok "man page: $(zcat /usr/share/man/man1/rackboot.1.gz | wc -l) lines"; else bad "man page"; fi
grep -q 'complete .*rackboot' /usr/share/bash-completion/completions/rackboot && ok "bash completion" || bad "bash completion"
head -1 /usr/share/zsh/vendor-completions/_rackboot | grep -q '#compdef rackboot' && ok "zsh completion" || bad "zsh completion"
UNIT=/lib/systemd/system/rackboot.service
[ -f "$UNIT" ] && ok "unit $UNIT" || bad "unit"
[ -f /usr/lib/sysusers.d/rackboot.conf ] && ok "sysusers.d/rackboot.conf" || bad "sysusers.d"
pw=$(getent passwd _rackboot) && ok "user: $pw" || bad "no user _rackboot"
[[ "$pw" == *:/var/lib/rackboot:* ]] || bad "_rackboot home is not /var/lib/rackboot"
getent group _rackboot >/dev/null && ok "group _rackboot" || bad "no group _rackboot"
st=$(stat -c '%U:%G %a' /var/lib/rackboot)
[ "$st" = "_rackboot:_rackboot 750" ] && ok "/var/lib/rackboot $st" || bad "/var/lib/rackboot $st"
if systemctl is-enabled rackboot >/dev/null 2>&1; then bad "the unit got enabled"; else ok "unit not enabled"; fi

step "rackboot check --config /etc/rackboot"
rackboot --config /etc/rackboot check && ok "check" || bad "check of the packaged config"

step "/etc/rackboot is writable by the daemon's account (admin API edits)"
st=$(stat -c '%G %a' /etc/rackboot)
[ "$st" = "_rackboot 2775" ] && ok "/etc/rackboot $st" || bad "/etc/rackboot $st"
# An edit as _rackboot (what the daemon does for PUT /api/v1/systems/...), then one as root:
# each can edit after the other, and the daemon's account can still read every file.
prof=$(basename "$(ls /etc/rackboot/profiles/*.toml | head -1)" .toml)
asd() { setpriv --reuid _rackboot --regid _rackboot --init-groups "$@"; }
if asd rackboot --config /etc/rackboot profiles edit "$prof" --description "edited by _rackboot" --no-reload >/dev/null \
   && rackboot --config /etc/rackboot profiles edit "$prof" --description "edited by root" --no-reload >/dev/null \
   && asd rackboot --config /etc/rackboot profiles edit "$prof" --description "edited by _rackboot again" --no-reload >/dev/null \
   && asd rackboot --config /etc/rackboot check >/dev/null \
   && grep -q 'edited by _rackboot again' "/etc/rackboot/profiles/$prof.toml"; then
  ok "edits as _rackboot and as root, in turn; _rackboot reads the result"
else
  bad "config edits as _rackboot / root"
fi

step "systemd-analyze verify"
if systemd-analyze verify "$UNIT"; then ok "verify"; else bad "systemd-analyze verify $UNIT"; fi

step "systemd-analyze security (offline)"
systemd-analyze security --offline=yes "$UNIT" > "$W/security.txt" 2>&1 || true
grep -E '^✗' "$W/security.txt" || true
exposure=$(sed -n 's/.*Overall exposure level for rackboot.service: \([0-9.]*\).*/\1/p' "$W/security.txt")
if [ -z "$exposure" ]; then cat "$W/security.txt"; bad "no exposure figure"
elif awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN{exit !(e <= m)}'; then ok "exposure $exposure (<= $MAX_EXPOSURE)"
else bad "exposure $exposure > $MAX_EXPOSURE"; fi

step "serve in a netns as _rackboot with CAP_NET_BIND_SERVICE + CAP_NET_RAW only"
ip netns add "$NS_S"; ip netns add "$NS_C"
ip link add "$IF_S" netns "$NS_S" type veth peer name "$IF_C" netns "$NS_C"
ip -n "$NS_S" link set lo up; ip -n "$NS_C" link set lo up
ip -n "$NS_S" addr add "$SRV_IP/24" dev "$IF_S"; ip -n "$NS_S" link set "$IF_S" up
ip -n "$NS_C" link set "$IF_C" address "$CLI_MAC"; ip -n "$NS_C" link set "$IF_C" up
CONF="$W/etc"
# state in the package's /var/lib/rackboot (remove/purge below), boot files in the work dir
ip netns exec "$NS_S" /usr/bin/rackboot --config "$CONF" init --interface "$IF_S" --boot-dir "$W/boot" > "$W/init.txt"
head -n 1 "$W/init.txt"
mkdir -p "$W/boot/debian12"; echo kernel > "$W/boot/debian12/linux"; echo initrd > "$W/boot/debian12/initrd.gz"
grep -q "address = \"$SRV_IP\"" "$CONF/rackboot.toml" && ok "init --interface $IF_S: address $SRV_IP" || bad "init address"
cat > "$CONF/profiles/pkgtest.toml" <<'EOF'
# tests/pkg: a concrete child of the starter debian12 profile (no kernel is served here)
parent = "debian12"
description = "package test"
kernel = "debian12/linux"
initrd = ["debian12/initrd.gz"]
EOF
/usr/bin/rackboot --config "$CONF" systems add pkg50 --mac "$CLI_MAC" --ip "$CLI_IP" --profile pkgtest > "$W/add.txt" 2>&1 \
  || { cat "$W/add.txt"; bad "systems add"; exit 1; }
/usr/bin/rackboot --config "$CONF" check > "$W/check.txt" 2>&1 && ok "systems add pkg50 $CLI_MAC $CLI_IP; check" \
  || { cat "$W/check.txt"; bad "check of the netns config"; exit 1; }
chmod -R go+rX "$W"
CAPS=+net_bind_service,+net_raw
ip netns exec "$NS_S" setpriv --reuid _rackboot --regid _rackboot --init-groups --no-new-privs \
  --inh-caps "$CAPS" --ambient-caps "$CAPS" --bounding-set "-all,$CAPS" \
  /usr/bin/rackboot serve --config "$CONF" --log-format json > "$W/serve.log" 2>&1 &
SRV_PID=$(lab_realpid $! rackboot)
bound=0
for _ in $(seq 100); do
  s=$(ip netns exec "$NS_S" ss -lunpH 2>/dev/null || true)
  if grep -q ':67 ' <<< "$s" && grep -q ':69 ' <<< "$s"; then bound=1; break; fi
  [ -d "/proc/$SRV_PID" ] || break
  sleep 0.1
done
ip netns exec "$NS_S" ss -lunp
if [ "$bound" = 1 ]; then ok "rackboot (pid $SRV_PID) bound :67 and :69"; else cat "$W/serve.log"; bad "not bound"; exit 1; fi
lab_wait_grep "$W/serve.log" 'API listening|api.*listening|serving' 10 || true
user=$(ps -o user= -p "$SRV_PID"); capeff=$(awk '/^CapEff/{print $2}' "/proc/$SRV_PID/status")
capbnd=$(awk '/^CapBnd/{print $2}' "/proc/$SRV_PID/status"); nnp=$(awk '/^NoNewPrivs/{print $2}' "/proc/$SRV_PID/status")
echo "process: user $user CapEff $capeff CapBnd $capbnd NoNewPrivs $nnp"
# CAP_NET_BIND_SERVICE (10) | CAP_NET_RAW (13) = 0x2400
[ "$user" = _rackboot ] && [ "$capeff" = 0000000000002400 ] && [ "$capbnd" = 0000000000002400 ] && [ "$nnp" = 1 ] \
  && ok "runs as _rackboot with exactly the two capabilities" || bad "process identity/capabilities"

step "DHCP from the peer namespace (busybox udhcpc, as tests/lab)"
if timeout 30 ip netns exec "$NS_C" busybox udhcpc -i "$IF_C" -n -q -t 5 -T 1 -s /bin/true > "$W/udhcpc.txt" 2>&1; then :; fi
cat "$W/udhcpc.txt"
# udhcpc selects (REQUESTs) only an offered address; the daemon logs each reply it sent
offer=$(grep '"reply sent"' "$W/serve.log" | grep -i '"offer"' | grep -i "$CLI_MAC" | head -n 1 || true)
echo "daemon: ${offer:-no OFFER logged}"
grep -q "select for $CLI_IP, server $SRV_IP" "$W/udhcpc.txt" && [ -n "$offer" ] && [[ "$offer" == *"$CLI_IP"* ]] \
  && ok "OFFER of $CLI_IP from $SRV_IP" || bad "no OFFER of $CLI_IP"
grep -q "lease of $CLI_IP obtained" "$W/udhcpc.txt" && ok "lease of $CLI_IP obtained" || bad "no lease"

step "TFTP read of undionly.kpxe from the peer namespace"
ip -n "$NS_C" addr add "$CLI_IP/24" dev "$IF_C"
if timeout 30 ip netns exec "$NS_C" curl -sS --max-time 20 -o "$W/undionly.kpxe" "tftp://$SRV_IP/undionly.kpxe" \
   && cmp "$W/undionly.kpxe" /usr/share/rackboot/firmware/undionly.kpxe; then
  ok "TFTP: $(stat -c %s "$W/undionly.kpxe") bytes, identical to the packaged file"
else bad "TFTP read"; fi

st=$(stat -c '%a %U' /var/lib/rackboot/api-token 2>/dev/null || echo missing)
[ "$st" = "600 _rackboot" ] && ok "generated /var/lib/rackboot/api-token ($st)" || bad "api-token: $st"

step "stop (SIGTERM)"
kill -TERM "$SRV_PID"
if lab_wait_gone "$SRV_PID" 15; then ok "stopped"; else bad "did not stop within 15 s"; kill -KILL "$SRV_PID"; fi
SRV_PID=""
tail -n 3 "$W/serve.log"
echo "state: $(ls /var/lib/rackboot | tr '\n' ' ')"

step "dpkg -r rackboot"
dpkg -r rackboot
echo "status: $(dpkg-query -W -f='${Status}' rackboot)"
[ ! -e /usr/bin/rackboot ] && ok "binary removed" || bad "binary still there"
[ -f /etc/rackboot/rackboot.toml ] && [ -f /etc/rackboot/systems.toml ] && ok "conffiles kept" || bad "conffiles gone on remove"
[ -f /var/lib/rackboot/api-token ] && [ -f /var/lib/rackboot/rackboot.db ] && ok "state kept: $(ls /var/lib/rackboot | tr '\n' ' ')" || bad "state gone on remove"

step "dpkg -P rackboot"
dpkg -P rackboot
INSTALLED=0
[ ! -e /etc/rackboot ] && ok "/etc/rackboot gone" || bad "/etc/rackboot left: $(find /etc/rackboot | tr '\n' ' ')"
[ ! -e /var/lib/rackboot ] && ok "/var/lib/rackboot gone" || bad "/var/lib/rackboot left"
echo "left after purge:"
echo "  dpkg: $(dpkg-query -W -f='${Status}' rackboot 2>/dev/null || echo 'unknown to dpkg')"
echo "  files: $(find /etc /var/lib /usr/lib/systemd /usr/lib/sysusers.d /usr/share /usr/bin -xdev -name '*rackboot*' \
  -not -path '/var/lib/dpkg/*' 2>/dev/null | tr '\n' ' ')"
echo "  account (kept on purge, Debian practice): $(getent passwd _rackboot || echo none)"

echo
if [ "$fails" = 0 ]; then echo "tests/pkg/run.sh: PASS in $(lab_since "$T0") s (exposure $exposure)"
else echo "tests/pkg/run.sh: $fails FAILED in $(lab_since "$T0") s"; exit 1; fi
