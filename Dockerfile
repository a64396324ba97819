# hashrig in a container: a multi-stage build (the Rust toolchain stays in
# the first stage), then a slim runtime with the OpenCL and Vulkan loaders.
#
#   docker build -t hashrig .
#   docker run --rm hashrig devices
#
# NVIDIA (the NVIDIA Container Toolkit mounts the driver's OpenCL, Vulkan
# and NVML libraries into the container):
#   docker run -d --restart unless-stopped --gpus all \
#     -v /etc/hashrig:/etc/hashrig:ro -v hashrig-data:/var/lib/hashrig \
#     -p 127.0.0.1:4028:4028 hashrig mine --config /etc/hashrig/config.toml
# AMD (Vulkan through Mesa's RADV, in the image; the render nodes and the
# compute device from the host):
#   docker run -d --restart unless-stopped --device /dev/dri --device /dev/kfd \
#     --group-add video --group-add render hashrig mine --config …
# The cgminer API must listen on 0.0.0.0 inside the container to be
# published (`--cgminer-api 0.0.0.0:4028`); publish it on the host's
# loopback, as above, unless the farm's network is trusted.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && install -s -m 0755 target/release/hashrig /usr/local/bin/hashrig

FROM debian:bookworm-slim
# Loaders and Mesa's Vulkan drivers from Debian stable, whose security
# updates a rebuild should take: not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates ocl-icd-libopencl1 libvulkan1 mesa-vulkan-drivers \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/OpenCL/vendors \
 && echo "libnvidia-opencl.so.1" > /etc/OpenCL/vendors/nvidia.icd \
 && groupadd --system --force render \
 && useradd --system --home-dir /var/lib/hashrig --create-home \
      --shell /usr/sbin/nologin --groups video,render hashrig
COPY --from=build /usr/local/bin/hashrig /usr/local/bin/hashrig
# compute: OpenCL; graphics: Vulkan; utility: NVML (temperatures, power).
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,graphics,utility \
    XDG_DATA_HOME=/var/lib/hashrig \
    XDG_CACHE_HOME=/var/lib/hashrig/cache
USER hashrig
WORKDIR /var/lib/hashrig
VOLUME ["/var/lib/hashrig"]
EXPOSE 4028 4029
STOPSIGNAL SIGTERM
ENTRYPOINT ["hashrig"]
CMD ["bench"]
