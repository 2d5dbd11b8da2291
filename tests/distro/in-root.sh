#!/bin/sh
# Runs a command inside a Debian root (tests/distro/make-root.sh) with host paths visible
# at the same place, so that configs and command lines written for the host work there:
#
#   tests/distro/in-root.sh <root> <host path>... -- <command> [args...]
#
# The command runs chrooted in a mount namespace of its own (unshare): each <host path>
# is bind-mounted at <root><host path>, and the root's /tmp is a fresh tmpfs first (so
# that temp dirs get mount points without leaving any in the cached root). Nothing is
# mounted in the caller's namespace; the mounts end with the last process of the command.
# Every step execs the next, so the command keeps this script's pid (a parent's kill, or
# PR_SET_PDEATHSIG set before exec, reaches it). Needs root.
set -e
if [ "${KCT_IN_ROOT_NS:-}" != "$$" ]; then
  # unshare execs the shell, which keeps the pid: the marker tells the second run apart.
  KCT_IN_ROOT_NS=$$ exec unshare --mount --propagation private "$0" "$@"
fi
unset KCT_IN_ROOT_NS
root=${1:?usage: $0 <root> <host path>... -- <command> [args...]}
shift
mount -t tmpfs -o mode=1777 kct-tmp "$root/tmp"
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
  mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
  shift
done
[ "${1:-}" = -- ] || { echo "$0: no -- before the command" >&2; exit 2; }
shift
exec chroot "$root" "$@"
