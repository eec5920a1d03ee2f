#!/usr/bin/env bash
# util/validate-manifests.sh - validate every Kubernetes manifest under deploy/ offline.
#
#   util/validate-manifests.sh            # every *.yaml / *.yml under deploy/
#   util/validate-manifests.sh FILE|DIR...  # only these (used to check the checker itself)
#
# Uses the PyPI package kubernetes-validate (it ships the OpenAPI schemas of many Kubernetes
# releases, so nothing is fetched from a cluster), installed once into a cached venv:
#   ${VGLET_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vglet/validate-venv}
# Validation is strict (unknown fields are errors) against the newest Kubernetes version the
# installed kubernetes-validate knows, or $VGLET_K8S_VERSION (e.g. 1.37.0) when set.
#
# Every registry.k8s.io/sig-storage/* image must have a row in deploy/sidecars.md with a link
# to the release notes in that sidecar's own CHANGELOG.
#
# kustomization.yaml files are not Kubernetes objects: they pass when `kubectl kustomize`
# builds their directory (skipped when there is no kubectl).
# Prints one line per file and ends with "N passed, N failed"; exits 1 if any file failed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VGLET_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vglet/validate-venv}
KV=$VENV/bin/kubernetes-validate

log() { printf 'validate-manifests: %s\n' "$*" >&2; }

ensure_venv_module() {
  python3 -c 'import venv, ensurepip' 2>/dev/null && return 0
  # Debian splits venv/ensurepip into python3-venv; install it only when it is missing.
  log "python3 cannot create a venv; installing Debian's python3-venv"
  local as_root=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { log "need root (or sudo) to install python3-venv"; exit 1; }
    as_root=(sudo)
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends python3-venv
}

if [[ ! -x $KV ]]; then
  ensure_venv_module
  log "installing kubernetes-validate into $VENV (once)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q kubernetes-validate
fi

# The newest Kubernetes version this kubernetes-validate ships schemas for (its --help shows
# it as the --kubernetes-version default; the module says it without parsing prose).
if [[ -n ${VGLET_K8S_VERSION:-} ]]; then
  k8s=$VGLET_K8S_VERSION
else
  k8s=$("$VENV/bin/python" -c 'import kubernetes_validate.utils as u; print(u.latest_version())' \
    2>/dev/null || "$KV" --help | grep -oE 'Defaults to [0-9]+\.[0-9]+\.[0-9]+' | grep -oE '[0-9.]+$')
  [[ -n $k8s ]] || { log "cannot tell which Kubernetes versions $KV supports"; exit 1; }
fi
log "kubernetes-validate $("$VENV/bin/pip" show kubernetes-validate 2>/dev/null |
  sed -n 's/^Version: //p'), Kubernetes $k8s, strict"

targets=("$@")
((${#targets[@]})) || targets=(deploy)
mapfile -t files < <(find "${targets[@]}" -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) | sort)
((${#files[@]})) || { log "no YAML files under ${targets[*]}"; exit 1; }

pass=0 fail=0 skip=0

# Every Kubernetes CSI sidecar image must name its upstream release notes in deploy/sidecars.md
# (a tag that exists nowhere is ImagePullBackOff on every node). Checked in the files given.
SIDECARS=${VGLET_SIDECARS_TABLE:-deploy/sidecars.md}
mapfile -t sidecar_images < <(grep -hoE 'registry\.k8s\.io/sig-storage/[a-z0-9-]+:[A-Za-z0-9._-]+' \
  "${files[@]}" | sort -u)
for img in "${sidecar_images[@]}"; do
  if grep -qF "| \`$img\` |" "$SIDECARS" 2>/dev/null &&
    grep -F "| \`$img\` |" "$SIDECARS" | grep -qE 'https://github\.com/kubernetes-csi/[^ ]*CHANGELOG'; then
    printf 'PASS %s (source recorded in %s)\n' "$img" "$SIDECARS"
    pass=$((pass + 1))
  else
    printf 'FAIL %s: no row with an upstream CHANGELOG link in %s\n' "$img" "$SIDECARS"
    fail=$((fail + 1))
  fi
done

for f in "${files[@]}"; do
  case $(basename "$f") in
    kustomization.yaml | kustomization.yml)
      # Not a Kubernetes object: check that kustomize can build its directory (offline).
      if ! command -v kubectl >/dev/null; then
        printf 'SKIP %s (kustomization; no kubectl to build it)\n' "$f"
        skip=$((skip + 1))
      elif out=$(kubectl kustomize "$(dirname "$f")" 2>&1 >/dev/null); then
        printf 'PASS %s (kustomize build)\n' "$f"
        pass=$((pass + 1))
      else
        printf 'FAIL %s (kustomize build)\n' "$f"
        printf '%s\n' "$out" | sed 's/^/     /'
        fail=$((fail + 1))
      fi
      continue
      ;;
  esac
  # Custom resources (snapshots, Prometheus Operator) and dashboards: kubernetes-validate has
  # no schema for them, util/validate-crd-objects.py checks them against their CRDs' fields.
  if [[ $f == *.json ]] || grep -qE '^apiVersion: (snapshot\.storage\.k8s\.io|monitoring\.coreos\.com)/' "$f"; then
    if "$VENV/bin/python" util/validate-crd-objects.py "$f"; then
      pass=$((pass + 1))
    else
      fail=$((fail + 1))
    fi
    continue
  fi
  # kubernetes-validate only warns (and exits 0) for a kind it has no schema for, so a typo
  # in kind/apiVersion would pass: here any WARN/ERROR line, or a file with no object at all,
  # is a failure.
  rc=0
  out=$("$KV" --strict --kubernetes-version "$k8s" "$f" 2>&1) || rc=$?
  if ((rc == 0)) && ! grep -qE '^(WARN|ERROR|FATAL)' <<<"$out" && grep -q '^INFO .* passed' <<<"$out"; then
    n=$(grep -c '^INFO .* passed' <<<"$out")
    printf 'PASS %s (%d object%s)\n' "$f" "$n" "$([[ $n == 1 ]] || echo s)"
    pass=$((pass + 1))
  else
    printf 'FAIL %s\n' "$f"
    if grep -qvE '^(INFO |$)' <<<"$out"; then
      grep -vE '^(INFO |$)' <<<"$out" | sed 's/^/     /'
    else
      printf '     no Kubernetes object in this file\n'
    fi
    fail=$((fail + 1))
  fi
done

# One configuration surface: with every value of deploy/settings/settings.yaml changed, no
# rendered model may still carry a default (a field the replacements miss would keep it).
if ((${#@} == 0)) && command -v kubectl >/dev/null; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/vglet-settings.XXXXXX")
  cp -r deploy "$tmp/"
  python3 - "$tmp/deploy/settings/settings.yaml" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
for key, value in {"kubeletDir": "/SETTINGS/kubelet", "nodeLocalVG": "settings-local",
                   "pmemFsdaxVG": "settings-fsdax", "pmemSectorVG": "settings-sector",
                   "sharedVG": "settings-shared", "pmemInitLabels": '"false"'}.items():
    s, n = re.subn(rf"^(  {key}: ).*$", rf"\g<1>{value}", s, flags=re.M)
    assert n == 1, key
open(p, "w").write(s)
PY
  for model in node-local pmem shared examples; do
    if ! out=$(kubectl kustomize "$tmp/deploy/$model" 2>&1); then
      printf 'FAIL deploy/%s with changed settings: kustomize failed\n%s\n' "$model" "$out"
      fail=$((fail + 1))
    elif left=$(grep -nE '/var/lib/kubelet|\bvg0\b|vgshared|pmem-(fsdax|sector)-region0' <<<"$out" \
        || grep -n -A1 'name: VGLET_INIT_LABELS$' <<<"$out" | grep -E 'value: .?true'); then
      printf 'FAIL deploy/%s: defaults left after changing deploy/settings/settings.yaml:\n' "$model"
      printf '%s\n' "$left" | sed 's/^/     /'
      fail=$((fail + 1))
    else
      printf 'PASS deploy/%s takes every setting from deploy/settings/settings.yaml\n' "$model"
      pass=$((pass + 1))
    fi
  done
  rm -rf "$tmp"
fi

printf '\n%d passed, %d failed, %d skipped\n' "$pass" "$fail" "$skip"
((fail == 0))
