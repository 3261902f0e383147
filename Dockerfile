# Starcite: a single node whose data lives in /data.
#   docker build -t starcite .
#   docker run -d -p 4000:4000 -v starcite_data:/data --ulimit memlock=-1 starcite
# io_uring must be allowed by the container runtime's seccomp profile, and /data must be
# a volume on a filesystem with O_DIRECT (not tmpfs).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin starcite

FROM debian:bookworm-slim
COPY --from=build /src/target/release/starcite /usr/local/bin/starcite
ENV STARCITE_RAFT_DATA_DIR=/data \
    PORT=4000
VOLUME ["/data"]
EXPOSE 4000 4100
ENTRYPOINT ["/usr/local/bin/starcite"]
