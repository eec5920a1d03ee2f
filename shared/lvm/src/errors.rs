//! What went wrong in an lvm command, classified from its stderr.
//!
//! lvm has no machine-readable errors: exit code 5 covers everything from "no such LV" to
//! "lock manager down". Callers need the difference (a missing LV makes DeleteVolume
//! succeed, a lock held elsewhere must not), so the messages are matched here, in one
//! place, against the wording of lvm2 2.03 (tools and lib/locking/lvmlockd.c).

use std::sync::LazyLock;

use regex::Regex;
use vglet_runner::RunError;

#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error("volume group {0} not found")]
    VgNotFound(String),
    /// `vg/lv`.
    #[error("logical volume {0} not found")]
    LvNotFound(String),
    /// `vg/lv`.
    #[error("logical volume {0} already exists")]
    AlreadyExists(String),
    /// `needed` and `free` are extents, when lvm said them.
    #[error("volume group {vg} has insufficient free space: {message}")]
    InsufficientSpace {
        vg: String,
        needed: Option<u64>,
        free: Option<u64>,
        message: String,
    },
    /// The VG's metadata would no longer fit its PVs' metadata areas, so lvm wrote nothing.
    /// lvm's default area (about 1 MiB, half of it usable) holds some 1,300 plain LVs;
    /// vg-init's PVs get 16 MiB.
    #[error(
        "volume group {vg}: its metadata area is full ({message}); add PVs with a larger \
         metadata area and set --metadataignore on the small ones (docs/troubleshooting.md)"
    )]
    MetadataFull { vg: String, message: String },
    /// The LV (or VG) lock is held by another host: the LV is active there.
    #[error("locked by another host: {0}")]
    Locked(String),
    /// The LV is in use on this host (a mounted filesystem, an open device, a device-mapper
    /// device stacked on it): lvm refuses to remove or deactivate it.
    #[error("in use: {0}")]
    InUse(String),
    /// lvmlockd is not running, the VG's lockspace is not started, sanlock lease trouble.
    #[error("lock manager problem: {0}")]
    LockManager(String),
    #[error("lvm timed out: {0}")]
    Timeout(String),
    #[error(transparent)]
    Command(RunError),
    /// A program the binary did not find at start (lvmlockctl, wipefs, ...).
    #[error(transparent)]
    ProgramMissing(#[from] vglet_runner::ProgramMissing),
    #[error("cannot understand lvm output: {0}")]
    Parse(String),
    /// Refused before running anything: a name or tag lvm would reject or misread.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl LvmError {
    /// Worth retrying later without changing anything: the state may clear by itself.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LvmError::Locked(_) | LvmError::LockManager(_) | LvmError::Timeout(_)
        )
    }
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants; a typo is a bug caught by every test of this module.
    Regex::new(pattern).expect("valid regex")
}

static LOCKED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)LV locked by other host|lock failed: held by other host|already locked with incompatible mode",
    )
});
static LOCK_MANAGER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)lock failed|locking failed|failed to lock|requires lvmlockd|lvmlockd is not (running|enabled)|lvmlockd process is not running|lockspace (is|not)|global lockspace|due to failed lock|lock manager|for sanlock leases",
    )
});
// lib/metadata/lv.c (lv_check_not_in_use) and lib/activate/activate.c of lvm2 2.03.
static IN_USE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)Logical volume \S+ (in use|contains a filesystem in use|is used by another device)|Can't remove open logical volume",
    )
});
static ALREADY_EXISTS: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"(?i)Logical Volume "([^"]*)" already exists in volume group "([^"]*)""#)
});
static SPACE_IN_VG: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"Volume group "([^"]*)" has insufficient free space \((\d+) extents\): (\d+) required"#)
});
static SPACE_EXTEND: LazyLock<Regex> = LazyLock::new(|| {
    re(r"Insufficient free space: (\d+) extents needed, but only (\d+) available")
});
static SPACE_OTHER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)insufficient (free space|suitable allocatable extents)"));
// lib/format_text/format-text.c of lvm2 2.03: "VG %s %u metadata on %s (%llu bytes)
// exceeds maximum metadata size (%llu bytes)".
static METADATA_FULL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"VG (\S+) \d+ metadata on \S+ \(\d+ bytes\) exceeds maximum metadata size \(\d+ bytes\)")
});
static VG_NOT_FOUND: LazyLock<Regex> = LazyLock::new(|| re(r#"Volume group "([^"]*)" not found"#));
static LV_NOT_FOUND: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"Failed to find logical volume "([^"]*)"|Logical volume (\S+) not found in volume group (\S+?)\.?(\s|$)|specified logical volume\(s\) not found"#,
    )
});
static EXTEND_NOOP: LazyLock<Regex> =
    LazyLock::new(|| re(r"matches existing size|not larger than existing size"));

/// The stderr lines that carry the error: lvm prints warnings ("WARNING: ...") around the
/// real message, and those must neither be matched nor clutter the reported message.
pub(crate) fn relevant(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("WARNING:"))
        .collect();
    if lines.is_empty() {
        stderr.trim().to_string()
    } else {
        lines.join("; ")
    }
}

fn full_name(vg: Option<&str>, lv: Option<&str>, fallback: &str) -> String {
    match (vg, lv) {
        (Some(vg), Some(lv)) => format!("{vg}/{lv}"),
        _ => fallback.to_string(),
    }
}

/// The typed error for lvm stderr, or `None` when it is none of the known kinds. `vg` and
/// `lv` are what the command was about; they name the error when the message does not.
///
/// Lock trouble wins over everything else: when the lock manager is down, lvm's other
/// messages describe what it could not see, and a "not found" read then would let a caller
/// believe a volume is gone while it still exists.
pub fn classify_stderr(stderr: &str, vg: Option<&str>, lv: Option<&str>) -> Option<LvmError> {
    let text = relevant(stderr);
    let name = |fallback: &str| full_name(vg, lv, fallback);
    if LOCKED.is_match(&text) {
        return Some(LvmError::Locked(text));
    }
    if LOCK_MANAGER.is_match(&text) {
        return Some(LvmError::LockManager(text));
    }
    if IN_USE.is_match(&text) {
        return Some(LvmError::InUse(text));
    }
    if let Some(c) = ALREADY_EXISTS.captures(&text) {
        return Some(LvmError::AlreadyExists(format!("{}/{}", &c[2], &c[1])));
    }
    if let Some(c) = SPACE_IN_VG.captures(&text) {
        return Some(LvmError::InsufficientSpace {
            vg: c[1].to_string(),
            free: c[2].parse().ok(),
            needed: c[3].parse().ok(),
            message: text.clone(),
        });
    }
    if let Some(c) = SPACE_EXTEND.captures(&text) {
        return Some(LvmError::InsufficientSpace {
            vg: vg.unwrap_or_default().to_string(),
            needed: c[1].parse().ok(),
            free: c[2].parse().ok(),
            message: text.clone(),
        });
    }
    if SPACE_OTHER.is_match(&text) {
        return Some(LvmError::InsufficientSpace {
            vg: vg.unwrap_or_default().to_string(),
            needed: None,
            free: None,
            message: text.clone(),
        });
    }
    if let Some(c) = METADATA_FULL.captures(&text) {
        return Some(LvmError::MetadataFull {
            vg: c[1].to_string(),
            message: text.clone(),
        });
    }
    if let Some(c) = VG_NOT_FOUND.captures(&text) {
        return Some(LvmError::VgNotFound(c[1].to_string()));
    }
    if let Some(c) = LV_NOT_FOUND.captures(&text) {
        let from_message = match (c.get(1), c.get(2), c.get(3)) {
            (Some(full), _, _) => full.as_str().to_string(),
            (None, Some(lv), Some(vg)) => format!("{}/{}", vg.as_str(), lv.as_str()),
            _ => String::new(),
        };
        return Some(LvmError::LvNotFound(name(&from_message)));
    }
    None
}

/// Maps a failed lvm run to an [`LvmError`].
pub fn classify(err: RunError, vg: Option<&str>, lv: Option<&str>) -> LvmError {
    match &err {
        RunError::Timeout { .. } => LvmError::Timeout(err.to_string()),
        RunError::Failed { stderr, .. } => {
            classify_stderr(stderr, vg, lv).unwrap_or(LvmError::Command(err))
        }
        RunError::Spawn { .. } => LvmError::Command(err),
    }
}

/// lvextend to a size the LV already has (or exceeds) fails; for a "grow to" request that
/// is success.
pub(crate) fn is_extend_noop(err: &RunError) -> bool {
    matches!(err, RunError::Failed { stderr, .. } if EXTEND_NOOP.is_match(stderr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn failed(stderr: &str) -> RunError {
        RunError::Failed {
            argv: "/sbin/lvm lvcreate ...".into(),
            code: Some(5),
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    fn classify_vl(stderr: &str) -> LvmError {
        classify(failed(stderr), Some("vg0"), Some("lv0"))
    }

    // The stderr samples below are verbatim from lvm2 2.03.16 on the development host
    // (device-mapper-less, hence the activation warning) unless marked otherwise.
    const WARN: &str =
        "  WARNING: Activation disabled. No device-mapper interaction will be attempted.\n";

    #[test]
    fn vg_not_found() {
        let e = classify(
            failed(
                "  Volume group \"nosuchvg\" not found\n  Cannot process volume group nosuchvg\n",
            ),
            Some("nosuchvg"),
            None,
        );
        assert!(
            matches!(&e, LvmError::VgNotFound(v) if v == "nosuchvg"),
            "{e:?}"
        );
        let e = classify_vl(&format!(
            "{WARN}  Volume group \"novg\" not found\n  Cannot process volume group novg\n"
        ));
        assert!(
            matches!(&e, LvmError::VgNotFound(v) if v == "novg"),
            "{e:?}"
        );
    }

    #[test]
    fn lv_not_found_in_its_three_wordings() {
        let e = classify(
            failed(&format!(
                "{WARN}  Failed to find logical volume \"vgletx/nope\"\n"
            )),
            None,
            None,
        );
        assert!(
            matches!(&e, LvmError::LvNotFound(v) if v == "vgletx/nope"),
            "{e:?}"
        );
        // lvextend's wording.
        let e = classify(
            failed(&format!(
                "{WARN}  Logical volume nope not found in volume group vgletx.\n"
            )),
            None,
            None,
        );
        assert!(
            matches!(&e, LvmError::LvNotFound(v) if v == "vgletx/nope"),
            "{e:?}"
        );
        // Older lvchange wording (lvm2 source); named after the request.
        let e = classify_vl("  One or more specified logical volume(s) not found.\n");
        assert!(
            matches!(&e, LvmError::LvNotFound(v) if v == "vg0/lv0"),
            "{e:?}"
        );
    }

    #[test]
    fn already_exists() {
        let e = classify_vl(&format!(
            "{WARN}  Logical Volume \"l1\" already exists in volume group \"vgletx\"\n"
        ));
        assert!(
            matches!(&e, LvmError::AlreadyExists(v) if v == "vgletx/l1"),
            "{e:?}"
        );
    }

    #[test]
    fn insufficient_space_on_create() {
        let e = classify_vl(&format!(
            "{WARN}  Volume group \"vgletx\" has insufficient free space (43 extents): 256 required.\n"
        ));
        match e {
            LvmError::InsufficientSpace {
                vg,
                needed,
                free,
                message,
            } => {
                assert_eq!(vg, "vgletx");
                assert_eq!(needed, Some(256));
                assert_eq!(free, Some(43));
                assert!(message.starts_with("Volume group \"vgletx\" has insufficient"));
                assert!(!message.contains("WARNING"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn metadata_area_full() {
        // As lvm 2.03.16 printed it for an lvcreate on a PV with the default metadata area.
        let e = classify_vl(&format!(
            "{WARN}  VG vgletx 27 metadata on /dev/loop0 (534107 bytes) exceeds maximum metadata size (521472 bytes)\n  Failed to write VG vgletx.\n"
        ));
        match e {
            LvmError::MetadataFull { vg, message } => {
                assert_eq!(vg, "vgletx");
                assert!(
                    message.contains("exceeds maximum metadata size"),
                    "{message}"
                );
                assert!(!message.contains("WARNING"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn insufficient_space_on_extend() {
        let e = classify_vl(&format!(
            "{WARN}  Insufficient free space: 252 extents needed, but only 42 available\n"
        ));
        assert!(
            matches!(&e, LvmError::InsufficientSpace { vg, needed: Some(252), free: Some(42), .. } if vg == "vg0"),
            "{e:?}"
        );
        // Allocation restricted to some PVs (lvm2 source wording).
        let e = classify_vl(
            "  Insufficient suitable allocatable extents for logical volume lv0: 10 more required\n",
        );
        assert!(
            matches!(
                &e,
                LvmError::InsufficientSpace {
                    needed: None,
                    free: None,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    // Lock messages: wording from lvm2 lib/locking/lvmlockd.c and lib/metadata/metadata.c.
    #[test]
    fn locked_by_other_host() {
        for stderr in [
            "  LV locked by other host: vg0/lv0\n  Failed to lock logical volume vg0/lv0.\n",
            "  VG vg0 lock failed: held by other host.\n",
            "  LV is already locked with incompatible mode: vg0/lv0\n",
        ] {
            let e = classify_vl(stderr);
            assert!(matches!(e, LvmError::Locked(_)), "{stderr:?} -> {e:?}");
            assert!(e.is_transient());
        }
    }

    #[test]
    fn lock_manager_trouble() {
        for stderr in [
            "  Global lock failed: check that lvmlockd is running.\n",
            "  Global lock failed: check that global lockspace is started\n",
            "  VG vg0 lock failed: lock start in progress\n",
            "  VG vg0 lock failed: storage failed for sanlock leases\n",
            "  LV vg0/lv0 lock failed: lockspace is inactive\n",
            "  LV vg0/lv0 lock failed: error -221\n",
            "  Locking failed for LV vg0/lv0\n",
            "  Cannot access VG vg0 with lock type sanlock that requires lvmlockd.\n",
            "  Cannot access VG vg0 due to failed lock.\n",
            "  LV in VG vg0 with lock_type dlm requires lvmlockd.\n",
            "  VG vg0 start failed: lvmlockd is not running\n",
            "  Reading VG vg0 without a lock.\n  Cannot access VG vg0 due to failed lock.\n  Volume group \"vg0\" not found\n",
        ] {
            let e = classify_vl(stderr);
            assert!(matches!(e, LvmError::LockManager(_)), "{stderr:?} -> {e:?}");
            assert!(e.is_transient());
        }
    }

    // lvm2 2.03.16 in the guest: lvremove of a mounted LV, of an LV held open by a process,
    // and of an LV with a device-mapper device stacked on it.
    #[test]
    fn in_use_refusals() {
        for stderr in [
            "  Logical volume vg0/lv0 contains a filesystem in use.\n",
            "  Logical volume vg0/lv0 in use.\n",
            "  Logical volume vg0/lv0 is used by another device.\n",
            "  Can't remove open logical volume \"lv0\"\n",
        ] {
            let e = classify_vl(&format!("{WARN}{stderr}"));
            assert!(
                matches!(&e, LvmError::InUse(m) if !m.contains("WARNING")),
                "{stderr:?} -> {e:?}"
            );
            assert!(!e.is_transient());
        }
        // Lock trouble still wins: another host's lock says more than what lvm saw here.
        let e =
            classify_vl("  LV locked by other host: vg0/lv0\n  Logical volume vg0/lv0 in use.\n");
        assert!(matches!(e, LvmError::Locked(_)), "{e:?}");
    }

    #[test]
    fn lock_warnings_alone_do_not_mask_the_real_error() {
        let e = classify_vl(
            "  WARNING: lvmlockd process is not running.\n  Failed to find logical volume \"vg0/lv0\"\n",
        );
        assert!(matches!(e, LvmError::LvNotFound(_)), "{e:?}");
    }

    #[test]
    fn timeout_and_spawn_and_unknown() {
        let e = classify(
            RunError::Timeout {
                argv: "/sbin/lvm lvs".into(),
                after: Duration::from_secs(60),
            },
            None,
            None,
        );
        assert!(
            matches!(&e, LvmError::Timeout(m) if m.contains("/sbin/lvm lvs")),
            "{e:?}"
        );
        assert!(e.is_transient());

        let e = classify(
            RunError::Spawn {
                program: "lvm".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
            None,
            None,
        );
        assert!(matches!(e, LvmError::Command(_)), "{e:?}");

        let e = classify_vl(&format!(
            "{WARN}  Invalid argument for --addtag: x y\n  Error during parsing of command line.\n"
        ));
        assert!(
            matches!(&e, LvmError::Command(r) if r.exit_code() == Some(5)),
            "{e:?}"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn extend_noop_wordings() {
        assert!(is_extend_noop(&failed(&format!(
            "{WARN}  New size (3 extents) matches existing size (3 extents).\n"
        ))));
        assert!(is_extend_noop(&failed(&format!(
            "{WARN}  New size given (1 extents) not larger than existing size (3 extents)\n"
        ))));
        assert!(!is_extend_noop(&failed(
            "  Insufficient free space: 1 extents needed, but only 0 available\n"
        )));
    }

    #[test]
    fn relevant_drops_warnings_and_blank_lines() {
        assert_eq!(
            relevant(&format!("{WARN}\n  first\n  second\n")),
            "first; second"
        );
        assert_eq!(relevant(WARN), WARN.trim());
    }
}
