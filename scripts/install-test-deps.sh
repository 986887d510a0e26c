#!/usr/bin/env bash
# Installs the real components hoist's test suite drives (see DESIGN.md, "Real
# components used by tests"), on a fresh Debian 12 machine of this project's kind.
# Idempotent: running it again changes nothing (but always asks apt). Run as root (scripts/test.sh calls it).
set -euo pipefail

# Debian packages the tests (and the oracle recorder) need.
DEBIAN_PACKAGES=(
  docker-registry   # registry:2 on a loopback port
  podman runc       # run built images
  slirp4netns       # the network of the pods `podman kube play` starts (a recommends, not a dependency)
  catatonit         # the pause process of the pods `podman kube play` starts
  buildah           # differential oracle
  skopeo umoci oci-image-tool   # inspect, convert and unpack images
  busybox-static debootstrap    # base image material, built offline
  docker.io         # dockerd on a private socket, BuildKit oracle, docker load/run
  uidmap libcap2-bin   # rootless RUN; setcap for hoist's image (scripts/build-image.sh)
  openssh-client    # RUN --mount=type=ssh: ssh-agent, ssh-add, ssh-keygen
  apache2-utils openssl golang-docker-credential-helpers pass   # registry auth
  pigz hyperfine    # compression reference, benchmarks
  python3 python3-pip   # PyPI tools below; `python3 -m http.server` for ADD <url>
  xz-utils bzip2 gzip   # the recorder writes ADD archive fixtures
  curl              # the recorder waits for its servers with it
  time              # /usr/bin/time measures peak memory in the scale tests
  bc                # benches/compare.sh computes ratios
  git               # git build contexts, served by git-daemon on loopback
  util-linux dpkg   # setpriv (hoist without CAP_SYS_ADMIN), dpkg-deb (a local package for apt-get)
  qemu-user-static  # RUN steps of other architectures (tests/it/platforms.rs)
)

# PyPI tools the tests need. Add new ones here, one per line, pinned when it matters.
PYPI_PACKAGES=(
  kubernetes-validate   # --strict validation of generated manifests (tests/it/k8s.rs)
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps.sh: run as root (it calls apt-get and writes /etc/containers)" >&2
  exit 1
fi

# Always `apt-get update` and the whole list: a package installed but
# outdated, or half-configured by an interrupted run, gets fixed the same way
# on every machine. Installing what is already installed changes nothing.
# arm64 is added as a foreign architecture for one download below.
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
echo "install-test-deps: apt-get update and install (${#DEBIAN_PACKAGES[@]} packages)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${DEBIAN_PACKAGES[@]}" >/dev/null

# Debian's static busybox for arm64, unpacked (not installed): the arm64
# material of the multi-platform tests, built into images offline.
ARM64_BUSYBOX=/var/cache/hoist-fixtures/busybox-static-arm64
if [ ! -x "$ARM64_BUSYBOX/bin/busybox" ]; then
  echo "install-test-deps: downloading busybox-static:arm64"
  download=$(mktemp -d)
  chmod 0755 "$download"   # apt's _apt user writes the download there
  (cd "$download" && apt-get download -qq busybox-static:arm64)
  rm -rf "$ARM64_BUSYBOX.partial"
  dpkg-deb -x "$download"/busybox-static_*_arm64.deb "$ARM64_BUSYBOX.partial"
  rm -rf "$ARM64_BUSYBOX" && mv "$ARM64_BUSYBOX.partial" "$ARM64_BUSYBOX"
  rm -rf "$download"
fi

# podman on these machines: the default ulimits exceed the container's hard limits,
# there is no systemd to manage cgroups, and crun is not installed.
CONTAINERS_CONF='[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"'
mkdir -p /etc/containers
if [ ! -f /etc/containers/containers.conf ] ||
  [ "$(cat /etc/containers/containers.conf)" != "$CONTAINERS_CONF" ]; then
  echo "install-test-deps: writing /etc/containers/containers.conf"
  printf '%s\n' "$CONTAINERS_CONF" >/etc/containers/containers.conf
fi

if [ ${#PYPI_PACKAGES[@]} -gt 0 ]; then
  # The machine's python3 may be Debian's (PEP 668 "externally managed") or a
  # user-installed one; --break-system-packages is harmless for the latter.
  for pkg in "${PYPI_PACKAGES[@]}"; do
    name=${pkg%%[=<>]*}
    if ! python3 -m pip show -q "$name" >/dev/null 2>&1; then
      python3 -m pip install -q --break-system-packages "$pkg" ||
        python3 -m pip install -q "$pkg"
    fi
  done
fi
