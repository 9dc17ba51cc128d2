#!/usr/bin/env bash
# Builds, into the local Docker Engine, the images the offline example needs, from Debian
# packages only: a debootstrap base imported with `docker import`; a bootable live OS on it
# (kernel, systemd, dracut initrd with dmsquash-live: live/Dockerfile) standing in for the
# Kairos base image; and small stand-ins for the Kubernetes distribution (one image per
# version, with versioned binaries), the Kairos provider and the Palette agent.
# Idempotent: an image whose tag exists is kept.
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
VERSIONS=${K8S_VERSIONS:-"1.32.3 1.33.1"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

have() { docker image inspect "$1" >/dev/null 2>&1; }

# Import directory $2 as image $1.
import_dir() {
  tar --numeric-owner -C "$2" -c . | docker import --change 'CMD ["/bin/sh"]' - "$1" >/dev/null
  echo "built $1"
}

base=forge-fixtures/debian:bookworm
if have "$base"; then
  echo "cached $base"
else
  debootstrap --variant=minbase bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; exit 1; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  import_dir "$base" "$work/rootfs"
fi

live=forge-fixtures/live:bookworm
if have "$live"; then
  echo "cached $live"
else
  docker build -q -t "$live" "$(dirname "$0")/live" >"$work/live.log" 2>&1 ||
    { tail -20 "$work/live.log"; exit 1; }
  echo "built $live"
fi

# A stand-in binary: a script that reports its name and version.
stub() {
  mkdir -p "$(dirname "$1")"
  printf '#!/bin/sh\necho "%s %s"\n' "$2" "$3" >"$1"
  chmod 755 "$1"
}

for version in $VERSIONS; do
  image=forge-fixtures/k3s:v$version
  if have "$image"; then echo "cached $image"; continue; fi
  dir="$work/k3s-$version"
  stub "$dir/usr/local/bin/k3s" k3s "v$version+k3s1"
  stub "$dir/usr/local/bin/kubectl" kubectl "v$version"
  mkdir -p "$dir/opt/k8s" && echo "$version" >"$dir/opt/k8s/VERSION"
  import_dir "$image" "$dir"
done

provider=forge-fixtures/provider-k3s:v4.7.1
if have "$provider"; then echo "cached $provider"; else
  stub "$work/provider/system/providers/agent-provider-k3s" agent-provider-k3s v4.7.1
  import_dir "$provider" "$work/provider"
fi

agent=forge-fixtures/stylus:v4.7.16
if have "$agent"; then echo "cached $agent"; else
  stub "$work/agent/opt/spectrocloud/bin/stylus-agent" stylus-agent v4.7.16
  mkdir -p "$work/agent/etc/kairos"
  printf 'stages:\n  boot:\n    - name: forge fixture agent\n' >"$work/agent/etc/kairos/80_stylus.yaml"
  import_dir "$agent" "$work/agent"
fi
