//! Every example in csictl's `--help` (all subcommands) is run as written, in a guest with a
//! real VG and csi-driver serving it at the default socket, and each must end as the script
//! below says. The examples are read from the built binary's help, so an example added
//! without an entry here fails `csictl_help_examples_are_all_scripted` on the host at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vglet_e2e::examples::{help_examples, help_subcommands};
use vglet_e2e::{DriverProcess, bin, in_guest, lvs, mount_at, run_guest_test, sh};

/// One step: an example exactly as `--help` prints it (continuation lines joined), or a
/// command of the test's own that puts the node into the state the next example expects.
enum Step {
    /// (example, expected exit code, text its output must contain)
    Example(&'static str, i32, &'static str),
    Glue(&'static str),
}
use Step::{Example, Glue};

/// Examples that cannot run in the guest, with the reason.
const NOT_RUN: &[(&str, &str)] = &[(
    "kubectl get pv",
    "needs a Kubernetes cluster; its csictl half runs below with --known-volumes known.txt",
)];

const STAGE: &str = "/var/lib/kubelet/staging/pvc-1";
const T1: &str = "/var/lib/kubelet/pods/p1/volumes/pvc-1";
const T2: &str = "/var/lib/kubelet/pods/p2/volumes/pvc-1";

fn script() -> Vec<Step> {
    vec![
        Example("csictl identity info", 0, "lvm.vglet.io"),
        Example(
            "csictl identity info --json | jq -r .name",
            0,
            "lvm.vglet.io",
        ),
        Example("until csictl identity probe; do sleep 1; done", 0, ""),
        Example(
            "csictl --endpoint /var/lib/kubelet/plugins/lvm.vglet.io/csi.sock node info --json",
            0,
            "n1",
        ),
        Example(
            "csictl controller create pvc-1 --size 1Gi --fs-type ext4 --param volumeGroup=vg0",
            0,
            "vg0/csi-pvc-1",
        ),
        Example(
            "csictl controller create pvc-1 --size 1Gi",
            0,
            "vg0/csi-pvc-1",
        ),
        Example(
            "csictl controller create pvc-2 --size 10G --limit 12G --fs-type xfs --mount-flag noatime",
            0,
            "vg0/csi-pvc-2",
        ),
        Example(
            "csictl controller create raw-1 --size 512Mi --block --mode single-node-single-writer",
            0,
            "vg0/csi-raw-1",
        ),
        Example(
            "csictl controller create pvc-3 --size 1Gi --param volumeGroup=vg0 --requisite-topology topology.vglet.io/node=n1",
            0,
            "vg0/csi-pvc-3",
        ),
        Example(
            "csictl controller get vg0/csi-nosuch; echo \"exit $?\"   # 15 (NOT_FOUND) for an unknown volume",
            0,
            "exit 15",
        ),
        Example(
            "csictl controller get vg0/csi-pvc-1 --json",
            0,
            "vg0/csi-pvc-1",
        ),
        Example("csictl controller list", 0, "vg0/csi-raw-1"),
        Example(
            "csictl controller list --max-entries 10",
            0,
            "vg0/csi-pvc-3",
        ),
        Example(
            "csictl controller list --max-entries 10 --all --json",
            0,
            "vg0/csi-pvc-2",
        ),
        Glue("echo vg0/csi-pvc-1 > known.txt"),
        Example(
            "csictl --json controller orphans --known-volumes known.txt",
            0,
            "vg0/csi-pvc-2",
        ),
        Example("csictl controller capacity", 0, ""),
        Example(
            "csictl controller capacity --param volumeGroup=vg0 --topology topology.vglet.io/node=n1",
            0,
            "",
        ),
        Example("csictl controller expand vg0/csi-pvc-1 --size 2Gi", 0, ""),
        Example(
            "csictl controller expand vg0/csi-raw-1 --size 1Gi --block",
            0,
            "",
        ),
        Example(
            "csictl controller validate vg0/csi-pvc-1 --fs-type ext4",
            0,
            "",
        ),
        Example(
            "csictl controller validate vg0/csi-raw-1 --block --mode multi-node-multi-writer",
            5,
            "",
        ),
        Example(
            "csictl node stage vg0/csi-pvc-1 --staging-path /var/lib/kubelet/staging/pvc-1 --fs-type ext4",
            0,
            "",
        ),
        Example(
            "csictl node stage vg0/csi-raw-1 --staging-path /tmp/stage-raw --block",
            0,
            "",
        ),
        Example(
            "csictl node publish vg0/csi-pvc-1 --staging-path /var/lib/kubelet/staging/pvc-1 --target-path /var/lib/kubelet/pods/p1/volumes/pvc-1 --fs-type ext4",
            0,
            "",
        ),
        Example(
            "csictl node publish vg0/csi-pvc-1 --staging-path /var/lib/kubelet/staging/pvc-1 --target-path /var/lib/kubelet/pods/p2/volumes/pvc-1 --fs-type ext4 --readonly",
            0,
            "",
        ),
        Glue("echo data > /var/lib/kubelet/pods/p1/volumes/pvc-1/f && sync"),
        Example(
            "csictl node expand vg0/csi-pvc-1 --volume-path /var/lib/kubelet/pods/p1/volumes/pvc-1 --size 2Gi --staging-path /var/lib/kubelet/staging/pvc-1",
            0,
            "",
        ),
        Example(
            "csictl node stats vg0/csi-pvc-1 --volume-path /var/lib/kubelet/pods/p1/volumes/pvc-1",
            0,
            "",
        ),
        Example(
            "csictl node unpublish vg0/csi-pvc-1 --target-path /var/lib/kubelet/pods/p1/volumes/pvc-1",
            0,
            "",
        ),
        Glue(
            "csictl node unpublish vg0/csi-pvc-1 --target-path /var/lib/kubelet/pods/p2/volumes/pvc-1",
        ),
        Example(
            "csictl node unstage vg0/csi-pvc-1 --staging-path /var/lib/kubelet/staging/pvc-1",
            0,
            "",
        ),
        Example("csictl controller delete vg0/csi-pvc-1", 0, ""),
    ]
}

/// `csictl <path> --help` of the built binary.
fn help(csictl: &Path, path: &[String]) -> String {
    let out = Command::new(csictl)
        .args(path)
        .arg("--help")
        .output()
        .expect("csictl --help");
    assert!(out.status.success(), "csictl {path:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Every example of every subcommand's help, in help order (vglet_e2e::examples reads
/// them: continuation lines joined, comment lines dropped).
fn examples(csictl: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let text = help(csictl, &path);
        for name in help_subcommands(&text) {
            let mut p = path.clone();
            p.push(name);
            todo.push(p);
        }
        found.extend(help_examples(&text));
    }
    found
}

fn scripted() -> Vec<String> {
    script()
        .iter()
        .filter_map(|s| match s {
            Example(e, ..) => Some(e.split_whitespace().collect::<Vec<_>>().join(" ")),
            Glue(_) => None,
        })
        .collect()
}

fn csictl_bin() -> PathBuf {
    bin("csictl")
}

#[test]
fn csictl_help_examples_are_all_scripted() {
    if in_guest() {
        return;
    }
    let mut found = examples(&csictl_bin());
    found.retain(|e| !NOT_RUN.iter().any(|(p, _)| e.starts_with(p)));
    let mut want = scripted();
    found.sort();
    want.sort();
    let missing: Vec<_> = found.iter().filter(|e| !want.contains(e)).collect();
    let stale: Vec<_> = want.iter().filter(|e| !found.contains(e)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "examples in --help without a step here: {missing:#?}\nsteps whose example is no longer in --help: {stale:#?}"
    );
    // The one example that cannot run here is still there to be excluded.
    assert!(
        examples(&csictl_bin())
            .iter()
            .any(|e| e.starts_with(NOT_RUN[0].0))
    );
}

#[test]
fn csictl_help_examples_run_in_guest() {
    if in_guest() {
        return;
    }
    let vm = vglet_vmh::Vm::new("e2e-examples")
        .mem_mib(1536)
        .fresh_disk("d1", 16 << 30)
        .modules(["dm_mod", "ext4", "xfs"])
        .timeout(Duration::from_secs(900));
    run_guest_test("guest_csictl_help_examples", vm);
}

#[test]
#[ignore = "runs inside a guest through csictl_help_examples_run_in_guest"]
fn guest_csictl_help_examples() {
    assert!(in_guest(), "run through csictl_help_examples_run_in_guest");
    sh("pvcreate -q /dev/vda && vgcreate -q vg0 /dev/vda");
    sh(&format!(
        "mkdir -p /run/vglet /var/lib/kubelet/plugins/lvm.vglet.io /var/lib/kubelet/staging \
         {} {}",
        Path::new(T1).parent().unwrap().display(),
        Path::new(T2).parent().unwrap().display()
    ));
    let sock = Path::new("/run/vglet/csi.sock");
    let _driver = DriverProcess::start(
        &["--mode", "all", "--node-id", "n1", "--volume-group", "vg0"],
        sock,
    );
    sh("ln -sf /run/vglet/csi.sock /var/lib/kubelet/plugins/lvm.vglet.io/csi.sock");
    let work = Path::new("/tmp/csictl-examples");
    std::fs::create_dir_all(work).unwrap();
    // The examples say `csictl`: the built one, first on PATH.
    let path = format!(
        "{}:{}",
        csictl_bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failures = Vec::new();
    for step in script() {
        let (cmd, want_code, want_text) = match step {
            Example(e, code, text) => (e, Some(code), text),
            Glue(g) => (g, None, ""),
        };
        let out = Command::new("bash")
            .args(["-c", cmd])
            .current_dir(work)
            .env("PATH", &path)
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("$ {cmd}\n{stdout}{stderr}-> exit {code}");
        let want_code = want_code.unwrap_or(0);
        if code != want_code || !stdout.contains(want_text) {
            failures.push(format!(
                "{cmd}: exit {code} (want {want_code}), output {stdout:?} (want {want_text:?})"
            ));
        }
    }
    // Outcomes from the kernel's and lvm's side, not only csictl's exit codes.
    let names: Vec<String> = lvs("vg0").into_iter().map(|(n, ..)| n).collect();
    for (name, present) in [
        ("csi-pvc-1", false),
        ("csi-pvc-2", true),
        ("csi-raw-1", true),
        ("csi-pvc-3", true),
    ] {
        if names.contains(&name.to_string()) != present {
            failures.push(format!("LV {name} present={} in {names:?}", !present));
        }
    }
    for p in [STAGE, T1, T2] {
        if mount_at(Path::new(p)).is_some() {
            failures.push(format!("{p} still mounted"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
