#!/usr/bin/env bash
# util/build-images.sh - build vglet's container images from init-containers/Containerfile.*
#
#   util/build-images.sh                  # every stage
#   util/build-images.sh csi-driver ...   # only these stages
#
# Env: VGLET_IMAGE_REPO (default ghcr.io/vglet), VGLET_IMAGE_TAG (default v0.1.0, the tag the
# manifests under deploy/ use), VGLET_BUILDER (podman|buildah|docker; default: the first of
# these that is installed AND can build here).
#
# When no builder works (no engine, no daemon, no permission), it says so and exits 0: image
# builds are optional on a development machine; nothing else in the repository needs them.
set -euo pipefail
cd "$(dirname "$0")/.."

REPO=${VGLET_IMAGE_REPO:-ghcr.io/vglet}
TAG=${VGLET_IMAGE_TAG:-v0.1.0}
ALL=(disk-discover vg-init pmem-ns-init csi-driver reviver)

log() { printf 'build-images: %s\n' "$*" >&2; }

stages=("$@")
((${#stages[@]})) || stages=("${ALL[@]}")
for s in "${stages[@]}"; do
  [[ -f init-containers/Containerfile.$s ]] || {
    log "no init-containers/Containerfile.$s (stages: ${ALL[*]})"
    exit 2
  }
done

# A CLI on PATH is not enough: docker needs a reachable daemon, podman/buildah a working
# storage and user namespace set-up. Ask each one to describe itself; that fails fast when
# it could not build.
works() {
  case $1 in
    docker) docker info >/dev/null 2>&1 ;;
    podman) podman info >/dev/null 2>&1 ;;
    buildah) buildah info >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

builder=
tried=()
for b in ${VGLET_BUILDER:-podman buildah docker}; do
  command -v "$b" >/dev/null || continue
  tried+=("$b")
  if works "$b"; then
    builder=$b
    break
  fi
done
if [[ -z $builder ]]; then
  if ((${#tried[@]})); then
    log "no usable image builder: ${tried[*]} installed but not working here" \
      "(e.g. 'docker info' cannot reach a Docker daemon). Nothing built."
  else
    log "no image builder installed (looked for: ${VGLET_BUILDER:-podman buildah docker})." \
      "Nothing built."
  fi
  log "install podman or buildah, or start a Docker engine, and run this again."
  exit 0
fi
log "using $builder"

# A small build context: the workspace sources and init-containers/, never target/ (many
# GiB), VM images or .git. Copied, so uncommitted work is built as it is.
ctx=$(mktemp -d "${TMPDIR:-/tmp}/vglet-image-ctx.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
tar -C . \
  --exclude=./target --exclude='*/target' --exclude='*.img' \
  -cf - Cargo.toml Cargo.lock bins shared tests init-containers | tar -C "$ctx" -xf -

built=()
for s in "${stages[@]}"; do
  image=$REPO/$s:$TAG
  log "building $image"
  case $builder in
    docker | podman)
      "$builder" build -f "$ctx/init-containers/Containerfile.$s" -t "$image" "$ctx" ;;
    buildah)
      buildah build -f "$ctx/init-containers/Containerfile.$s" -t "$image" "$ctx" ;;
  esac
  built+=("$image")
done

log "built ${#built[@]} image(s):"
printf '  %s\n' "${built[@]}" >&2
log "push them to where your nodes pull from, or set image: in deploy/ to your registry."
