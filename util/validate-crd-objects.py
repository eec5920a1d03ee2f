#!/usr/bin/env python3
"""Validate the custom-resource objects under deploy/ that kubernetes-validate has no schema for.

    validate-crd-objects.py FILE...

Used by util/validate-manifests.sh, run with kubernetes-validate's venv python (PyYAML).
Kinds: snapshot.storage.k8s.io/v1 VolumeSnapshotClass, VolumeSnapshot;
monitoring.coreos.com/v1 PodMonitor, PrometheusRule. Each is checked against the required
fields and allowed keys of its CRD (external-snapshotter v8, Prometheus Operator v1),
strictly: an unknown key is an error, as kubernetes-validate --strict does for built-ins.
Every vglet_* metric a rule or dashboard (*.json) names must be one that
bins/csi-driver/src/metrics.rs registers. Prints "PASS/FAIL file (...)"; exits 1 on a failure.
"""
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
METRICS_RS = ROOT / "bins/csi-driver/src/metrics.rs"
META_KEYS = {"name", "namespace", "labels", "annotations"}


def registered_metrics():
    text = METRICS_RS.read_text()
    return set(re.findall(r'registry\.register\(\s*"(vglet_[a-z_]+)"', text))


def unknown_metrics(text, known):
    bad = []
    for m in sorted(set(re.findall(r"\bvglet_[a-z_]+", text))):
        base = re.sub(r"_(total|bucket|count|sum)$", "", m)
        if m not in known and base not in known:
            bad.append(m)
    return bad


def keys(obj, allowed, where, errs, required=()):
    if not isinstance(obj, dict):
        errs.append(f"{where}: not a mapping")
        return
    for k in obj:
        if k not in allowed:
            errs.append(f"{where}.{k}: unknown field")
    for k in required:
        if k not in obj:
            errs.append(f"{where}.{k}: required")


def check_volumesnapshotclass(o, errs):
    keys(o, {"apiVersion", "kind", "metadata", "driver", "deletionPolicy", "parameters"}, "", errs,
         ("driver", "deletionPolicy"))
    if o.get("deletionPolicy") not in ("Delete", "Retain"):
        errs.append(".deletionPolicy: must be Delete or Retain")
    for k, v in (o.get("parameters") or {}).items():
        if not isinstance(v, str):
            errs.append(f".parameters.{k}: must be a string")


def check_volumesnapshot(o, errs):
    keys(o, {"apiVersion", "kind", "metadata", "spec"}, "", errs, ("spec",))
    spec = o.get("spec") or {}
    keys(spec, {"source", "volumeSnapshotClassName"}, ".spec", errs, ("source",))
    src = spec.get("source") or {}
    keys(src, {"persistentVolumeClaimName", "volumeSnapshotContentName"}, ".spec.source", errs)
    if len(src) != 1:
        errs.append(".spec.source: exactly one of persistentVolumeClaimName, volumeSnapshotContentName")


def check_podmonitor(o, errs):
    keys(o, {"apiVersion", "kind", "metadata", "spec"}, "", errs, ("spec",))
    spec = o.get("spec") or {}
    keys(spec, {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels",
                "sampleLimit"}, ".spec", errs, ("selector", "podMetricsEndpoints"))
    for i, ep in enumerate(spec.get("podMetricsEndpoints") or []):
        keys(ep, {"port", "portNumber", "path", "interval", "scrapeTimeout", "scheme", "relabelings",
                  "metricRelabelings", "honorLabels"}, f".spec.podMetricsEndpoints[{i}]", errs)


def check_prometheusrule(o, errs, known):
    keys(o, {"apiVersion", "kind", "metadata", "spec"}, "", errs, ("spec",))
    spec = o.get("spec") or {}
    keys(spec, {"groups"}, ".spec", errs, ("groups",))
    for gi, g in enumerate(spec.get("groups") or []):
        keys(g, {"name", "interval", "rules", "labels"}, f".spec.groups[{gi}]", errs, ("name", "rules"))
        for ri, r in enumerate(g.get("rules") or []):
            w = f".spec.groups[{gi}].rules[{ri}]"
            keys(r, {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}, w, errs,
                 ("expr",))
            if ("alert" in r) == ("record" in r):
                errs.append(f"{w}: exactly one of alert, record")
            bad = unknown_metrics(str(r.get("expr", "")), known)
            if bad:
                errs.append(f"{w}.expr: metrics vglet does not export: {', '.join(bad)}")


KINDS = {
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"): check_volumesnapshotclass,
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshot"): check_volumesnapshot,
    ("monitoring.coreos.com/v1", "PodMonitor"): check_podmonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): check_prometheusrule,
}


def check_file(path, known):
    errs = []
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except ValueError as e:
            return [f"not JSON: {e}"], 0
        bad = unknown_metrics(path.read_text(), known)
        if bad:
            errs.append(f"metrics vglet does not export: {', '.join(bad)}")
        if not isinstance(doc, dict) or not doc.get("panels"):
            errs.append("not a Grafana dashboard (no panels)")
        return errs, 1
    n = 0
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        n += 1
        kind = (doc.get("apiVersion"), doc.get("kind"))
        check = KINDS.get(kind)
        if check is None:
            errs.append(f"object {n}: {kind[0]} {kind[1]} is not a kind this checker knows")
            continue
        meta = doc.get("metadata") or {}
        keys(meta, META_KEYS, f"{kind[1]}.metadata", errs, ("name",))
        sub = []
        if check is check_prometheusrule:
            check(doc, sub, known)
        else:
            check(doc, sub)
        errs += [f"{kind[1]} {meta.get('name')}{e}" for e in sub]
    if n == 0:
        errs.append("no object in this file")
    return errs, n


def main(argv):
    known = registered_metrics()
    if not known:
        print(f"validate-crd-objects: no metrics found in {METRICS_RS}", file=sys.stderr)
        return 1
    failed = 0
    for arg in argv:
        path = pathlib.Path(arg)
        errs, n = check_file(path, known)
        if errs:
            failed += 1
            print(f"FAIL {arg}")
            for e in errs:
                print(f"     {e}")
        else:
            print(f"PASS {arg} ({n} custom object{'s' if n != 1 else ''}, CRD check)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
