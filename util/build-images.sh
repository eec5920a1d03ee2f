#!/usr/bin/env bash
# util/build-images.sh - build vglet's container images as OCI archives, with no container
# registry, no daemon and no Dockerfile: the root filesystem comes from Debian packages
# (mmdebstrap), the binaries from this workspace (cargo), and umoci writes the OCI image.
#
#   util/build-images.sh                  # every image in init-containers/stages.txt
#   util/build-images.sh csi-driver ...   # only these
#
# Writes target/images/<image>.oci.tar (an OCI image layout in a tar, tagged $VGLET_IMAGE_TAG):
#   skopeo copy oci-archive:target/images/vg-init.oci.tar docker://REGISTRY/vglet/vg-init:v0.1.0
#   podman load -i target/images/vg-init.oci.tar
#
# Env:
#   VGLET_IMAGE_TAG      tag inside each archive (default v0.1.0, the tag deploy/ uses)
#   VGLET_IMAGE_PROFILE  release (default) or debug: which cargo profile's binaries go in.
#                        util/test.sh uses debug (already built, no second compile).
#   VGLET_IMAGE_OUT      output directory (default target/images)
#   VGLET_IMAGE_CACHE    Debian base cache (default ~/.cache/vglet/image-base)
#   VGLET_IMAGE_REFRESH  1: rebuild the Debian bases even when cached (security updates)
#   VGLET_DEBIAN_MIRROR  default http://deb.debian.org/debian (security from -security)
#
# Each image is two layers: the Debian base (cached under VGLET_IMAGE_CACHE, keyed by its
# package list and everything else that goes into mmdebstrap's command, so a warm build
# downloads nothing) and vglet's binaries plus lvm.conf. Needs root (mmdebstrap's root mode
# and umoci keep file owners) and Debian's mmdebstrap + umoci (util/deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${VGLET_IMAGE_TAG:-v0.1.0}
PROFILE=${VGLET_IMAGE_PROFILE:-release}
OUT=${VGLET_IMAGE_OUT:-target/images}
CACHE=${VGLET_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vglet/image-base}
MIRROR=${VGLET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
STAGES=${VGLET_IMAGE_STAGES:-init-containers/stages.txt}

log() { printf 'build-images: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

case $PROFILE in
  release) cargo_profile=(--release) ;;
  debug) cargo_profile=() ;;
  *) die "VGLET_IMAGE_PROFILE must be release or debug, not '$PROFILE'" ;;
esac
[[ $(id -u) == 0 ]] || die "run as root: mmdebstrap (root mode) and umoci must keep file owners"
for tool in mmdebstrap umoci cargo; do
  command -v "$tool" >/dev/null || die "$tool is missing (util/deps.sh installs mmdebstrap and umoci)"
done

# stages.txt: "image | binaries | packages | tools"; '#' lines are comments.
declare -A BINS PKGS
ALL=()
while IFS='|' read -r name bins pkgs _tools; do
  read -r name _ <<<"$name"
  [[ -z $name || $name == \#* ]] && continue
  ALL+=("$name")
  read -ra words <<<"$bins"
  BINS[$name]=${words[*]}
  read -ra words <<<"$pkgs"
  PKGS[$name]=$(printf '%s\n' "${words[@]}" | sort -u | paste -sd' ')
done <"$STAGES"

images=("$@")
((${#images[@]})) || images=("${ALL[@]}")
for i in "${images[@]}"; do
  [[ -n ${BINS[$i]:-} ]] || die "no image '$i' in $STAGES (images: ${ALL[*]})"
done

t0=$SECONDS
# 1. The binaries, from the workspace (a no-op when they are up to date).
packages=()
for i in "${images[@]}"; do
  for b in ${BINS[$i]}; do packages+=(-p "$b"); done
done
log "cargo build ${cargo_profile[*]:-(debug)} ${packages[*]}"
cargo build --locked -q "${cargo_profile[@]}" "${packages[@]}"
bindir=target/$PROFILE

work=$(mktemp -d "${TMPDIR:-/tmp}/vglet-images.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT" "$CACHE"

# 2. The Debian base of one image: a tarball from mmdebstrap, built once per recipe.
#    essential = dpkg's Essential set, no apt (nothing installs packages at run time); the
#    merged-usr hook stands in for the usrmerge package (which would pull in perl, 60 MB);
#    docs, man pages and locales are left out; /dev is the runtime's, not the image's.
base_tar() {
  local pkgs=$1
  local args=(
    --quiet --mode=root --variant=essential --format=tar
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --include="${pkgs// /,}"
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --skip=output/dev
  )
  local sources=(
    "deb $MIRROR $SUITE main"
    "deb $MIRROR $SUITE-updates main"
    "deb ${MIRROR%/debian}/debian-security $SUITE-security main"
  )
  local key
  key=$(printf '%s\n' "$SUITE" "${args[@]}" "${sources[@]}" "$(mmdebstrap --version)" |
    sha256sum | cut -c1-16)
  local tar=$CACHE/$SUITE-$key.tar
  if [[ -s $tar && ${VGLET_IMAGE_REFRESH:-0} != 1 ]]; then
    log "base [$pkgs]: cached $tar"
  else
    log "base [$pkgs]: mmdebstrap $SUITE (once per package list)"
    nice -n 5 mmdebstrap "${args[@]}" "$SUITE" "$tar.part" "${sources[@]}" >&2
    mv "$tar.part" "$tar"
  fi
  BASE_TAR=$tar
}

# The binaries' layer: same content, same bytes (owner root, fixed mtime, sorted).
mtime=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
vglet_layer() {
  local image=$1 root=$work/$1.root
  # /dev: the mount point for the runtime's /dev (the base leaves it out, see --skip).
  mkdir -p "$root/usr/local/bin" "$root/etc/lvm" "$root/dev"
  for b in ${BINS[$image]}; do
    # Debug info is most of a binary's size; symbols stay for backtraces.
    objcopy --strip-debug "$bindir/$b" "$root/usr/local/bin/$b"
    chmod 0755 "$root/usr/local/bin/$b"
  done
  # Only images with lvm get lvm.conf (its reasons: init-containers/README.md).
  if [[ " ${PKGS[$image]} " == *" lvm2 "* ]]; then
    install -m 0644 init-containers/lvm.conf "$root/etc/lvm/lvm.conf"
  else
    rmdir "$root/etc/lvm" "$root/etc"
  fi
  tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
    -cf "$work/$image.layer.tar" .
  LAYER_TAR=$work/$image.layer.tar
}

built=()
for i in "${images[@]}"; do
  base_tar "${PKGS[$i]}"
  vglet_layer "$i"
  entry=${BINS[$i]%% *}
  layout=$work/$i.oci
  umoci init --layout "$layout"
  umoci new --image "$layout:$TAG"
  umoci raw add-layer --image "$layout:$TAG" "$BASE_TAR" \
    --history.created_by="mmdebstrap --variant=essential $SUITE + ${PKGS[$i]}"
  umoci raw add-layer --image "$layout:$TAG" "$LAYER_TAR" \
    --history.created_by="vglet ${BINS[$i]} ($PROFILE) + init-containers/lvm.conf"
  env_args=(--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
  # No udevd in a container (init-containers/README.md): libdevmapper honours this whatever
  # the lvm.conf mounted from the host says.
  [[ " ${PKGS[$i]} " == *" lvm2 "* ]] && env_args+=(--config.env=DM_DISABLE_UDEV=1)
  umoci config --image "$layout:$TAG" --config.entrypoint="/usr/local/bin/$entry" \
    --config.workingdir=/ "${env_args[@]}" \
    --config.label=org.opencontainers.image.title="vglet $i" \
    --config.label=org.opencontainers.image.version="$TAG" \
    --config.label=org.opencontainers.image.licenses=Apache-2.0 \
    --config.label=org.opencontainers.image.source=https://github.com/vglet/vglet
  umoci gc --layout "$layout"
  # An oci-archive is the layout in a tar (what skopeo/podman/buildah read).
  tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner -cf "$OUT/$i.oci.tar.part" .
  mv "$OUT/$i.oci.tar.part" "$OUT/$i.oci.tar"
  built+=("$(printf '%-14s %4d MiB  %s' "$i" $(($(stat -c %s "$OUT/$i.oci.tar") / 1048576)) "$OUT/$i.oci.tar")")
done

log "built ${#built[@]} image(s) in $((SECONDS - t0)) s (tag $TAG, $PROFILE binaries):"
printf '  %s\n' "${built[@]}" >&2
