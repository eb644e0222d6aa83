#!/usr/bin/env bash
# CI's platform check: go vet for every supported GOOS/GOARCH (test files
# included, so OS-specific code must sit behind build tags), then the
# release build of scripts/release.sh, whose Linux binaries must be static
# and stamped with the version, and whose checksums must verify.
set -euo pipefail
cd "$(dirname "$0")/.."

for target in linux/amd64 linux/arm64 windows/amd64 darwin/amd64 darwin/arm64; do
  echo "go vet $target"
  CGO_ENABLED=0 GOOS=${target%/*} GOARCH=${target#*/} go vet ./...
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
version=0.0.0-ci
bash scripts/release.sh "$version" "$out"
(cd "$out" && sha256sum --quiet -c SHA256SUMS)
for arch in amd64 arm64; do
  bin="$out/siem-recovery-$version-linux-$arch"
  kind=$(file -b "$bin")
  case $kind in
    *"statically linked"*) ;;
    *) echo "$bin is not static: $kind" >&2; exit 1 ;;
  esac
done
got=$("$out/siem-recovery-$version-linux-amd64" version)
case $got in
  *"$version"*) echo "release binaries: static, version $version, checksums verified" ;;
  *) echo "the release binary says '$got', not version $version" >&2; exit 1 ;;
esac
