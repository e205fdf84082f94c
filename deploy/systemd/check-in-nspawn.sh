#!/usr/bin/env bash
# Runs deploy/systemd/ember.service under a real systemd, on a machine whose init is not
# systemd (like this project's): boots the machine's own OS, seen through a throw-away
# overlay, in systemd-nspawn, with the unit installed and enabled, then checks the agent
# from inside and powers the container off. Nothing is mounted outside a private mount
# namespace and nothing on disk changes.
#
#   deploy/systemd/check-in-nspawn.sh target/release/ember     (as root)
#
# Needs systemd-container (`apt-get install systemd-container`). What it cannot show:
# symbolization of user frames. The container has a PID namespace of its own, and the
# agent's samples carry the host's PIDs, which its /proc does not have, so user frames are
# `[unknown]` here; on a real host the agent is in the host's PID namespace.
set -euo pipefail

ember=$(realpath "${1:?usage: $0 PATH/TO/ember}")
repo=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 2; }
command -v systemd-nspawn >/dev/null || { echo "$0: apt-get install systemd-container" >&2; exit 2; }

if [ "${EMBER_NSPAWN_INNER:-}" != 1 ]; then
  exec env EMBER_NSPAWN_INNER=1 unshare -m --propagation private "$0" "$@"
fi

top=$(mktemp -d /tmp/ember-nspawn.XXXXXX)
mount -t tmpfs tmpfs "$top"
mkdir "$top/upper" "$top/work" "$top/root"
root=$top/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$root"

# Only the agent is enabled: whatever else this machine enables stays off.
rm -rf "$root"/etc/systemd/system/*.wants
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
install -m 0755 "$ember" "$root/usr/local/bin/ember"
install -m 0644 "$repo/deploy/systemd/ember.service" "$root/etc/systemd/system/ember.service"
ln -s /etc/systemd/system/ember.service "$root/etc/systemd/system/multi-user.target.wants/"

systemd-nspawn -D "$root" --boot --register=no --keep-unit --private-network --quiet \
  --capability=CAP_BPF,CAP_PERFMON,CAP_SYSLOG,CAP_CHECKPOINT_RESTORE \
  --system-call-filter='bpf perf_event_open' --console=passive >"$top/console.log" 2>&1 &
nspawn=$!

leader=""
for _ in $(seq 1 60); do
  leader=$(pgrep -P "$nspawn" -x systemd || true)
  [ -n "$leader" ] && nsenter -t "$leader" -a systemctl is-active --quiet ember 2>/dev/null && break
  sleep 1
done
[ -n "$leader" ] || { echo "FAIL: the container did not boot" >&2; kill "$nspawn"; exit 1; }
inside() { nsenter -t "$leader" -a "$@"; }

status=0
check() { if eval "$2"; then echo "ok    $1"; else echo "FAIL  $1"; status=1; fi; }
sleep 12 # a window and a drain or two
agent=$(pgrep -P "$leader" -x ember || true)
check "the unit is active" 'inside systemctl is-active --quiet ember'
check "the agent runs as a dynamic user, not root" \
  '[ -n "$agent" ] && [ "$(awk "/^Uid/{print \$2}" /proc/$agent/status)" -ne 0 ]'
check "it holds exactly the six capabilities (ambient = effective = bounding)" \
  '[ "$(awk "/^CapEff|^CapAmb|^CapBnd/{print \$2}" /proc/$agent/status | sort -u)" = 000001c400080004 ]'
check "no_new_privs and a seccomp filter" \
  'grep -q "NoNewPrivs:	1" /proc/$agent/status && grep -q "Seccomp:	2" /proc/$agent/status'
check "GET /healthz answers 200 on 127.0.0.1:7070" \
  '[ "$(inside curl -s -o /dev/null -w %{http_code} http://127.0.0.1:7070/healthz)" = 200 ]'
check "/proc/kallsyms is readable in the agent's namespace" \
  '[ "$(nsenter -t "$agent" -m sh -c "wc -l < /proc/kallsyms")" -gt 1000 ]'
check "/home and /proc/kcore are hidden, /proc/sys is read-only" \
  'nsenter -t "$agent" -m sh -c "[ -z \"\$(ls -A /home)\" ] && [ ! -e /proc/kcore ] && ! (: > /proc/sys/kernel/hostname) 2>/dev/null"'
check "the store is /var/lib/ember, mode 0700, owned by the agent" \
  '[ "$(inside stat -L -c %a /var/lib/ember)" = 700 ] && [ "$(inside stat -L -c %u /var/lib/ember)" = "$(awk "/^Uid/{print \$2}" /proc/$agent/status)" ]'
check "kernel frames are named in the stored profile" \
  'inside curl -s "http://127.0.0.1:7070/api/v1/profile?from=now-5m&format=folded" | grep -q "do_syscall_64_\[k\]"'
check "the agent's log names no missing privilege or kallsyms" \
  '! inside journalctl -u ember -b --no-pager -o cat | grep -Eqi "kallsyms|capabilit|permission|not permitted"'

inside journalctl -u ember -b --no-pager -o cat | sed 's/^/journal: /'
inside systemctl poweroff || kill "$nspawn"
wait "$nspawn" || true
umount -R "$top" && rmdir "$top"
exit $status
