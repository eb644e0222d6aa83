#!/usr/bin/env bash
# Measures siem-recovery against the MCAS emulator answering in fixed
# times, with baselines run side by side in the same run, and prints one
# table of ratios (sections 6 and 7 of scripts/bench.sh, which prints the
# same rows in its table):
#   6. scan lanes: LANES_N activities (default 200000) at LANES_RATE
#      requests a minute (default 30), answers in LANES_ANSWERS (default
#      2s,5s): --parallel 1 and the default, against the quota-bound ideal;
#      about 10 minutes. LANES_N=0 leaves them out.
#   7. kill loop: a run killed with SIGKILL after a random 0.6-1.2 s, start
#      after start, until it completes KILL_N activities (default 40000)
#      at answers in KILL_ANSWER (default 250ms), into a file (each
#      activity exactly once, or it fails): the starts needed, default vs
#      --parallel 1; about 2 minutes. KILL_N=0 leaves it out.
# Network: 127.0.0.1 only. Usage: scripts/bench-lanes.sh [--rows]
# (--rows: the table's rows only, for bench.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
LANES_N=${LANES_N:-200000}
LANES_ANSWERS=${LANES_ANSWERS:-2s,5s}
LANES_RATE=${LANES_RATE:-30}
KILL_N=${KILL_N:-40000}
KILL_ANSWER=${KILL_ANSWER:-250ms}

work=$(mktemp -d /tmp/siem-recovery-bench-lanes.XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -o "$work/" ./scripts/benchtools/peakrss

rows=""
if [ "$LANES_N" -gt 0 ]; then
  echo "6. scan lanes: $LANES_N activities, answers in $LANES_ANSWERS, $LANES_RATE requests/min..." >&2
  SIEM_RECOVERY_BENCH_LANES=$LANES_N SIEM_RECOVERY_BENCH_ANSWERS=$LANES_ANSWERS SIEM_RECOVERY_BENCH_RATE=$LANES_RATE \
    SIEM_RECOVERY_BENCH_PEAKRSS=$work/peakrss \
    go test -run '^$' -bench BenchmarkLanes -benchtime 1x -timeout 2h ./cmd/siem-recovery/ > "$work/lanes.txt"
  # One line per answer time: "BenchmarkLanes/answer=2s-2 1 NS ns/op V unit V unit ..."
  rows+=$(awk -v rate="$LANES_RATE" '
    /^BenchmarkLanes\/answer=/ {
      split($1, name, "[=-]"); a = name[2]
      for (i = 5; i < NF; i += 2) m[$(i+1)] = $i
      printf "| scan lanes, answers in %s, %d requests/min: --parallel 1 vs the quota-bound ideal (%d requests / rate) | %.1f vs %.0f s | %.2f | report |\n", a, rate, m["ideal-requests"], m["parallel1-s"], m["ideal-s"], m["parallel1/ideal"]
      printf "| scan lanes, answers in %s: default (%d lanes) vs the ideal | %.1f vs %.0f s | %.2f | ≥ 0.9 |\n", a, m["default-lanes"], m["default-s"], m["ideal-s"], m["default/ideal"]
      printf "| scan lanes, answers in %s: requests, default vs the ideal + lanes + 1 (--parallel 1: %d) | %d vs %d | %.2f | ≤ 1 |\n", a, m["parallel1-requests"], m["default-requests"], m["ideal-requests"] + m["default-lanes"] + 1, m["default-requests"] / (m["ideal-requests"] + m["default-lanes"] + 1)
      printf "| scan lanes, answers in %s: peak RSS, default vs --parallel 1 | %d vs %d MiB | %.2f | one page a lane |\n", a, m["default-peakrss-MiB"], m["parallel1-peakrss-MiB"], m["default-peakrss-MiB"] / m["parallel1-peakrss-MiB"]
      printf "| dry run / count-only verify of the same window: API requests | %d / %d | | 1 / ≤ 2 |\n", m["dryrun-requests"], m["verify-requests"]
    }' "$work/lanes.txt")
  rows+=$'\n'
fi
if [ "$KILL_N" -gt 0 ]; then
  echo "7. kill loop: $KILL_N activities, answers in $KILL_ANSWER, killed after 0.6-1.2 s..." >&2
  SIEM_RECOVERY_BENCH_KILLS=$KILL_N SIEM_RECOVERY_BENCH_KILL_ANSWER=$KILL_ANSWER \
    go test -run '^$' -bench BenchmarkKillLoop -benchtime 1x -timeout 1h ./cmd/siem-recovery/ > "$work/kills.txt"
  rows+=$(awk -v n="$KILL_N" -v a="$KILL_ANSWER" '
    /^BenchmarkKillLoop/ {
      for (i = 5; i < NF; i += 2) m[$(i+1)] = $i
      printf "| kill loop (SIGKILL after 0.6–1.2 s), %d activities at %s answers: starts to complete, default vs --parallel 1 | %d vs %d | %.2f | report |\n", n, a, m["default-starts"], m["parallel1-starts"], m["default-starts"] / m["parallel1-starts"]
      printf "| kill loop: activities a start delivers, default vs --parallel 1 | %.0f vs %.0f | %.2f | report |\n", m["default-activities/start"], m["parallel1-activities/start"], m["default-activities/start"] / m["parallel1-activities/start"]
      printf "| kill loop: API requests recorded vs made, default (--parallel 1: %d of %d) | %d vs %d | %.2f | report |\n", m["parallel1-recorded-requests"], m["parallel1-requests"], m["default-recorded-requests"], m["default-requests"], m["default-recorded-requests"] / m["default-requests"]
    }' "$work/kills.txt")
  rows+=$'\n'
fi

if [ "${1:-}" = --rows ]; then
  printf '%s' "$rows"
  exit 0
fi
cat <<TABLE

siem-recovery against the MCAS emulator: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
| measure | figure | ratio | goal |
|---|---|---|---|
$rows
TABLE
