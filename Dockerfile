# The opview relay image, for users who build with Docker or Podman. `make image` builds the same
# layout (binary, user, entrypoint) in pure Go without a daemon; hack/image's tests check that this
# file and that builder agree.
#
#   docker build -t localhost/opview-relay:0.1.0 --build-arg VERSION=0.1.0 .
#   docker save localhost/opview-relay:0.1.0 | sudo k3s ctr images import -
FROM docker.io/library/golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY exporter/ exporter/
ARG VERSION=dev
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION}" \
      -o /out/opview-relay ./exporter/cmd/opview-relay

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/opview-relay /usr/local/bin/opview-relay
USER 65532:65532
EXPOSE 9091
ENTRYPOINT ["/usr/local/bin/opview-relay"]
