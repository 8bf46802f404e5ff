# The Vigil agent image used by charts/vigil.
#
# NOT BUILT HERE: the machine this was written on has no Docker (or other image builder), so this
# file has not been run. It follows .ci/setup.sh's build package list and the runtime libraries
# that `ldd build/vigil` lists on Debian 12, which the test chart_dockerfile
# (tests/charts/check_dockerfile.sh) checks against the built agent; build it with
#   docker build -t <registry>/vigil:0.1.0 .
# The BPF object is compiled by clang in the build stage and embedded in the binary (skeleton),
# so the runtime stage needs no compiler and no kernel headers: CO-RE relocates against the
# node's /sys/kernel/btf/vmlinux at start. The build generates vmlinux.h from the build host's
# /sys/kernel/btf/vmlinux (bpf/CMakeLists.txt, VIGIL_VMLINUX_BTF): build on a host with BTF
# (5.17+ for drop reasons), or pass -DVIGIL_VMLINUX_BTF=<a BTF file copied into the context>.

FROM debian:12 AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q && apt-get install -y -q --no-install-recommends \
      cmake make g++ clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev \
      liblua5.4-dev prometheus-cpp-dev libcpp-httplib-dev libssl-dev libspdlog-dev libfmt-dev \
      googletest libgtest-dev libgmock-dev libbenchmark-dev libpcap-dev nlohmann-json3-dev \
      libyaml-cpp-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN rm -rf build* \
    && cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    && cmake --build /build -j"$(nproc)" --target vigil \
    && strip --strip-debug /build/vigil

FROM debian:12-slim
ARG DEBIAN_FRONTEND=noninteractive
# The shared libraries the agent links (ldd build/vigil on Debian 12) and CA certificates for
# https notifiers. `mount` (bpffs init container) and sh/sed (config init container) are in
# the base image.
RUN apt-get update -q && apt-get install -y -q --no-install-recommends \
      libbpf1 libelf1 zlib1g liblua5.4-0 libpcap0.8 libssl3 libyaml-cpp0.7 libspdlog1.10 \
      libfmt9 libprometheus-cpp-core1.0 libcpp-httplib0.11 libstdc++6 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/vigil /usr/bin/vigil
# The shipped rule pack where the agent looks for it without a `rules:` key
# (<executable dir>/../share/vigil/rules, docs/config.md).
COPY rules/pack/*.lua /usr/share/vigil/rules/
ENTRYPOINT ["/usr/bin/vigil"]
CMD ["agent"]
