#!/usr/bin/env bash
# Makes (once) a Debian root with Debian's own nginx, lua-nginx-module, lua-resty-core and
# OpenSSL, in which the nginx end-to-end suites run (tests/distro/run.sh, KCT_NGINX_ROOT).
#
#   tests/distro/make-root.sh <suite> [dir]
#
# <suite>: a Debian suite debootstrap knows (trixie, sid, ...). [dir] defaults to
# ${KCT_CACHE:-$HOME/.cache/kong-client-tls}/roots/<suite>: outside the clone, so that
# every clone and every run share it. A root is reused when its stamp file says it was
# completed with the same suite and packages; anything else at that path (a run killed
# half way) is removed and made again. The root is built under <dir>.new and renamed at the
# end, so <dir> is never half made. Needs root (debootstrap, chroot) and a Debian mirror
# (KCT_DEBIAN_MIRROR, default http://deb.debian.org/debian). Prints the versions of what
# matters in the root, read with dpkg-query inside it.
# dpkg-query's ${...} fields are meant literally.
# shellcheck disable=SC2016
set -euo pipefail

suite="${1:?usage: $0 <suite> [dir]}"
dir="${2:-${KCT_CACHE:-$HOME/.cache/kong-client-tls}/roots/$suite}"
mirror="${KCT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What the nginx suites need inside the root. The clients (curl, openssl s_client, the
# Rust client) run on the host, so nothing else.
packages="nginx,libnginx-mod-http-lua,lua-resty-core,openssl,ca-certificates"
stamp_name=".kct-root-complete"
want_stamp="suite=$suite packages=$packages"

if [ "$(id -u)" != 0 ]; then
  echo "$0: must run as root (debootstrap, chroot)" >&2
  exit 1
fi
case "$dir" in
  /*) ;;
  *) dir="$PWD/$dir" ;;
esac
mkdir -p "$(dirname "$dir")"

# A mount below a root we are about to delete would make `rm -rf` walk into the host's
# files (a test's bind mount of the clone, say): refuse instead.
no_mounts_below() {
  if awk -v d="$1/" '{ if (index($5 "/", d) == 1) { print $5; found = 1 } } END { exit !found }' \
       /proc/self/mountinfo; then
    echo "$0: something is mounted below $1 (above); not touching it" >&2
    exit 1
  fi
}

print_versions() {
  local r="$1"
  echo "root $r ($suite):"
  # Patterns: libssl3 is libssl3t64 from Debian 13 on; LuaJIT's package name varies.
  chroot "$r" dpkg-query -W -f '  ${Package} ${Version}\n' nginx nginx-common \
    libnginx-mod-http-lua lua-resty-core 'libssl3*' openssl 'libluajit*' 2>/dev/null \
    | grep -v ' $' || true
  echo "  $(chroot "$r" /usr/sbin/nginx -v 2>&1)"
  echo "  $(chroot "$r" openssl version)"
}

# One maker at a time per root; a second caller waits, then finds it done.
exec 9>"$dir.lock"
flock 9

if [ -f "$dir/$stamp_name" ] && [ "$(head -n 1 "$dir/$stamp_name")" = "$want_stamp" ]; then
  echo "reusing $dir (made $(sed -n 2p "$dir/$stamp_name"))"
  print_versions "$dir"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  echo "installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi

for old in "$dir" "$dir.new"; do
  if [ -e "$old" ]; then
    no_mounts_below "$old"
    echo "removing the incomplete $old"
    rm -rf --one-file-system "$old"
  fi
done

# debootstrap's own script for the suite, else sid's (new suites are made like sid).
script=/usr/share/debootstrap/scripts/$suite
[ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid

start=$(date +%s)
echo "debootstrap $suite into $dir.new (from $mirror)"
if ! DEBIAN_FRONTEND=noninteractive debootstrap --variant=minbase --include="$packages" \
       "$suite" "$dir.new" "$mirror" "$script" > "$dir.log" 2>&1; then
  tail -n 40 "$dir.log" >&2
  echo "$0: debootstrap $suite failed; full log: $dir.log" >&2
  exit 1
fi
# The suites bind-mount the clone and the test's temp dir into the root; /tmp must exist
# with its usual mode.
chmod 1777 "$dir.new/tmp"
printf '%s\n%s\n' "$want_stamp" "$(date -u +%FT%TZ) in $(( $(date +%s) - start ))s" \
  > "$dir.new/$stamp_name"
mv "$dir.new" "$dir"
echo "made $dir in $(( $(date +%s) - start ))s"
print_versions "$dir"
