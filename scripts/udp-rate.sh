#!/usr/bin/env bash
# Measures what a stock rsyslog on this host receives over UDP from
# siem-recovery at several --udp-rate values: the measurement behind the
# flag's default (docs/delivery.md, "UDP"). rsyslog runs as installed:
# imudp with the kernel's default socket buffer, the default in-memory main
# queue, omfile. Needs Go and rsyslog. Network: 127.0.0.1 only.
# Usage: scripts/udp-rate.sh [N activities, default 200000] [rates..., default "0 50000 20000 10000 5000"]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
shift || true
RATES=${*:-0 50000 20000 10000 5000}
START=1715673600000
END=$((START + 3600000))

command -v rsyslogd >/dev/null 2>&1 || { echo "udp-rate.sh needs rsyslogd (apt-get install rsyslog)" >&2; exit 1; }
work=$(mktemp -d /tmp/siem-recovery-udp.XXXXXX)
cleanup() {
  [ -f "$work/pid" ] && kill "$(cat "$work/pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/" ./cmd/siem-recovery ./scripts/benchtools/gen
"$work/gen" -n "$N" -o "$work/act.jsonl"

port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/rs"
cat > "$work/rsyslog.conf" <<CONF
global(workDirectory="$work/rs" maxMessageSize="64k")
template(name="raw" type="string" string="%rawmsg%\n")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="$port" ruleset="in")
ruleset(name="in") { action(type="omfile" file="$work/out.log" template="raw") }
CONF
rsyslogd -n -f "$work/rsyslog.conf" -i "$work/pid" >"$work/rsyslog.log" 2>&1 &
until ss -Hlun "sport = :$port" | grep -q .; do sleep 0.05; done

lines() { [ -f "$work/out.log" ] && wc -l < "$work/out.log" || echo 0; }
# rsyslog writes on after the sender is done: wait until a second passes
# without a new line.
settle() {
  local before after
  after=$(lines)
  while :; do
    before=$after; sleep 1; after=$(lines)
    [ "$after" -eq "$before" ] && break
  done
  echo "$after"
}

echo
echo "UDP into a stock rsyslog on 127.0.0.1: $N activities, $(nproc) CPUs, rmem_default $(cat /proc/sys/net/core/rmem_default) bytes"
echo "| --udp-rate | seconds | received | lost |"
echo "|---|---|---|---|"
for r in $RATES; do
  base=$(lines)
  rm -f "$work/cp.db"*
  t0=$(date +%s.%N)
  "$work/siem-recovery" run --start "$START" --end "$END" --source "file:$work/act.jsonl" \
    --checkpoint "$work/cp.db" --sink "udp://127.0.0.1:$port" --udp-rate "$r" --quiet 2>/dev/null
  t1=$(date +%s.%N)
  got=$(( $(settle) - base ))
  awk -v r="$r" -v t0="$t0" -v t1="$t1" -v got="$got" -v n="$N" \
    'BEGIN { printf "| %s | %.1f | %d | %.2f%% |\n", (r == 0 ? "0 (unpaced)" : r), t1 - t0, got, 100 * (n - got) / n }'
done
