# Starcite: one node per container; data in the /data volume.
#
#   docker build -t starcite .
#   docker run -d --name starcite -p 4000:4000 -v starcite-data:/data \
#     --ulimit memlock=-1:-1 --security-opt seccomp=deploy/docker/seccomp.json starcite
#
# Why the two options: glommio drives the disk and the sockets through io_uring and locks
# its ring buffers in memory. Docker's default seccomp profile blocks the io_uring
# syscalls since Engine 25 (deploy/docker/seccomp.json is that profile plus the three
# io_uring calls, not `unconfined`), and the default memlock limit of a container is too
# small. Without them the server prints one line naming the option and exits non-zero.
# /data must be a volume on a filesystem with O_DIRECT (ext4, xfs; not tmpfs).
#
# Stage 1 compiles with cargo. On a machine without an image registry, the same Dockerfile
# takes a binary already built (the tests do this, README "Deploy"):
#   --build-arg BUILDER_IMAGE=debian:bookworm-slim --build-arg PREBUILT_BINARY=target/docker/starcite
ARG BUILDER_IMAGE=rust:1-bookworm
FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY . .
ARG PREBUILT_BINARY=
RUN if [ -n "$PREBUILT_BINARY" ]; then \
      install -m 0755 "$PREBUILT_BINARY" /starcite; \
    else \
      cargo build --release --locked --bin starcite && install -m 0755 target/release/starcite /starcite; \
    fi

FROM debian:bookworm-slim
# A fixed uid/gid, so a volume's ownership is the same on every host.
RUN groupadd --system --gid 10001 starcite \
 && useradd --system --uid 10001 --gid starcite --home-dir /data --no-create-home --shell /usr/sbin/nologin starcite \
 && mkdir -p /data && chown starcite:starcite /data
COPY --from=build /starcite /usr/local/bin/starcite
ENV STARCITE_RAFT_DATA_DIR=/data \
    PORT=4000 \
    STARCITE_CLUSTER_PORT=4100
VOLUME ["/data"]
# HTTP API (PORT) and the intra-cluster port (STARCITE_CLUSTER_PORT).
EXPOSE 4000 4100
USER starcite:starcite
# Ready = serving (SPEC §3 /health/ready); `starcite healthcheck live` for liveness only.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["/usr/local/bin/starcite", "healthcheck"]
# The server handles SIGTERM itself: it drains and flushes its log, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/starcite"]
