#!/usr/bin/env bash
# Builds the busybox base image offline (Docker Hub is unreachable here) with umoci
# and pushes it with skopeo to a local registry:2 as `library/busybox:latest` and `bench/busybox:1`, so
# unmodified Dockerfiles (`FROM busybox`) resolve to it through a registry mirror.
#
# usage: make-base-images.sh REGISTRY_HOST:PORT
#
# The rootfs, from Debian's busybox-static:
#   /bin/busybox              0755
#   /bin/<applet> -> busybox  one relative symlink per applet (`busybox --list`)
#   /etc/passwd, /etc/group   root (0) and app (1001), for `COPY --chown=app:app`
#   /tmp                      1777
# Every mtime and the creation time are 0, so the same busybox-static version gives
# the same image digest. The recorded oracle trees
# include this rootfs: a new busybox-static version changes them (its sha256 is
# written into each expected.*.json as `base_busybox_sha256`).
set -euo pipefail

REG=${1:?usage: make-base-images.sh REGISTRY_HOST:PORT}
BUSYBOX=${BUSYBOX:-/bin/busybox}

work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
chmod 0755 "$root/bin" "$root/etc" "$root/bin/busybox"
chmod 1777 "$root/tmp"
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1001:1001:app:/home/app:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
app:x:1001:
EOF
chmod 0644 "$root/etc/passwd" "$root/etc/group"
chown -R 0:0 "$root"
find "$root" -exec touch -h -d @0 {} +
tar --sort=name --numeric-owner -C "$root" -cf "$work/rootfs.tar" .

# umoci rather than buildah: buildah stamps an `io.buildah.version` label into the
# config, which every image built FROM this one would inherit into the recordings.
umoci init --layout "$work/layout"
umoci new --image "$work/layout:busybox"
umoci raw add-layer --image "$work/layout:busybox" \
  --history.created 1970-01-01T00:00:00Z \
  --history.created_by "busybox-static rootfs (scripts/make-base-images.sh)" "$work/rootfs.tar"
umoci config --image "$work/layout:busybox" --no-history \
  --created 1970-01-01T00:00:00Z --author "" --os linux --architecture amd64 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.cmd /bin/sh

for name in library/busybox:latest bench/busybox:1; do
  # v2s2: what Docker Hub serves for busybox, and what every client here reads.
  skopeo copy -q --dest-tls-verify=false --format v2s2 \
    "oci:$work/layout:busybox" "docker://$REG/$name"
done
echo "make-base-images: pushed $REG/library/busybox:latest and $REG/bench/busybox:1"
