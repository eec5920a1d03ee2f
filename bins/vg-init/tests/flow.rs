//! The whole flow (read, plan, act, read again) against a scripted lvm: which commands run,
//! in which order, and what the result says. Real lvm is exercised in the guest
//! (tests/e2e/tests/host_prep.rs).

use std::sync::{Arc, Mutex};

use clap::Parser;
use vg_init::state::Host;
use vg_init::{Cli, VgInitError, run_with};
use vglet_lvm::Lvm;
use vglet_runner::{FakeRunner, Reply};

#[derive(Parser)]
struct T {
    #[command(flatten)]
    cli: Cli,
}

fn cli(args: &[&str]) -> Cli {
    T::try_parse_from(std::iter::once("vg-init").chain(args.iter().copied()))
        .unwrap()
        .cli
}

/// by-id links resolve to kernel names, as on a real host.
struct FakeHost;

impl Host for FakeHost {
    fn canonical(&self, path: &str) -> Result<String, String> {
        match path.strip_prefix("/dev/disk/by-id/virtio-") {
            Some("d1") => Ok("/dev/vda".into()),
            Some("d2") => Ok("/dev/vdb".into()),
            Some(_) => Err("No such file or directory".into()),
            None => Ok(path.to_string()),
        }
    }
    fn is_block(&self, _: &str) -> bool {
        true
    }
    fn holders(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
}

fn report(vg_pvs: &[&str], tags: &str) -> String {
    if vg_pvs.is_empty() {
        return r#"{"report": []}"#.into();
    }
    let pvs: Vec<String> = vg_pvs
        .iter()
        .map(|p| format!(r#"{{"pv_name":"{p}","vg_name":"vg0"}}"#))
        .collect();
    format!(
        r#"{{"report": [{{"vg": [{{"vg_name":"vg0","vg_tags":"{tags}","pv_count":"{}"}}], "pv": [{}]}}]}}"#,
        vg_pvs.len(),
        pvs.join(",")
    )
}

/// An lvm whose VG appears once vgcreate ran.
fn scripted() -> (FakeRunner, Lvm) {
    let created = Arc::new(Mutex::new(false));
    let runner = FakeRunner::with(move |c| {
        let args = c.arg_strings();
        match (c.program_name().as_str(), args[0].as_str()) {
            ("wipefs", _) => Reply::ok(r#"{"signatures": []}"#),
            ("lvm", "fullreport") if *created.lock().unwrap() => Reply::ok(report(
                &["/dev/vda", "/dev/vdb"],
                &format!("vglet.managed=true,vglet.vg-init={}", vglet_common::VERSION),
            )),
            ("lvm", "fullreport") => Reply::ok(report(&[], "")),
            ("lvm", "vgcreate") => {
                *created.lock().unwrap() = true;
                Reply::ok("")
            }
            _ => Reply::ok(""),
        }
    });
    let lvm = Lvm::with_binary(Arc::new(runner.clone()), "/sbin/lvm".into());
    (runner, lvm)
}

fn full() -> String {
    format!(
        "lvm fullreport --reportformat json --units b --nosuffix --configreport vg -o {}",
        vglet_lvm::report::VG_FIELDS.join(",")
    )
}

#[tokio::test]
async fn creates_then_does_nothing() {
    let (runner, lvm) = scripted();
    let c = cli(&[
        "--vg",
        "vg0",
        "--device",
        "/dev/disk/by-id/virtio-d1",
        "--device",
        "/dev/disk/by-id/virtio-d2",
    ]);
    let (result, code) = run_with(&c, None, &lvm, &runner, &FakeHost).await.unwrap();
    assert_eq!(code, 0);
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json["action"], "created");
    assert_eq!(json["pvs"], serde_json::json!(["/dev/vda", "/dev/vdb"]));
    let lines: Vec<String> = runner
        .call_lines()
        .into_iter()
        .filter(|l| !l.starts_with(&full()))
        .collect();
    let version = vglet_common::VERSION;
    assert_eq!(
        lines,
        vec![
            "wipefs --no-act --json /dev/disk/by-id/virtio-d1".to_string(),
            "wipefs --no-act --json /dev/disk/by-id/virtio-d2".to_string(),
            "lvm pvcreate --metadatasize 16384k /dev/disk/by-id/virtio-d1 /dev/disk/by-id/virtio-d2".to_string(),
            format!("lvm vgcreate --addtag vglet.managed=true --addtag vglet.vg-init={version} vg0 /dev/disk/by-id/virtio-d1 /dev/disk/by-id/virtio-d2"),
        ]
    );

    // Second run: the by-id paths are recognised as the VG's PVs; only reports run.
    let before = runner.calls().len();
    let (result, code) = run_with(&c, None, &lvm, &runner, &FakeHost).await.unwrap();
    assert_eq!(code, 4);
    assert_eq!(
        serde_json::to_value(&result).unwrap()["action"],
        "unchanged"
    );
    let after: Vec<String> = runner.call_lines()[before..].to_vec();
    assert!(after.iter().all(|l| l.starts_with(&full())), "{after:?}");
}

#[tokio::test]
async fn dry_run_and_missing_devices_change_nothing() {
    let (runner, lvm) = scripted();
    let c = cli(&[
        "--vg",
        "vg0",
        "--device",
        "/dev/disk/by-id/virtio-d1",
        "--dry-run",
    ]);
    let (result, code) = run_with(&c, None, &lvm, &runner, &FakeHost).await.unwrap();
    assert_eq!(code, 0);
    assert!(result.dry_run);
    assert_eq!(result.plan.len(), 2);
    // It says what it would do, with the exact argv of each command, and runs none of them.
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json["action"], "would create");
    let argvs = result
        .would_run
        .as_ref()
        .expect("a dry run lists its commands");
    let lines: Vec<String> = argvs.iter().map(|a| a.join(" ")).collect();
    assert_eq!(
        lines,
        [
            "/sbin/lvm pvcreate --metadatasize 16384k /dev/disk/by-id/virtio-d1".to_string(),
            format!(
                "/sbin/lvm vgcreate --addtag vglet.managed=true --addtag vglet.vg-init={} vg0 \
                 /dev/disk/by-id/virtio-d1",
                vglet_common::VERSION
            ),
        ]
    );
    assert!(
        runner
            .call_lines()
            .iter()
            .all(|l| l.starts_with(&full()) || l.starts_with("wipefs --no-act")),
        "{:?}",
        runner.call_lines()
    );

    let c = cli(&["--vg", "vg0", "--device", "/dev/disk/by-id/virtio-gone"]);
    let e = run_with(&c, None, &lvm, &runner, &FakeHost)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, VgInitError::Failed(m) if m.contains("not found")),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 1);
}
