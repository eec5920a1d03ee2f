//! vglet's pods as operators install them, run for real without Kubernetes: the containers of
//! a model's DaemonSets and Deployments, read from `kubectl kustomize deploy/<model>` (image,
//! command, args, env, volume mounts with their propagation, privileges;
//! tests/e2e/node-pod/pod-bundles.py turns them into OCI runtime bundles), run from the
//! images util/build-images.sh built, by crun (Debian's OCI runtime), with the host paths a
//! kubelet gives them. csictl, on the guest's host side, calls the sockets as kubelet and
//! the sidecars would. Used by tests/node_pod.rs and tests/shared_pod.rs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sh;

/// The tag of the images in deploy/ and in the archives util/build-images.sh writes.
pub const TAG: &str = "v0.1.0";
pub const KUBELET: &str = "/var/lib/kubelet";
/// The node plugin's socket (hostPath in kubelet's plugin directory).
pub const SOCKET: &str = "/var/lib/kubelet/plugins/lvm.vglet.io/csi.sock";
/// The kubelet paths of one volume, as kubelet would pass them.
pub const STAGING: &str =
    "/var/lib/kubelet/plugins/kubernetes.io/csi/lvm.vglet.io/0123abcd/globalmount";
pub const TARGET: &str =
    "/var/lib/kubelet/pods/5e1f0c2a-pod/volumes/kubernetes.io~csi/pvc-node-pod/mount";

fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace() -> PathBuf {
    e2e_dir().join("../..").canonicalize().unwrap()
}

/// One model's rendered manifests, bundles and unpacked images (target/node-pod/<model>).
pub fn work(model: &str) -> PathBuf {
    workspace().join("target/node-pod").join(model)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Host side, before the guest boots: the images (built by util/test.sh before the tests;
/// alone, built here with debug binaries), the model's manifests as an operator applies them
/// (target/node-pod/<model>/<model>.yaml), and the images of its workloads unpacked (the
/// guest sees them through its overlay).
pub fn prepare(model: &str, workloads: &[&str]) {
    let ws = workspace();
    if !ws.join("target/images/csi-driver.oci.tar").exists() {
        run(Command::new(ws.join("util/build-images.sh")).env("VGLET_IMAGE_PROFILE", "debug"));
    }
    let _ = std::fs::remove_dir_all(work(model));
    std::fs::create_dir_all(work(model)).unwrap();
    let rendered = run(Command::new("kubectl")
        .arg("kustomize")
        .arg(ws.join("deploy").join(model)));
    std::fs::write(work(model).join(format!("{model}.yaml")), rendered).unwrap();
    for w in workloads {
        bundles(model, w, "unused", &["--unpack-only"]);
    }
}

/// pod-bundles.py for one DaemonSet or Deployment of a rendered model, on node `node`;
/// returns its JSON list of containers.
pub fn bundles(model: &str, workload: &str, node: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = run(Command::new("python3")
        .arg(e2e_dir().join("node-pod/pod-bundles.py"))
        .arg("--manifest")
        .arg(work(model).join(format!("{model}.yaml")))
        .args(["--workload", workload, "--tag", TAG, "--node", node])
        .arg("--images")
        .arg(workspace().join("target/images"))
        .arg("--out")
        .arg(work(model))
        .args(extra));
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("pod-bundles.py output")
        .as_array()
        .unwrap()
        .clone()
}

/// The containers' names, in run order.
pub fn names(pod: &[serde_json::Value]) -> Vec<&str> {
    pod.iter().map(|c| c["name"].as_str().unwrap()).collect()
}

/// The container named `name` of a pod.
pub fn container<'a>(pod: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    pod.iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod:?}"))
}

/// What kubelet and the node's boot provide: kubelet's directories, a shared root mount
/// (systemd's default) so that Bidirectional mounts propagate, and the cgroup2 hierarchy
/// (crun refuses to start without one, even when it manages no cgroups).
pub fn kubelet_host() {
    sh(&format!(
        "mkdir -p {KUBELET}/plugins_registry && mount --make-rshared / \
         && {{ mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup; }}"
    ));
}

/// Where [`persistent_host_paths`] mounts its disk.
pub const PERSIST: &str = "/persist";

/// kubelet's directory and vglet's (`/var/lib/vglet`, the state records) on the small disk
/// `dev`, bind-mounted at their real paths, as they live on a node's root filesystem: they
/// survive a reboot (a new boot on the same disks) while everything else of the guest does
/// not. `fresh`: make the filesystem first (the first boot). Then [`kubelet_host`].
pub fn persistent_host_paths(dev: &str, fresh: bool) {
    if fresh {
        sh(&format!("mkfs.ext4 -q -L persist {dev}"));
    }
    sh(&format!(
        "mkdir -p {PERSIST} && mount {dev} {PERSIST} && mkdir -p {PERSIST}/kubelet {PERSIST}/vglet \
         {KUBELET} /var/lib/vglet && mount --bind {PERSIST}/kubelet {KUBELET} \
         && mount --bind {PERSIST}/vglet /var/lib/vglet"
    ));
    kubelet_host();
}

fn crun() -> Command {
    let mut c = Command::new("crun");
    // The guest has no cgroup hierarchy for a runtime; vglet's containers set no limits
    // that matter here.
    c.arg("--cgroup-manager=disabled");
    c
}

fn id(c: &serde_json::Value) -> &str {
    c["id"].as_str().unwrap()
}

/// Runs a container to its end (an init container); returns its exit code.
pub fn run_to_end(c: &serde_json::Value) -> i32 {
    let t = Instant::now();
    let st = crun()
        .args(["run", "--bundle", c["bundle"].as_str().unwrap(), id(c)])
        .stdin(Stdio::null())
        .status()
        .expect("spawn crun");
    eprintln!(
        "container {}: exit {:?} after {:.1}s",
        id(c),
        st.code(),
        t.elapsed().as_secs_f64()
    );
    st.code().unwrap_or(-1)
}

/// Runs an init container as kubelet does in a pod with `restartPolicy: Always`: a failed
/// one is started again (after kubelet's back-off, here 1 s), the next ones wait. Returns
/// how many runs it took; panics when the `max`th fails too. `on_failure` sees each failed
/// run's exit code (for diagnostics).
pub fn run_init(c: &serde_json::Value, max: u32, mut on_failure: impl FnMut(i32)) -> u32 {
    for attempt in 1..=max {
        let code = run_to_end(c);
        if code == 0 {
            return attempt;
        }
        on_failure(code);
        let _ = crun().args(["delete", "--force", id(c)]).status();
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("init container {} failed {max} times", id(c));
}

/// A long-running container, stopped (SIGTERM, then removed) when dropped.
pub struct Running {
    id: String,
    child: Child,
}

impl Running {
    pub fn start(c: &serde_json::Value) -> Running {
        let child = crun()
            .args(["run", "--bundle", c["bundle"].as_str().unwrap(), id(c)])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn crun");
        Running {
            id: id(c).to_string(),
            child,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = crun().args(["kill", &self.id, "TERM"]).status();
        let _ = self.child.wait();
        let _ = crun().args(["delete", "--force", &self.id]).status();
    }
}

fn csictl_run(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(crate::bin("csictl"))
        .args(["--endpoint", endpoint, "--json"])
        .args(args)
        .output()
        .expect("spawn csictl")
}

/// csictl against `endpoint`; panics unless it succeeds; its JSON answer.
pub fn csictl(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let out = csictl_run(endpoint, args);
    assert!(
        out.status.success(),
        "csictl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("csictl --json output")
}

/// csictl against `endpoint` that must fail with a gRPC status; its (code name, message).
pub fn csictl_refused(endpoint: &str, args: &[&str]) -> (String, String) {
    let out = csictl_run(endpoint, args);
    assert!(
        !out.status.success(),
        "csictl {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "csictl {args:?}: no JSON error ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let text = |k: &str| v["error"][k].as_str().unwrap_or_default().to_string();
    (text("code"), text("message"))
}

/// Stages and publishes `id` as ext4 at [`STAGING`] and [`TARGET`] through the node plugin.
pub fn stage_publish(id: &str) {
    sh(&format!(
        "mkdir -p {STAGING} && mkdir -p $(dirname {TARGET})"
    ));
    csictl(
        SOCKET,
        &[
            "node",
            "stage",
            id,
            "--staging-path",
            STAGING,
            "--fs-type",
            "ext4",
        ],
    );
    csictl(
        SOCKET,
        &[
            "node",
            "publish",
            id,
            "--staging-path",
            STAGING,
            "--target-path",
            TARGET,
            "--fs-type",
            "ext4",
        ],
    );
}

pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether the plugin on `endpoint` answers Probe with ready.
pub fn probe_ready(endpoint: &str) -> bool {
    Command::new(crate::bin("csictl"))
        .args(["--endpoint", endpoint, "identity", "probe"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Neither the volume's staging path nor its publish target is a mount point (in this
/// mount namespace, the host's).
pub fn assert_unmounted(when: &str) {
    for (what, path) in [("staging", STAGING), ("target", TARGET)] {
        assert!(
            crate::mount_at(std::path::Path::new(path)).is_none(),
            "{what} still mounted {when}"
        );
    }
}

/// sha256 of the data file in the published volume.
pub fn checksum() -> String {
    sh(&format!("sha256sum {TARGET}/data | cut -d' ' -f1"))
        .trim()
        .to_string()
}
