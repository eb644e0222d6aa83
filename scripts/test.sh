#!/usr/bin/env bash
# Runs every test of siem-recovery: gofmt, go vet and staticcheck, then the
# whole suite with the race detector. The suite starts a real rsyslog and a real tinyproxy on loopback,
# so this first installs the Debian packages it needs when they are missing
# (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in rsyslog rsyslog-gnutls rsyslog-relp tinyproxy; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# A merge that left its conflict markers behind must not pass.
if markers=$(git grep -n -E '^(<<<<<<< |>>>>>>> )' -- . 2>/dev/null) && [ -n "$markers" ]; then
  echo "merge conflict markers left in:" >&2
  echo "$markers" >&2
  exit 1
fi
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
# staticcheck, at a pinned version from the module proxy (nothing to
# install by hand).
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
go test -race -count=1 -timeout 15m ./...
