# syntax=docker/dockerfile:1
# The one darklaunch image: every service of the Helm chart runs it as
# `darklaunch serve <service>`. A static binary on distroless, as the non-root
# user 65532, so it runs with a read-only root filesystem and no capabilities.
#   docker build --build-arg VERSION=0.1.0 -t ghcr.io/darklaunch/darklaunch:0.1.0 .

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=0.1.0
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X github.com/darklaunch/darklaunch/internal/cli.Version=${VERSION}" \
      -o /darklaunch ./cmd/darklaunch

FROM gcr.io/distroless/static:nonroot
COPY --from=build /darklaunch /darklaunch
USER 65532:65532
# --health-addr :8081 in the chart: /healthz, /readyz, /metrics.
EXPOSE 8081
ENTRYPOINT ["/darklaunch"]
