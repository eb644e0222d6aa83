#!/usr/bin/env bash
# Builds the release binaries of siem-recovery for every supported platform:
# static (CGO_ENABLED=0: no libc, runs on any distribution and in a scratch
# or distroless image), with reproducible paths (-trimpath), stripped (-s -w)
# and stamped with the version (-X main.version, also the version field of
# every CEF header); then SHA256SUMS over them.
#
#   scripts/release.sh [VERSION [OUTDIR]]
#
# VERSION defaults to `git describe --tags --always --dirty`, OUTDIR to dist/.
# The binaries are OUTDIR/siem-recovery-VERSION-OS-ARCH[.exe]; check them with
# `cd OUTDIR && sha256sum -c SHA256SUMS`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The platforms of SPEC §4: Linux (amd64, arm64), Windows (amd64), macOS.
targets="linux/amd64 linux/arm64 windows/amd64 darwin/amd64 darwin/arm64"

version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
out=${2:-dist}
case $version in
  *[!A-Za-z0-9._+-]*|"") echo "release.sh: version '$version': use letters, digits and . _ + - only" >&2; exit 2 ;;
esac

rm -rf "$out"
mkdir -p "$out"
for target in $targets; do
  goos=${target%/*} goarch=${target#*/}
  ext=""
  [ "$goos" = windows ] && ext=.exe
  name="siem-recovery-$version-$goos-$goarch$ext"
  CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -trimpath \
    -ldflags "-s -w -X main.version=$version" -o "$out/$name" ./cmd/siem-recovery
  echo "built $out/$name"
done
(cd "$out" && sha256sum siem-recovery-* > SHA256SUMS)
echo "wrote $out/SHA256SUMS"
