//! Waiting for volume groups that never appear: one log line per change of state (not one
//! lvm command line per poll), and a report that fails; a state directory that does not exist
//! is refused unless --create-state-dir.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use reviver::{Args, Reviver};
use tracing::instrument::WithSubscriber;
use vglet_lvm::Lvm;
use vglet_mount::{Filesystems, RecordingMounter};
use vglet_runner::{FakeRunner, Reply};
use vglet_state::StateStore;

#[tokio::test]
async fn a_vg_that_never_appears_fails_the_pass_and_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    // lvm as it answers for a VG that is not there (a fullreport per poll).
    let runner = FakeRunner::with(|_| {
        Reply::fail(
            5,
            "  Volume group \"vg9\" not found\n  Cannot process volume group vg9\n",
        )
    });
    let r: Arc<dyn vglet_runner::Runner> = Arc::new(runner.clone());
    let reviver = Reviver {
        lvm: Lvm::with_binary(r.clone(), "/sbin/lvm".into()),
        fs: Filesystems::new(r, vglet_runner::Programs::all_in("/sbin")),
        mounter: Arc::new(RecordingMounter::new()),
        store: StateStore::open(dir.path()).unwrap(),
        lock_wait: Duration::from_millis(200),
        host: Arc::new(vglet_volume::FakeHost::new()),
    };
    let logs = vglet_common::logging::LogCapture::default();
    let subscriber = logs.subscriber(tracing::Level::INFO);
    // 2.5 s: the wait polls about once a second, so the same "missing" state is seen 3 times.
    let report = reviver
        .pass(&["vg9".to_string()], Duration::from_millis(2500), false)
        .with_subscriber(subscriber)
        .await
        .unwrap();
    let polls = runner.calls().len();
    assert!(polls >= 2, "the wait polled {polls} time(s)");
    let logs = logs.text();
    eprintln!("{logs}");
    assert_eq!(
        logs.matches("waiting for volume groups").count(),
        1,
        "one line per change of state, not per poll:\n{logs}"
    );
    assert_eq!(
        logs.matches("volume groups did not appear").count(),
        1,
        "{logs}"
    );
    assert!(
        !logs.contains("fullreport") && !logs.contains("command failed"),
        "no lvm command line while waiting:\n{logs}"
    );
    assert!(
        logs.contains("missing=vg9"),
        "readable field values:\n{logs}"
    );
    assert!(
        report.any_failed(),
        "an awaited VG that never appeared is a failure"
    );
    assert_eq!(report.missing_vgs.len(), 1);
    assert!(
        report.missing_vgs[0].contains("vg9") && report.missing_vgs[0].contains("waited 2500ms"),
        "{:?}",
        report.missing_vgs
    );
    assert!(
        report.text().contains("FAILED: volume group vg9"),
        "{}",
        report.text()
    );
}

#[test]
fn a_missing_state_dir_is_refused_unless_told_to_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("stat");
    let args = Args::try_parse_from(["reviver", "--state-dir", typo.to_str().unwrap()]).unwrap();
    let err = reviver::build(&args).unwrap_err().to_string();
    assert!(
        err.contains("does not exist") && err.contains("--create-state-dir"),
        "{err}"
    );
    assert!(!typo.exists(), "nothing created");
    let args = Args::try_parse_from([
        "reviver",
        "--state-dir",
        typo.to_str().unwrap(),
        "--create-state-dir",
    ])
    .unwrap();
    reviver::build(&args).unwrap();
    assert!(typo.is_dir());
}
