#!/usr/bin/env python3
"""OCI runtime bundles for the vglet containers of a DaemonSet or Deployment, read from
rendered manifests.

    pod-bundles.py --manifest RENDERED.yaml --workload NAME --images DIR --tag TAG --out DIR
                   --node NODE [--env CONTAINER:NAME=VALUE ...]

RENDERED.yaml is `kubectl kustomize deploy/<model>` output; NAME is a DaemonSet's or a
Deployment's (--daemonset is the same flag). For every init container and
container of its pod template whose image is one of vglet's (ghcr.io/vglet/<image>:TAG; the
sidecars need a Kubernetes API and are not run), it writes OUT/<workload>/<container>/config.json
as a kubelet and an OCI runtime would: the image's entrypoint and env from the image config,
the container's command/args with $(VAR) expanded, its env (fieldRef spec.nodeName,
metadata.namespace, metadata.name resolved), each volumeMount from the pod's hostPath or
emptyDir volume as a bind mount with its readOnly flag and mountPropagation (Bidirectional:
rshared, HostToContainer: rslave), privileged: all capabilities, no masked paths, /sys
writable, hostNetwork: the host's network and UTS namespaces, hostIPC: its IPC namespace. --env overrides one variable of one container (what an operator edits per
cluster, e.g. the device globs), and is the only thing not taken from the manifests.

Prints a JSON list, in run order: {"name", "id", "init": bool, "bundle", "image",
"privileged"}; "id" (<workload>-<container>) names the container for the runtime, unique
when several pods run on one host (a node plugin and a controller both have a csi-driver).
Each image archive is unpacked once (umoci unpack, as root) to OUT/rootfs/<image>/; with
--unpack-only that is all it does (the host does it before the guest boots; the bundles,
and the hostPath directories of type DirectoryOrCreate, are made in the guest).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tarfile

import yaml

# Every capability of Linux 6.1 (Debian 12's kernel), as a privileged container gets them.
CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
PROPAGATION = {None: "rprivate", "None": "rprivate", "HostToContainer": "rslave",
               "Bidirectional": "rshared"}
IMAGE = re.compile(r"^ghcr\.io/vglet/([a-z0-9-]+):(.+)$")


def die(msg):
    print(f"pod-bundles: {msg}", file=sys.stderr)
    sys.exit(1)


def expand(text, env):
    # Kubernetes' $(VAR) expansion: defined variables only, $$ escapes.
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def unpack(images, image, tag, out):
    rootfs_dir = os.path.join(out, "rootfs", image)
    if not os.path.isdir(os.path.join(rootfs_dir, "rootfs")):
        layout = os.path.join(out, "layouts", image)
        os.makedirs(layout, exist_ok=True)
        with tarfile.open(os.path.join(images, f"{image}.oci.tar")) as t:
            t.extractall(layout)
        subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", rootfs_dir], check=True,
                       stdout=subprocess.DEVNULL)
    with open(os.path.join(rootfs_dir, "config.json")) as f:
        return os.path.join(rootfs_dir, "rootfs"), json.load(f)


def resolve_env(container, image_env, node, namespace, pod):
    env = dict(e.split("=", 1) for e in image_env)
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = expand(str(e["value"]), env)
        elif "valueFrom" in e:
            ref = (e["valueFrom"].get("fieldRef") or {}).get("fieldPath")
            value = {"spec.nodeName": node, "metadata.namespace": namespace,
                     "metadata.name": pod}.get(ref)
            if value is None:
                die(f"{container['name']}: env {e['name']}: unsupported valueFrom {e['valueFrom']}")
            env[e["name"]] = value
    return env


def mounts_for(container, volumes, out, ds):
    mounts = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"])
        if vol is None:
            die(f"{container['name']}: volumeMount {vm['name']} names no volume")
        if "hostPath" in vol:
            source = vol["hostPath"]["path"]
            kind = vol["hostPath"].get("type", "")
            if kind == "DirectoryOrCreate":
                os.makedirs(source, exist_ok=True)
            elif kind == "Directory" and not os.path.isdir(source):
                die(f"{container['name']}: hostPath {source} (type Directory) does not exist")
            elif kind == "File" and not os.path.isfile(source):
                die(f"{container['name']}: hostPath {source} (type File) does not exist")
        elif "emptyDir" in vol:
            source = os.path.join(out, ds, "emptydir", vm["name"])
            os.makedirs(source, exist_ok=True)
        else:
            die(f"{container['name']}: volume {vm['name']}: only hostPath and emptyDir are supported")
        opts = ["rbind", PROPAGATION[vm.get("mountPropagation")]]
        opts.append("ro" if vm.get("readOnly") else "rw")
        mounts.append({"destination": vm["mountPath"], "type": "bind", "source": source,
                       "options": opts})
    return mounts


def bundle(container, init, base, rootfs, image_cfg, env, mounts, host_network, host_ipc):
    spec = json.loads(json.dumps(image_cfg))  # the image's runtime spec from umoci
    proc = spec["process"]
    entry = container.get("command") or proc["args"][:1]
    args = container.get("args") or []
    proc["args"] = [expand(str(a), env) for a in list(entry) + list(args)]
    proc["env"] = [f"{k}={v}" for k, v in env.items()]
    proc["terminal"] = False
    proc["cwd"] = container.get("workingDir") or proc.get("cwd") or "/"
    privileged = (container.get("securityContext") or {}).get("privileged", False)
    if privileged:
        proc["capabilities"] = {k: list(CAPS) for k in ("bounding", "effective", "permitted")}
        proc["noNewPrivileges"] = False
        spec["linux"].pop("maskedPaths", None)
        spec["linux"].pop("readonlyPaths", None)
        for m in spec["mounts"]:
            if m["destination"] == "/sys":
                m["options"] = [o for o in m.get("options", []) if o != "ro"]
    # No cgroups (the runtime runs with --cgroup-manager=disabled): no resources section.
    spec["linux"].pop("resources", None)
    spec["linux"].pop("cgroupsPath", None)
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys/fs/cgroup"] + mounts
    # As containerd does for CRI: with a Bidirectional mount the container's root is rshared,
    # with only HostToContainer ones rslave. (An rslave root turns the later rshared bind into
    # a new peer group of its own: mounts made inside then never reach the host. Measured.)
    opts = [o for m in mounts for o in m.get("options", [])]
    if "rshared" in opts:
        spec["linux"]["rootfsPropagation"] = "rshared"
    elif "rslave" in opts:
        spec["linux"]["rootfsPropagation"] = "rslave"
    spec["root"] = {"path": rootfs, "readonly": False}
    if host_network:
        # hostNetwork: true: kubelet gives the pod the host's network and UTS namespaces
        # (and so the host's abstract unix sockets, which lvmlockctl needs).
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] not in ("network", "uts")]
        spec.pop("hostname", None)
    else:
        spec["hostname"] = container["name"]
    if host_ipc:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] != "ipc"]
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/dev/mqueue"]
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "config.json"), "w") as f:
        json.dump(spec, f, indent=1)
    return {"name": container["name"], "init": init, "bundle": base, "privileged": privileged}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--workload", "--daemonset", dest="workload", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--unpack-only", action="store_true",
                    help="only unpack the images (on the host, before the guest boots)")
    a = ap.parse_args()

    with open(a.manifest) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    ds = [d for d in docs if d.get("kind") in ("DaemonSet", "Deployment")
          and d["metadata"]["name"] == a.workload]
    if len(ds) != 1:
        die(f"{a.manifest}: {len(ds)} DaemonSets or Deployments named {a.workload}")
    ds = ds[0]
    namespace = ds["metadata"].get("namespace", "default")
    pod = f"{a.workload}-{a.node}"
    spec = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    overrides = {}
    for o in a.env:
        cname, kv = o.split(":", 1)
        k, v = kv.split("=", 1)
        overrides.setdefault(cname, {})[k] = v
    used = set()

    out = []
    for init, containers in ((True, spec.get("initContainers") or []), (False, spec["containers"])):
        for c in containers:
            m = IMAGE.match(c["image"])
            if not m:
                continue  # a Kubernetes sidecar: needs the API server
            image, tag = m.groups()
            if tag != a.tag:
                die(f"{c['name']}: image tag {tag}, the archives are {a.tag}")
            rootfs, cfg = unpack(a.images, image, a.tag, a.out)
            if a.unpack_only:
                continue
            env = resolve_env(c, cfg["process"].get("env") or [], a.node, namespace, pod)
            for k, v in overrides.get(c["name"], {}).items():
                if k not in env:
                    die(f"--env {c['name']}:{k}: the manifest does not set {k} for {c['name']}")
                env[k] = v
                used.add(c["name"])
            mounts = mounts_for(c, volumes, a.out, a.workload)
            entry = bundle(c, init, os.path.join(a.out, a.workload, c["name"]), rootfs, cfg, env,
                           mounts, spec.get("hostNetwork", False), spec.get("hostIPC", False))
            entry["image"] = image
            entry["id"] = f"{a.workload}-{c['name']}"
            out.append(entry)
    unknown = set(overrides) - used
    if unknown:
        die(f"--env for containers the {ds['kind']} does not run: {sorted(unknown)}")
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
