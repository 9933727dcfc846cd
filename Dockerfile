# The signet image: one binary for `signet serve` and `signet controller` (deploy/ runs both from it).
# docker build -t signet .
ARG SWIFT_VERSION=6.3
FROM swift:${SWIFT_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsqlite3-dev libp11-kit-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that source edits do not re-fetch them.
COPY Package.swift ./
RUN swift package resolve
COPY Sources Sources
COPY bench bench
COPY Tests Tests
RUN swift build -c release --product signet --static-swift-stdlib \
 && install -D "$(swift build -c release --show-bin-path)/signet" /out/signet

FROM debian:bookworm-slim
# SQLite for the ledger, CA roots for Key Vault and Entra ID. PKCS#11 modules are the vendor's, mounted and dlopen'ed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsqlite3-0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin signet
COPY --from=build /out/signet /usr/local/bin/signet
USER 10001:10001
EXPOSE 8443 9402
ENTRYPOINT ["/usr/local/bin/signet"]
CMD ["serve"]
