# siem-recovery as a container image: the static binary on a distroless base,
# run as a non-root user (65532), the checkpoint on a volume.
#
#   docker build -t siem-recovery:1.2.0 --build-arg VERSION=1.2.0 .
#   docker run --rm -v siem-recovery:/var/lib/siem-recovery siem-recovery:1.2.0 run --alert ... --source ...
#
# Without --checkpoint a run keeps its checkpoint in $XDG_STATE_HOME, set here
# to the volume. CI builds this same file with buildah (scripts/image.sh),
# giving GO_IMAGE and BASE_IMAGE local stand-ins: it has no registry to pull
# the real ones from.
ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO_ENABLED=0: static, so it runs on a base without libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/siem-recovery ./cmd/siem-recovery \
 && mkdir -p /out/state

FROM ${BASE_IMAGE}
COPY --from=build /out/siem-recovery /usr/local/bin/siem-recovery
# The volume's directory, owned by the non-root user so a run can create its
# checkpoint there (a volume mounted on it takes this owner when empty).
COPY --from=build --chown=65532:65532 /out/state /var/lib/siem-recovery
ENV XDG_STATE_HOME=/var/lib/siem-recovery
VOLUME ["/var/lib/siem-recovery"]
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/siem-recovery"]
CMD ["--help"]
