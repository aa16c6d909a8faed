# syntax=docker/dockerfile:1
#
# The `strata` binary in a small, non-root image:
#   docker build -t registry.example.com/strata:0.1.0 .
#   docker run --rm registry.example.com/strata:0.1.0 --help
# Every component is a subcommand of the one binary (tsdb, sidecar, query,
# tools), so one image serves all of deploy/.

# Build stage: the toolchain the project is tested with (rust-version in
# Cargo.toml is the minimum). --locked builds exactly Cargo.lock.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds (BuildKit);
# the binary is copied out of the cache so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin strata \
    && install -D -m 0755 target/release/strata /out/strata

# Runtime stage: glibc, libgcc and CA certificates (for S3/GCS/Azure over
# TLS), no shell, no package manager. The `nonroot` user is uid 65532,
# which the Kubernetes manifests in deploy/ also set.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/strata /usr/local/bin/strata
USER 65532:65532
# The TSDB's default data directory when none is mounted.
WORKDIR /home/nonroot
EXPOSE 9090 10901 10902
ENTRYPOINT ["/usr/local/bin/strata"]
CMD ["--help"]
