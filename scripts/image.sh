#!/usr/bin/env bash
# Builds the container image from the repository's Dockerfile with buildah
# (no container engine needed: vfs storage, chroot isolation, as root) and
# checks it: non-root user, entrypoint, the checkpoint volume, and a real
# recovery of the bundled example run inside it, whose default checkpoint
# lands on the volume.
#
# The machine has no registry to pull golang and distroless from, so the
# Dockerfile's GO_IMAGE and BASE_IMAGE are given local stand-ins built here:
# the Go toolchain of this machine on a busybox shell, and a distroless-like
# static base (the nonroot user, CA certificates, /tmp). The module and build
# caches of this machine are mounted into the build, which runs offline.
#
#   scripts/image.sh [TAG]     (default localhost/siem-recovery:ci)
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-localhost/siem-recovery:ci}
work=$(mktemp -d)
b=(buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run")
cleanup() {
  "${b[@]}" rm --all >/dev/null 2>&1 || true
  "${b[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

goroot=$(go env GOROOT)
gover=$(go env GOVERSION)

# GO_IMAGE stand-in: this machine's Go toolchain (static) and a busybox shell.
c=$("${b[@]}" from scratch)
"${b[@]}" copy --quiet "$c" /bin/busybox /bin/busybox
"${b[@]}" run --isolation chroot "$c" /bin/busybox sh -c '/bin/busybox --install -s /bin && mkdir -p -m 1777 /tmp && mkdir -p /root'
"${b[@]}" copy --quiet "$c" "$goroot" /usr/local/go
"${b[@]}" config --env PATH=/usr/local/go/bin:/bin --env GOPATH=/go --env GOTOOLCHAIN=local \
  --env GOPROXY=off --env GOFLAGS=-mod=mod --env HOME=/root "$c"
"${b[@]}" commit --quiet "$c" localhost/standin/golang:"$gover" >/dev/null

# BASE_IMAGE stand-in: what distroless static:nonroot holds that the tool uses.
mkdir -p "$work/base/etc/ssl/certs" "$work/base/tmp" "$work/base/home/nonroot"
cat > "$work/base/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$work/base/etc/group"
cp /etc/ssl/certs/ca-certificates.crt "$work/base/etc/ssl/certs/"
chmod 1777 "$work/base/tmp"
c=$("${b[@]}" from scratch)
"${b[@]}" copy --quiet "$c" "$work/base" /
"${b[@]}" config --user 65532:65532 "$c"
"${b[@]}" commit --quiet "$c" localhost/standin/distroless-static:nonroot >/dev/null

echo "building $tag from the Dockerfile"
"${b[@]}" build --isolation chroot --pull=never --layers=false \
  --build-arg GO_IMAGE=localhost/standin/golang:"$gover" \
  --build-arg BASE_IMAGE=localhost/standin/distroless-static:nonroot \
  --build-arg VERSION=0.0.0-image \
  -v "$(go env GOMODCACHE)":/go/pkg/mod:ro \
  -v "$(go env GOCACHE)":/root/.cache/go-build \
  -t "$tag" . >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }

fail() { echo "image check: $*" >&2; exit 1; }
config=$("${b[@]}" inspect --format '{{.OCIv1.Config.User}}|{{.OCIv1.Config.Entrypoint}}|{{.OCIv1.Config.Env}}|{{.OCIv1.Config.Volumes}}' "$tag")
case $config in
  "65532:65532|[/usr/local/bin/siem-recovery]|"*"XDG_STATE_HOME=/var/lib/siem-recovery"*"|map[/var/lib/siem-recovery:{}]") ;;
  *) fail "config $config" ;;
esac

# A real recovery inside the image, as its user, with the default checkpoint.
c=$("${b[@]}" from "$tag")
run=("${b[@]}" run --isolation chroot -v "$PWD/docs/examples:/examples:ro" "$c" --)
version=$("${run[@]}" /usr/local/bin/siem-recovery version)
[[ $version == "siem-recovery 0.0.0-image "* ]] || fail "version: $version"
args=(/usr/local/bin/siem-recovery run --alert /examples/alert.json --source file:/examples/activities.jsonl --quiet)
events=$("${run[@]}" "${args[@]}" | grep -c 'CEF:0|MCAS|SIEM_Agent|0.0.0-image|')
[ "$events" = 102 ] || fail "the example run sent $events events, want 102"
again=$("${run[@]}" "${args[@]}" 2>&1 | wc -l)
[ "$again" = 0 ] || fail "the re-run did not find its checkpoint on the volume"
# status without --checkpoint lists the checkpoints of the state directory.
listed=$("${run[@]}" /usr/local/bin/siem-recovery status 2>&1 || true)
[[ $listed == *"/var/lib/siem-recovery/siem-recovery/20240514T080000Z-20240514T090000Z-"*".db"* ]] ||
  fail "the default checkpoint is not on the volume: $listed"
mnt=$("${b[@]}" mount "$c")
owner=$(stat -c %u:%a "$mnt"/var/lib/siem-recovery)
"${b[@]}" umount "$c" >/dev/null
[ "$owner" = 65532:755 ] || fail "the volume directory is $owner, want 65532:755"

size=$("${b[@]}" images --format '{{.Size}}' "$tag")
echo "image $tag: user 65532, checkpoint volume /var/lib/siem-recovery, example recovered inside ($size)"
