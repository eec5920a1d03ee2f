//! Encryption at rest (issue #21): LUKS2 between an LV and its filesystem, with the key from
//! NodeStageVolume's secrets and nowhere else.
//!
//! A module of the node-volume layer rather than a crate of its own: its only callers are
//! the node service and the reviver, which already share this layer, and the two decisions
//! it makes need this layer's pieces: the "device holds nothing" evidence of the first
//! format ([`crate::first_format`]) and the device-mapper proofs of [`crate::host`].
//!
//! The key: the node-stage secret [`KEY_SECRET`] (`csi.storage.k8s.io/node-stage-secret-*`
//! in the StorageClass). It reaches cryptsetup only on its stdin (`--key-file -`), so it is
//! never in argv (`/proc/*/cmdline`), and the runner logs commands without their stdin. It
//! is never written anywhere: no state record, no error text, no log.
//!
//! The mapping: `/dev/mapper/<mapping_name(vg, lv)>`, a name derived from the volume id
//! alone, so unstage, unpublish and the reviver find it without asking anyone. A mapping of
//! that name is only used or closed once proven to sit on this very LV: a CRYPT-LUKS2 dm
//! uuid and exactly the LV's device numbers below it ([`NodeHost::dm_slaves`]).
//!
//! Flow at NodeStageVolume: read (the mapping, the LV's head or blkid) → [`plan`] → act
//! (luksFormat only on a device that holds nothing, by the first format's evidence; open) →
//! read again (the mapping must now be proven on the LV). The staging path then mounts the
//! mapping as it would mount the LV.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vglet_mount::{Filesystems, Signature};
use vglet_runner::{Command, Program, ProgramMissing, Programs, RunError, Runner};

use crate::error::VolumeError;
use crate::host::NodeHost;

/// The key's name in NodeStageVolume's `secrets`.
pub const KEY_SECRET: &str = "passphrase";
/// What blkid calls a LUKS header.
pub const LUKS_SIGNATURE: &str = "crypto_LUKS";
/// The prefix of the mappings vglet opens (see [`mapping_name`]).
pub const MAPPING_PREFIX: &str = "vglet-crypt-";
/// device-mapper names are at most 127 bytes (DM_NAME_LEN 128 with its NUL).
const DM_NAME_MAX: usize = 127;
/// Prefix of the dm uuid cryptsetup gives a LUKS2 mapping.
const LUKS2_DM_UUID: &str = "CRYPT-LUKS2-";
/// cryptsetup's exit code for "no key available with this passphrase".
const EXIT_WRONG_KEY: i32 = 2;
/// luksFormat and open run a PBKDF tuned to ~2 s on a quiet machine; a busy or emulated
/// one needs longer, a hung device must still surface.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// The mapping name of volume `vg`/`lv`: `vglet-crypt-<vg>-<lv>`, each `-` inside a name
/// doubled as LVM does, so the single `-` between them makes the name unique per volume
/// id (and never one of LVM's own `vg-lv` names, which have exactly one single `-`).
/// `None` when it would pass device-mapper's length limit.
pub fn mapping_name(vg: &str, lv: &str) -> Option<String> {
    let name = format!(
        "{MAPPING_PREFIX}{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    );
    (name.len() <= DM_NAME_MAX).then_some(name)
}

/// The device node of a mapping.
pub fn mapping_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/mapper/{name}"))
}

/// The argv of each cryptsetup call (without the program). The key is never an argument:
/// `--key-file -` makes cryptsetup read it from stdin.
pub mod args {
    use std::ffi::OsString;
    use std::path::Path;

    fn v(parts: &[&str], dev: &Path, rest: &[&str]) -> Vec<OsString> {
        parts
            .iter()
            .map(OsString::from)
            .chain(std::iter::once(dev.as_os_str().to_owned()))
            .chain(rest.iter().map(OsString::from))
            .collect()
    }

    /// A new LUKS2 header on `dev`, keyed from stdin, without questions (`--batch-mode`:
    /// the "are you sure" is [`super::plan`]'s).
    pub fn format(dev: &Path) -> Vec<OsString> {
        v(
            &[
                "luksFormat",
                "--type",
                "luks2",
                "--batch-mode",
                "--key-file",
                "-",
            ],
            dev,
            &[],
        )
    }

    /// Opens `dev` as `/dev/mapper/<name>`, keyed from stdin.
    pub fn open(dev: &Path, name: &str) -> Vec<OsString> {
        v(
            &["open", "--type", "luks2", "--key-file", "-"],
            dev,
            &[name],
        )
    }

    /// Grows the open mapping `name` to its device's size, keyed from stdin (LUKS2 keeps
    /// the volume key in the kernel keyring, so a resize asks for the key again).
    pub fn resize(name: &str) -> Vec<OsString> {
        vec![
            "resize".into(),
            "--key-file".into(),
            "-".into(),
            name.into(),
        ]
    }

    /// Closes the mapping `name`.
    pub fn close(name: &str) -> Vec<OsString> {
        vec!["close".into(), name.into()]
    }
}

/// What a mapping of the volume's name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    Absent,
    /// A LUKS2 mapping on exactly the LV: its device numbers.
    OnLv((u64, u64)),
    /// Something else of that name: never used, never closed.
    Other,
}

/// Reads what `/dev/mapper/<name>` is, against the LV's device numbers (`None`: the LV
/// is not active here, so no mapping can be proven on it).
pub fn mapping_state(host: &dyn NodeHost, name: &str, lv: Option<(u64, u64)>) -> Mapping {
    let Some(numbers) = host.device_numbers(&mapping_path(name)) else {
        return Mapping::Absent;
    };
    let luks2 = host
        .dm_uuid(numbers)
        .is_some_and(|u| u.trim_end().starts_with(LUKS2_DM_UUID));
    match lv {
        Some(lv) if luks2 && host.dm_slaves(numbers) == [lv] => Mapping::OnLv(numbers),
        _ => Mapping::Other,
    }
}

/// What a stage does before the filesystem part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The mapping is open on the LV already (a repeated stage): use it.
    Reuse((u64, u64)),
    /// A LUKS header is there: open it.
    Open,
    /// The LV holds nothing: luksFormat, then open.
    FormatAndOpen,
}

/// The decision, from what was read. `found` is the LV's content by the first format's
/// evidence (`None`: nothing, lvcreate's zeroes or no blkid signature). A LUKS header is
/// never formatted again; a device holding anything else is never formatted at all.
pub fn plan(
    id: &str,
    name: &str,
    adopted: bool,
    mapping: Mapping,
    found: Option<&Signature>,
) -> Result<Plan, VolumeError> {
    if adopted {
        return Err(VolumeError::Precondition(format!(
            "volume {id} is a static volume; encrypted static volumes are not supported yet"
        )));
    }
    match mapping {
        Mapping::OnLv(n) => return Ok(Plan::Reuse(n)),
        Mapping::Other => {
            return Err(VolumeError::Precondition(format!(
                "a device-mapper device {name} exists and is not the encryption of volume {id}; nothing touched"
            )));
        }
        Mapping::Absent => {}
    }
    match found {
        None => Ok(Plan::FormatAndOpen),
        Some(Signature::Content { type_name, .. }) if type_name == LUKS_SIGNATURE => Ok(Plan::Open),
        Some(other) => Err(VolumeError::Precondition(format!(
            "encrypted volume {id} holds {other}, not a LUKS header; refusing to format over data"
        ))),
    }
}

/// cryptsetup through the runner, where the binary started found it.
#[derive(Debug, Clone)]
pub struct Crypt {
    runner: Arc<dyn Runner>,
    cryptsetup: Result<PathBuf, ProgramMissing>,
}

impl Crypt {
    pub fn new(runner: Arc<dyn Runner>, programs: &Programs) -> Crypt {
        Crypt {
            runner,
            cryptsetup: programs.path(Program::Cryptsetup).map(Path::to_path_buf),
        }
    }

    /// cryptsetup, or FAILED_PRECONDITION naming it (and its package) when the node has none.
    fn command(&self, args: Vec<std::ffi::OsString>) -> Result<Command, VolumeError> {
        let path = self
            .cryptsetup
            .as_ref()
            .map_err(|e| VolumeError::Precondition(e.to_string()))?;
        Ok(Command::new(path).args(args).timeout(TIMEOUT))
    }

    /// Whether the node can serve encrypted volumes at all: checked before anything is done.
    pub fn available(&self) -> Result<(), VolumeError> {
        self.command(Vec::new()).map(drop)
    }

    /// Runs a keyed or unkeyed call. A failure's text is argv and cryptsetup's stderr: the
    /// key is in neither.
    async fn run(&self, what: &str, cmd: Command) -> Result<(), VolumeError> {
        match self.runner.run(cmd).await {
            Ok(_) => Ok(()),
            Err(e) if e.exit_code() == Some(EXIT_WRONG_KEY) => Err(VolumeError::Precondition(
                format!("{what}: the key in secret {KEY_SECRET:?} does not open this volume"),
            )),
            Err(RunError::Failed { code, stderr, .. }) => Err(VolumeError::Internal(format!(
                "{what}: cryptsetup failed (exit {}): {}",
                code.map_or_else(|| "by signal".into(), |c| c.to_string()),
                stderr.trim()
            ))),
            Err(e) => Err(VolumeError::Internal(format!("{what}: {e}"))),
        }
    }

    /// Opens (and on first use formats) the volume's mapping for a stage; returns the
    /// mapping's device node and whether this call opened it.
    ///
    /// `dev` is the LV's device, `lv_numbers` its proven device numbers, `empty_head`
    /// whether its start is still lvcreate's zeroes (else blkid decides, as for mkfs).
    #[allow(clippy::too_many_arguments)]
    pub async fn open_for_stage(
        &self,
        host: &dyn NodeHost,
        fs: &Filesystems,
        id: &str,
        vg: &str,
        lv: &str,
        dev: &Path,
        adopted: bool,
        empty_head: bool,
        key: &[u8],
    ) -> Result<(PathBuf, bool), VolumeError> {
        self.available()?;
        let name = mapping_name(vg, lv).ok_or_else(|| {
            VolumeError::invalid(
                "volume_id",
                format!("{id} is too long for the name of its encryption mapping"),
            )
        })?;
        let lv_numbers = host.device_numbers(dev).ok_or_else(|| {
            VolumeError::Precondition(format!("device {} is not there", dev.display()))
        })?;
        let mapping = mapping_state(host, &name, Some(lv_numbers));
        let found = if matches!(mapping, Mapping::Absent) && !adopted && !empty_head {
            fs.detect_any_signature(dev)
                .await
                .map_err(VolumeError::mount("probing the device"))?
        } else {
            None
        };
        let plan = plan(id, &name, adopted, mapping, found.as_ref())?;
        if let Plan::Reuse(_) = plan {
            tracing::debug!(mapping = %name, "encryption mapping open on the LV already");
            return Ok((mapping_path(&name), false));
        }
        if plan == Plan::FormatAndOpen {
            tracing::info!(device = %dev.display(), "formatting LUKS2");
            self.run(
                &format!("luksFormat of {id}"),
                self.command(args::format(dev))?.stdin(key.to_vec()),
            )
            .await?;
        }
        self.run(
            &format!("opening encrypted volume {id}"),
            self.command(args::open(dev, &name))?.stdin(key.to_vec()),
        )
        .await?;
        match mapping_state(host, &name, Some(lv_numbers)) {
            Mapping::OnLv(_) => {
                tracing::info!(mapping = %name, "encryption mapping opened");
                Ok((mapping_path(&name), true))
            }
            m => Err(VolumeError::Internal(format!(
                "cryptsetup opened {name} for {id}, but it is not seen on the LV afterwards ({m:?})"
            ))),
        }
    }

    /// Grows the volume's open mapping to the LV's new size (after an lvextend, before the
    /// filesystem grows); returns the mapping's device node and numbers. The mapping must be
    /// proven on the LV: an encrypted volume that is not staged here cannot be grown here.
    pub async fn resize(
        &self,
        host: &dyn NodeHost,
        id: &str,
        vg: &str,
        lv: &str,
        lv_numbers: Option<(u64, u64)>,
        key: &[u8],
    ) -> Result<(), VolumeError> {
        let (name, _) = self.open_mapping(host, id, vg, lv, lv_numbers)?;
        self.available()?;
        self.run(
            &format!("resizing the encryption of {id}"),
            self.command(args::resize(&name))?.stdin(key.to_vec()),
        )
        .await?;
        tracing::info!(mapping = %name, "encryption mapping resized");
        Ok(())
    }

    /// The volume's mapping, proven open on the LV: its name and device numbers;
    /// FAILED_PRECONDITION when it is not.
    pub fn open_mapping(
        &self,
        host: &dyn NodeHost,
        id: &str,
        vg: &str,
        lv: &str,
        lv_numbers: Option<(u64, u64)>,
    ) -> Result<(String, (u64, u64)), VolumeError> {
        let name = mapping_name(vg, lv).unwrap_or_default();
        match mapping_state(host, &name, lv_numbers) {
            Mapping::OnLv(n) => Ok((name, n)),
            _ => Err(VolumeError::Precondition(format!(
                "encrypted volume {id} is not open on this node; NodeStageVolume first"
            ))),
        }
    }

    /// Closes the volume's mapping if it is proven to sit on the LV with device numbers
    /// `lv` (a stage's failure undoing its open, an unstage). `Ok(false)`: there was none
    /// of the volume's to close.
    pub async fn close_if_ours(
        &self,
        host: &dyn NodeHost,
        vg: &str,
        lv_name: &str,
        lv: Option<(u64, u64)>,
    ) -> Result<bool, VolumeError> {
        let Some(name) = mapping_name(vg, lv_name) else {
            return Ok(false);
        };
        match mapping_state(host, &name, lv) {
            Mapping::Absent => return Ok(false),
            Mapping::Other => {
                tracing::warn!(mapping = %name, "a device of the mapping's name is not on this LV; left alone");
                return Ok(false);
            }
            Mapping::OnLv(_) => {}
        }
        self.run(
            &format!("closing {name}"),
            self.command(args::close(&name))?,
        )
        .await?;
        if mapping_state(host, &name, lv) != Mapping::Absent {
            return Err(VolumeError::Internal(format!(
                "{name} is still there after cryptsetup close"
            )));
        }
        tracing::info!(mapping = %name, "encryption mapping closed");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_names_are_unique_and_valid() {
        assert_eq!(
            mapping_name("vg0", "csi-a").as_deref(),
            Some("vglet-crypt-vg0-csi--a")
        );
        // "a-b"/"c" and "a"/"b-c" must not meet.
        assert_ne!(mapping_name("a-b", "c"), mapping_name("a", "b-c"));
        assert_eq!(mapping_name("vg0", &"x".repeat(200)), None);
        let n = mapping_name("vg_0.x", "csi+y").unwrap();
        assert!(!n.contains('/'), "{n}");
    }

    #[test]
    fn argv_never_holds_a_key() {
        let dev = Path::new("/dev/vg0/csi-a");
        let s = |a: Vec<std::ffi::OsString>| {
            a.iter()
                .map(|x| x.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            s(args::format(dev)),
            "luksFormat --type luks2 --batch-mode --key-file - /dev/vg0/csi-a"
        );
        assert_eq!(
            s(args::open(dev, "vglet-crypt-vg0-csi--a")),
            "open --type luks2 --key-file - /dev/vg0/csi-a vglet-crypt-vg0-csi--a"
        );
        assert_eq!(
            s(args::resize("vglet-crypt-vg0-csi--a")),
            "resize --key-file - vglet-crypt-vg0-csi--a"
        );
        assert_eq!(
            s(args::close("vglet-crypt-vg0-csi--a")),
            "close vglet-crypt-vg0-csi--a"
        );
    }

    fn precondition(r: Result<Plan, VolumeError>) -> String {
        match r {
            Err(VolumeError::Precondition(m)) => m,
            other => panic!("not a precondition: {other:?}"),
        }
    }

    #[test]
    fn plan_formats_only_what_holds_nothing() {
        let luks = Signature::Content {
            type_name: LUKS_SIGNATURE.into(),
            usage: Some("crypto".into()),
        };
        let ext4 = Signature::Content {
            type_name: "ext4".into(),
            usage: Some("filesystem".into()),
        };
        let p = |adopted, m, f| plan("vg0/a", "n", adopted, m, f);
        assert_eq!(
            p(false, Mapping::Absent, None).unwrap(),
            Plan::FormatAndOpen
        );
        assert_eq!(p(false, Mapping::Absent, Some(&luks)).unwrap(), Plan::Open);
        assert_eq!(
            p(false, Mapping::OnLv((253, 4)), Some(&luks)).unwrap(),
            Plan::Reuse((253, 4))
        );
        let e = precondition(p(false, Mapping::Absent, Some(&ext4)));
        assert!(e.contains("holds ext4"), "{e}");
        let gpt = Signature::PartitionTable("gpt".into());
        let e = precondition(p(false, Mapping::Absent, Some(&gpt)));
        assert!(e.contains("refusing"), "{e}");
        let e = precondition(p(false, Mapping::Other, None));
        assert!(e.contains("nothing touched"), "{e}");
        let e = precondition(p(true, Mapping::Absent, Some(&luks)));
        assert!(e.contains("static"), "{e}");
    }

    #[test]
    fn a_mapping_counts_only_on_the_lv() {
        let host = crate::FakeHost::new();
        let lv = (253, 1);
        assert_eq!(
            mapping_state(&host, "vglet-crypt-vg0-a", Some(lv)),
            Mapping::Absent
        );
        host.add_mapping(
            Path::new("/dev/mapper/vglet-crypt-vg0-a"),
            (253, 2),
            "CRYPT-LUKS2-0123-vglet-crypt-vg0-a",
            lv,
        );
        assert_eq!(
            mapping_state(&host, "vglet-crypt-vg0-a", Some(lv)),
            Mapping::OnLv((253, 2))
        );
        assert_eq!(
            mapping_state(&host, "vglet-crypt-vg0-a", Some((253, 9))),
            Mapping::Other
        );
        assert_eq!(
            mapping_state(&host, "vglet-crypt-vg0-a", None),
            Mapping::Other
        );
        host.add_mapping(
            Path::new("/dev/mapper/vglet-crypt-vg0-b"),
            (253, 3),
            "LVM-xyz",
            lv,
        );
        assert_eq!(
            mapping_state(&host, "vglet-crypt-vg0-b", Some(lv)),
            Mapping::Other
        );
    }

    #[tokio::test]
    async fn the_key_goes_on_stdin_and_a_wrong_one_changes_nothing() {
        let host = crate::FakeHost::new();
        let dev = Path::new("/dev/vg0/csi-a");
        host.add_device(dev, (253, 1), None);
        let runner = vglet_runner::FakeRunner::with(|c| {
            if c.arg_strings().first().map(String::as_str) == Some("open") {
                vglet_runner::Reply::fail(2, "No key available with this passphrase.")
            } else {
                vglet_runner::Reply::ok("")
            }
        });
        let programs = Programs::all_in("/sbin");
        let crypt = Crypt::new(Arc::new(runner.clone()), &programs);
        let fs = Filesystems::new(Arc::new(runner.clone()), programs.clone());
        let key = b"k3y-not-in-argv";
        // A LUKS header is there (by blkid), the key is wrong: open only, refused.
        let probe = vglet_runner::FakeRunner::with(|c| {
            if c.program_name() == "blkid" {
                vglet_runner::Reply::ok("TYPE=crypto_LUKS\nUSAGE=crypto\n")
            } else {
                vglet_runner::Reply::fail(2, "No key available with this passphrase.")
            }
        });
        let crypt2 = Crypt::new(Arc::new(probe.clone()), &programs);
        let fs2 = Filesystems::new(Arc::new(probe.clone()), programs.clone());
        let e = crypt2
            .open_for_stage(
                &host,
                &fs2,
                "vg0/csi-a",
                "vg0",
                "csi-a",
                dev,
                false,
                false,
                key,
            )
            .await
            .unwrap_err();
        let VolumeError::Precondition(m) = &e else {
            panic!("{e:?}")
        };
        assert!(!m.contains("k3y"), "{m}");
        let lines = probe.call_lines();
        assert!(!lines.iter().any(|l| l.contains("luksFormat")), "{lines:?}");
        for c in probe.calls() {
            assert!(!c.argv_string().contains("k3y"), "{c:?}");
        }
        let open = probe
            .calls()
            .into_iter()
            .find(|c| c.program_name() == "cryptsetup")
            .unwrap();
        assert_eq!(open.stdin.as_deref(), Some(&key[..]));
        // An empty LV: luksFormat then open, both keyed on stdin; the open fails here, so
        // the call fails (the fake never shows a mapping).
        let e = crypt
            .open_for_stage(
                &host,
                &fs,
                "vg0/csi-a",
                "vg0",
                "csi-a",
                dev,
                false,
                true,
                key,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, VolumeError::Precondition(_)), "{e:?}");
        let calls = runner.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].arg_strings()[0], "luksFormat");
        assert!(calls.iter().all(|c| c.stdin.as_deref() == Some(&key[..])));
        // Without cryptsetup on the node: refused before anything runs, naming it.
        let none = Crypt::new(
            Arc::new(vglet_runner::FakeRunner::new()),
            &Programs::all_in("/sbin").without(Program::Cryptsetup),
        );
        let e = none.available().unwrap_err();
        assert!(
            matches!(&e, VolumeError::Precondition(m) if m.contains("cryptsetup")),
            "{e:?}"
        );
    }
}
