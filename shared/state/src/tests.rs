use std::path::PathBuf;

use super::*;

fn record(id: &str) -> Record {
    let (vg, lv) = id.split_once('/').unwrap();
    Record {
        version: RECORD_VERSION,
        volume_id: id.into(),
        vg: vg.into(),
        lv: lv.into(),
        lv_uuid: "u-1".into(),
        driver: "lvm.vglet.io".into(),
        access: Access::Mount {
            fs_type: "ext4".into(),
            mount_flags: vec!["noatime".into()],
        },
        read_only: false,
        activation: Activation::Local,
        staging_path: PathBuf::from(format!("/var/lib/kubelet/staging/{lv}")),
        targets: vec![],
        crypt_mapping: None,
    }
}

#[test]
fn file_names_round_trip_and_stay_inside_the_directory() {
    for id in ["vg0/csi-a", "vg/lv", ".x/..", "a b/c%d", "ü/λ", "-x", "x.y"] {
        let name = encode_file_name(id).unwrap();
        assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
        assert_eq!(decode_file_name(&name).as_deref(), Some(id), "{name}");
    }
    assert_eq!(encode_file_name("vg0/csi-a").unwrap(), "vg0%2Fcsi-a");
    assert!(encode_file_name("").is_none());
    assert!(encode_file_name(&"/".repeat(100)).is_none());
    for bad in ["a/b", "%2f", "%2", "%41", ".x", "%zz"] {
        assert!(decode_file_name(bad).is_none(), "{bad}");
    }
}

#[test]
fn put_get_list_remove() {
    let d = tempfile::tempdir().unwrap();
    let s = StateStore::open(d.path().join("state")).unwrap();
    assert_eq!(s.get("vg0/a").unwrap(), None);
    let a = record("vg0/a");
    let mut b = record("vg0/b");
    b.access = Access::Block;
    b.activation = Activation::Shared;
    s.put(&b).unwrap();
    s.put(&a).unwrap();
    assert_eq!(s.get("vg0/a").unwrap(), Some(a.clone()));
    let (good, bad) = s.list().unwrap();
    assert_eq!(good, vec![a.clone(), b.clone()]);
    assert!(bad.is_empty());
    // No temp file is left behind.
    let names: Vec<String> = std::fs::read_dir(s.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".locks"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    s.remove("vg0/a").unwrap();
    s.remove("vg0/a").unwrap();
    assert_eq!(s.list().unwrap().0, vec![b]);
}

#[test]
fn targets_are_added_and_removed_within_the_record() {
    let d = tempfile::tempdir().unwrap();
    let s = StateStore::open(d.path()).unwrap();
    let t = |p: &str, ro| Target {
        path: p.into(),
        read_only: ro,
    };
    assert!(!s.add_target("vg0/a", t("/t/1", false)).unwrap());
    s.put(&record("vg0/a")).unwrap();
    assert!(s.add_target("vg0/a", t("/t/1", false)).unwrap());
    assert!(s.add_target("vg0/a", t("/t/2", true)).unwrap());
    assert!(s.add_target("vg0/a", t("/t/1", true)).unwrap());
    let r = s.get("vg0/a").unwrap().unwrap();
    assert_eq!(r.targets, vec![t("/t/1", true), t("/t/2", true)]);
    s.remove_target("vg0/a", Path::new("/t/1")).unwrap();
    s.remove_target("vg0/a", Path::new("/t/9")).unwrap();
    s.remove_target("vg0/none", Path::new("/t/1")).unwrap();
    assert_eq!(
        s.get("vg0/a").unwrap().unwrap().targets,
        vec![t("/t/2", true)]
    );
}

#[test]
fn damaged_records_are_reported_and_skipped() {
    let d = tempfile::tempdir().unwrap();
    let s = StateStore::open(d.path()).unwrap();
    s.put(&record("vg0/good")).unwrap();
    let full = std::fs::read(s.path_of("vg0/good").unwrap()).unwrap();
    let write = |id: &str, bytes: &[u8]| std::fs::write(s.path_of(id).unwrap(), bytes).unwrap();
    write("vg0/truncated", &full[..full.len() / 2]);
    write("vg0/empty", b"");
    write("vg0/garbage", b"\x00\xff not json");
    write(
        "vg0/future",
        br#"{"version": 99, "volume_id": "vg0/future"}"#,
    );
    write("vg0/noversion", br#"{"volume_id": "vg0/noversion"}"#);
    // A valid record under another volume's file name.
    write("vg0/renamed", &full);
    let mut escape = record("vg0/escape");
    escape.staging_path = "/var/lib/../../etc".into();
    write("vg0/escape", &serde_json::to_vec(&escape).unwrap());
    std::fs::write(s.dir().join("not-encoded%2f.json"), &full).unwrap();
    std::fs::create_dir(s.path_of("vg0/dir").unwrap()).unwrap();
    std::fs::write(s.dir().join("README"), b"ignored").unwrap();
    std::fs::write(s.dir().join(".vg0%2Fx.json.tmp"), b"half").unwrap();

    let (good, bad) = s.list().unwrap();
    assert_eq!(good, vec![record("vg0/good")]);
    let reasons: Vec<(String, String)> = bad
        .iter()
        .map(|b| {
            (
                b.path.file_name().unwrap().to_string_lossy().into_owned(),
                b.reason.clone(),
            )
        })
        .collect();
    assert_eq!(bad.len(), 9, "{reasons:#?}");
    let reason_of = |name: &str| {
        reasons
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not reported: {reasons:#?}"))
            .1
            .clone()
    };
    assert!(reason_of("vg0%2Ftruncated.json").contains("not valid JSON"));
    assert!(reason_of("vg0%2Fempty.json").contains("empty"));
    assert!(reason_of("vg0%2Ffuture.json").contains("version 99"));
    assert!(reason_of("vg0%2Fnoversion.json").contains("version"));
    assert!(reason_of("vg0%2Frenamed.json").contains("vg0/good"));
    assert!(reason_of("vg0%2Fescape.json").contains(".."));
    assert!(reason_of("vg0%2Fdir.json").contains("regular file"));
    assert!(matches!(
        s.get("vg0/truncated"),
        Err(StateError::Bad { .. })
    ));
    // A good write replaces a damaged record.
    s.put(&record("vg0/truncated")).unwrap();
    assert!(s.get("vg0/truncated").unwrap().is_some());
    // Bad ones can be removed, but only record files of this store.
    let b = bad
        .iter()
        .find(|b| b.path.ends_with("vg0%2Fempty.json"))
        .unwrap();
    s.remove_bad(b).unwrap();
    let outside = BadRecord {
        path: d.path().join("..").join("x.json"),
        reason: String::new(),
    };
    assert!(s.remove_bad(&outside).is_err());
}

#[test]
fn locks_exclude_other_holders_until_dropped() {
    let d = tempfile::tempdir().unwrap();
    let s = StateStore::open(d.path()).unwrap();
    let l = s.try_lock("vg0/a").unwrap();
    assert!(matches!(s.try_lock("vg0/a"), Err(StateError::Locked(_))));
    assert!(s.try_lock("vg0/b").is_ok());
    assert!(matches!(
        s.lock("vg0/a", std::time::Duration::from_millis(250)),
        Err(StateError::Locked(_))
    ));
    drop(l);
    assert!(s.lock("vg0/a", std::time::Duration::from_secs(1)).is_ok());
    // Lock files never show up as records.
    assert_eq!(s.list().unwrap(), (vec![], vec![]));
}

fn lock_files(s: &StateStore) -> Vec<String> {
    match std::fs::read_dir(s.dir().join(LOCK_DIR)) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

#[test]
fn lock_file_lives_only_while_the_volume_has_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(dir.path()).unwrap();
    // Locked and released without a record (an unstage, a repeated unpublish): no file.
    drop(s.try_lock("vg0/a").unwrap());
    assert!(lock_files(&s).is_empty());
    // With a record the file stays...
    let l = s.try_lock("vg0/a").unwrap();
    assert_eq!(lock_files(&s), vec!["vg0%2Fa.lock".to_string()]);
    s.put(&record("vg0/a")).unwrap();
    drop(l);
    assert_eq!(lock_files(&s), vec!["vg0%2Fa.lock".to_string()]);
    // ...until a holder finds the record gone; a crashed write's temp file goes with it.
    let l = s.try_lock("vg0/a").unwrap();
    s.remove("vg0/a").unwrap();
    let tmp = dir.path().join(".vg0%2Fa.json.tmp");
    std::fs::write(&tmp, b"{").unwrap();
    drop(l);
    assert!(lock_files(&s).is_empty());
    assert!(!tmp.exists());
    // Other volumes' files are not touched.
    s.put(&record("vg0/b")).unwrap();
    drop(s.try_lock("vg0/b").unwrap());
    drop(s.try_lock("vg0/a").unwrap());
    assert_eq!(lock_files(&s), vec!["vg0%2Fb.lock".to_string()]);
}

/// Threads (each its own open file, like separate processes) lock one volume in a loop,
/// creating and removing its record, so the lock file is removed and re-created all the
/// time: never two holders at once.
#[test]
fn removing_lock_files_never_lets_two_hold_one_volume() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(dir.path()).unwrap();
    let holders = AtomicUsize::new(0);
    let (acquired, retries) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (s, holders, acquired, retries) = (&s, &holders, &acquired, &retries);
            scope.spawn(move || {
                let mut done = 0;
                while done < 500 {
                    let l = match s.try_lock("vg0/a") {
                        Ok(l) => l,
                        Err(StateError::Locked(_)) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            std::thread::yield_now();
                            continue;
                        }
                        Err(e) => panic!("{e}"),
                    };
                    assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    if (done + t) % 3 == 0 {
                        s.put(&record("vg0/a")).unwrap();
                    } else {
                        s.remove("vg0/a").unwrap();
                    }
                    std::thread::yield_now();
                    holders.fetch_sub(1, Ordering::SeqCst);
                    drop(l);
                    acquired.fetch_add(1, Ordering::Relaxed);
                    done += 1;
                }
            });
        }
    });
    assert_eq!(acquired.load(Ordering::Relaxed), 2000);
    eprintln!("contended attempts: {}", retries.load(Ordering::Relaxed));
    s.remove("vg0/a").unwrap();
    drop(s.try_lock("vg0/a").unwrap());
    assert!(lock_files(&s).is_empty());
}

fn mark(id: &str) -> FormatMark {
    FormatMark {
        version: FORMAT_MARK_VERSION,
        volume_id: id.into(),
        lv_uuid: "uuid-1".into(),
        fs_type: "xfs".into(),
        started_unix: 1_700_000_000,
    }
}

#[test]
fn format_marks_are_durable_files_apart_from_the_records() {
    let d = tempfile::tempdir().unwrap();
    let s = StateStore::open(d.path()).unwrap();
    assert_eq!(s.format_mark("vg0/a").unwrap(), None);
    assert_eq!(s.format_marks().unwrap(), (vec![], vec![]));
    s.put_format_mark(&mark("vg0/a")).unwrap();
    s.put_format_mark(&mark("vg0/b")).unwrap();
    assert_eq!(s.format_mark("vg0/a").unwrap(), Some(mark("vg0/a")));
    assert!(
        d.path()
            .join(FORMAT_MARK_DIR)
            .join("vg0%2Fa.json")
            .is_file()
    );
    let (marks, bad) = s.format_marks().unwrap();
    assert_eq!(marks, vec![mark("vg0/a"), mark("vg0/b")]);
    assert!(bad.is_empty());
    // The reviver's listing never takes a mark for a stage record.
    assert_eq!(s.list().unwrap(), (vec![], vec![]));
    s.remove_format_mark("vg0/a").unwrap();
    s.remove_format_mark("vg0/a").unwrap();
    assert_eq!(s.format_mark("vg0/a").unwrap(), None);
    assert_eq!(s.format_marks().unwrap().0, vec![mark("vg0/b")]);
}

#[test]
fn a_damaged_or_misplaced_format_mark_is_reported_not_used() {
    let d = tempfile::tempdir().unwrap();
    let s = StateStore::open(d.path()).unwrap();
    s.put_format_mark(&mark("vg0/a")).unwrap();
    let dir = d.path().join(FORMAT_MARK_DIR);
    std::fs::write(dir.join("vg0%2Fbad.json"), b"{").unwrap();
    std::fs::copy(dir.join("vg0%2Fa.json"), dir.join("vg0%2Fother.json")).unwrap();
    let (marks, bad) = s.format_marks().unwrap();
    assert_eq!(marks, vec![mark("vg0/a")]);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(matches!(
        s.format_mark("vg0/bad"),
        Err(StateError::Bad { .. })
    ));
    assert!(matches!(
        s.format_mark("vg0/other"),
        Err(StateError::Bad { .. })
    ));
    assert!(matches!(
        s.put_format_mark(&mark("")),
        Err(StateError::BadVolumeId(_))
    ));
}

fn intent(id: &str) -> CreateIntent {
    CreateIntent {
        version: CREATE_INTENT_VERSION,
        volume_id: id.into(),
        create_id: "17c3a".into(),
        started_unix: 1_700_000_000,
    }
}

#[test]
fn create_intents_live_apart_from_format_marks_and_records() {
    let d = tempfile::tempdir().unwrap();
    let s = StateStore::open(d.path()).unwrap();
    assert_eq!(s.create_intent("vg0/a").unwrap(), None);
    s.put_create_intent(&intent("vg0/a")).unwrap();
    s.put_format_mark(&mark("vg0/a")).unwrap();
    assert!(
        d.path()
            .join(CREATE_INTENT_DIR)
            .join("vg0%2Fa.json")
            .is_file()
    );
    assert_eq!(s.create_intent("vg0/a").unwrap(), Some(intent("vg0/a")));
    assert_eq!(s.create_intents().unwrap(), (vec![intent("vg0/a")], vec![]));
    // Each kind is read only as itself: removing the intent leaves the format mark.
    s.remove_create_intent("vg0/a").unwrap();
    s.remove_create_intent("vg0/a").unwrap();
    assert_eq!(s.create_intent("vg0/a").unwrap(), None);
    assert_eq!(s.format_mark("vg0/a").unwrap(), Some(mark("vg0/a")));
    assert_eq!(s.list().unwrap(), (vec![], vec![]));
    // A format mark copied into the intents' directory is damage, not an intent.
    std::fs::copy(
        d.path().join(FORMAT_MARK_DIR).join("vg0%2Fa.json"),
        d.path().join(CREATE_INTENT_DIR).join("vg0%2Fa.json"),
    )
    .unwrap();
    let (good, bad) = s.create_intents().unwrap();
    assert!(good.is_empty() && bad.len() == 1, "{good:?} {bad:?}");
}
