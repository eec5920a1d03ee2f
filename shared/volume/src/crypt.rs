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
//! Flow at NodeStageVolume: read (the mapping, the LV's head or blkid, and under a
//! first-format mark the header's key slots) → [`plan`] → act (luksFormat only on a device
//! that holds nothing by the first format's evidence, or under the mark over the header an
//! interrupted luksFormat left; key rotation; open) → read again (the mapping must now be
//! proven on the LV). The staging path then mounts the mapping as it would mount the LV.
//!
//! The first luksFormat is inside the first-format mark ([`crate::first_format`]): the
//! mark is written before luksFormat and removed only after the mkfs on the mapping and
//! the first mount (raw block: after the first open). luksFormat writes the header first
//! and the key slot after its PBKDF, which is nearly all of its time; a crash in between
//! leaves a valid header with **no key slot**, which no key can ever open. Under a mark,
//! and only then, such a header is formatted again ([`Header::NoKeySlot`]). A header with
//! a key slot is never formatted again, mark or not; one cryptsetup cannot read is refused.
//!
//! Key rotation ([`rotation`]): NodeStageVolume's secret carries the new key under
//! [`KEY_SECRET`] and, while the rotation runs, the old one under [`PREVIOUS_KEY_SECRET`].
//! Each step is checked against the header before it runs (which key opens which slot),
//! so a crash between any two steps converges on the next stage: the new key is added
//! with the old one (`luksAddKey`, old key on stdin, new key on the runner's
//! [`vglet_runner::EXTRA_INPUT_PATH`]), then the old key's slot is removed (`luksKillSlot`,
//! authorised by the new key).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vglet_mount::{Filesystems, Signature};
use vglet_runner::{Command, Program, ProgramMissing, Programs, RunError, Runner};

use crate::error::VolumeError;
use crate::host::NodeHost;

/// The key's name in NodeStageVolume's `secrets`.
pub const KEY_SECRET: &str = "passphrase";
/// The old key's name in NodeStageVolume's `secrets` while a key rotation runs.
pub const PREVIOUS_KEY_SECRET: &str = "previousPassphrase";
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
    /// the "are you sure" is [`super::plan`]'s), its key slot at the `pbkdf` cost.
    pub fn format(dev: &Path, pbkdf: &super::Pbkdf) -> Vec<OsString> {
        let mut a = v(
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
        );
        a.extend(pbkdf.args());
        a
    }

    /// Which key slot the key on stdin opens, without opening anything: cryptsetup says
    /// `Key slot N unlocked.` (`--verbose`), exit 2 for a key that opens none.
    pub fn test_key(dev: &Path) -> Vec<OsString> {
        v(
            &[
                "open",
                "--type",
                "luks2",
                "--test-passphrase",
                "--verbose",
                "--key-file",
                "-",
            ],
            dev,
            &[],
        )
    }

    /// The header's metadata as JSON (its key slots), no key needed.
    pub fn dump(dev: &Path) -> Vec<OsString> {
        v(&["luksDump", "--dump-json-metadata"], dev, &[])
    }

    /// Adds a key slot for the key read from the runner's extra input, authorised by the
    /// existing key on stdin.
    pub fn add_key(dev: &Path, pbkdf: &super::Pbkdf) -> Vec<OsString> {
        let mut a = v(
            &[
                "luksAddKey",
                "--type",
                "luks2",
                "--batch-mode",
                "--key-file",
                "-",
            ],
            dev,
            &[vglet_runner::EXTRA_INPUT_PATH],
        );
        a.extend(pbkdf.args());
        a
    }

    /// Removes key slot `slot`, authorised by the key on stdin (cryptsetup refuses a key
    /// that opens only that slot).
    pub fn kill_slot(dev: &Path, slot: u32) -> Vec<OsString> {
        v(
            &[
                "luksKillSlot",
                "--type",
                "luks2",
                "--batch-mode",
                "--key-file",
                "-",
            ],
            dev,
            &[&slot.to_string()],
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

/// The PBKDF cost of the key slots the driver writes (luksFormat, luksAddKey); every
/// field unset is cryptsetup's own default (argon2id, benchmarked to 2 s and up to 1 GiB).
/// An operator's setting (csi-driver's `--luks-*` flags), never lowered by the driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pbkdf {
    /// `--iter-time`: the benchmark's target time in ms.
    pub iter_time_ms: Option<u32>,
    /// `--pbkdf-memory`: the memory cost limit in KiB.
    pub memory_kib: Option<u32>,
    /// `--pbkdf-force-iterations`: a fixed iteration count, no benchmark at all.
    pub iterations: Option<u32>,
}

impl Pbkdf {
    /// The cryptsetup options of the set fields.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let mut a = Vec::new();
        if let Some(t) = self.iter_time_ms {
            a.extend(["--iter-time".into(), t.to_string().into()]);
        }
        if let Some(m) = self.memory_kib {
            a.extend(["--pbkdf-memory".into(), m.to_string().into()]);
        }
        if let Some(i) = self.iterations {
            a.extend(["--pbkdf-force-iterations".into(), i.to_string().into()]);
        }
        a
    }

    /// cryptsetup's own bounds for argon2id: at least 4 iterations, 32 KiB to 4 GiB.
    pub fn validate(&self) -> Result<(), String> {
        if self.iter_time_ms == Some(0) {
            return Err("--luks-iter-time must be at least 1 (ms)".into());
        }
        if let Some(m) = self.memory_kib
            && !(32..=4 * 1024 * 1024).contains(&m)
        {
            return Err(format!(
                "--luks-pbkdf-memory {m}: between 32 and 4194304 (KiB)"
            ));
        }
        if let Some(i) = self.iterations
            && i < 4
        {
            return Err(format!(
                "--luks-pbkdf-iterations {i}: at least 4 (argon2id's minimum)"
            ));
        }
        Ok(())
    }
}

/// The keys of a stage: the volume's key and, while a rotation runs, the old one.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub key: &'a [u8],
    pub previous: Option<&'a [u8]>,
}

impl std::fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .field("previous", &self.previous.map(<[u8]>::len))
            .finish()
    }
}

/// What the LUKS header on a device is, by `cryptsetup luksDump`: read only under a
/// first-format mark, to tell an interrupted luksFormat from a made header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// At least one key slot: made. Never formatted again.
    Made { key_slots: usize },
    /// A valid header without any key slot: what a luksFormat killed during its PBKDF
    /// leaves. No key can open it, so nothing was ever written through it.
    NoKeySlot,
    /// cryptsetup cannot read it (a header write cut short, or damage): never formatted.
    Unreadable(String),
}

/// [`Header`] from `luksDump --dump-json-metadata`'s output.
pub fn header_from_dump(json: &str) -> Header {
    #[derive(serde::Deserialize)]
    struct Dump {
        keyslots: serde_json::Map<String, serde_json::Value>,
    }
    match serde_json::from_str::<Dump>(json) {
        Ok(d) if d.keyslots.is_empty() => Header::NoKeySlot,
        Ok(d) => Header::Made {
            key_slots: d.keyslots.len(),
        },
        Err(e) => Header::Unreadable(format!("luksDump's metadata: {e}")),
    }
}

/// The key slot cryptsetup's `--verbose` answer names (`Key slot 1 unlocked.`).
pub fn unlocked_slot(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Key slot ")?
            .strip_suffix(" unlocked.")?
            .parse()
            .ok()
    })
}

/// What a key rotation does next, from which slot each key opens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The new key opens the volume and the old one no longer does (or no rotation).
    Done,
    /// Both open it: remove the old key's slot (authorised by the new key).
    KillOld(u32),
    /// Only the old key opens it: add the new key, then remove the old key's slot.
    AddNewThenKillOld(u32),
}

/// The next step of a rotation. Every crash point converges: after `luksAddKey` both
/// keys open (→ [`Rotation::KillOld`]); after `luksKillSlot` only the new one (→
/// [`Rotation::Done`]). A slot both keys open is never removed.
pub fn rotation(id: &str, new: Option<u32>, old: Option<u32>) -> Result<Rotation, VolumeError> {
    match (new, old) {
        (Some(_), None) => Ok(Rotation::Done),
        (Some(n), Some(o)) if n == o => Ok(Rotation::Done),
        (Some(_), Some(o)) => Ok(Rotation::KillOld(o)),
        (None, Some(o)) => Ok(Rotation::AddNewThenKillOld(o)),
        (None, None) => Err(VolumeError::Precondition(format!(
            "encrypted volume {id}: neither the key in secret {KEY_SECRET:?} nor the one in {PREVIOUS_KEY_SECRET:?} opens it; nothing changed"
        ))),
    }
}

/// No key opened a volume outside its first format (`refused`): with a header that has no
/// key slot, no key ever can. Such a header is what an interrupted first luksFormat
/// leaves, and under the volume's own first-format mark it is formatted again ([`plan`]);
/// without the mark it is a copy (a restore or clone) of a volume whose first NodeStage
/// never finished, which holds no data and must not be formatted on a guess. Any other
/// header: `refused` unchanged.
pub fn unopenable(id: &str, header: &Header, refused: VolumeError) -> VolumeError {
    match header {
        Header::NoKeySlot => VolumeError::Precondition(format!(
            "encrypted volume {id}: its LUKS header has no key slot, so no key opens it. It is a \
             copy (restore or clone) of a volume whose first NodeStage never finished, so it \
             holds no data: delete it and restore from a snapshot of a staged volume; nothing \
             changed"
        )),
        _ => refused,
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

/// How a snapshot (or a clone's temporary snapshot) of an encrypted volume holds its
/// filesystem still. lvm suspends the LV with `lockfs` while it makes a snapshot, which
/// freezes a filesystem on the LV itself; an encrypted volume's filesystem is on the
/// mapping above the LV, so that suspend freezes nothing, and the filesystem is frozen on
/// the mapping instead ([`vglet_mount::Frozen`]), around the lvcreate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotHold {
    /// No mapping of the volume is open on this node: nothing is written through it here,
    /// and the LV is snapshotted as it is.
    NotOpen,
    /// The mapping is open but no mount of it is seen (raw block, whose writes lvm's
    /// suspend holds as it does for a plain raw block volume).
    OpenUnmounted,
    /// Freeze the filesystem on the mapping (its device numbers) mounted here (a mount of
    /// the mapping; the freeze applies to the filesystem, any of its mounts will do).
    Freeze(PathBuf, (u64, u64)),
}

/// [`SnapshotHold`] of volume `vg`/`lv`, the LV having device numbers `lv_numbers` here
/// (`None`: not active here). A device of the mapping's name that is not proven on this
/// LV is not the volume's, and is left alone.
pub fn snapshot_hold(
    host: &dyn NodeHost,
    vg: &str,
    lv: &str,
    lv_numbers: Option<(u64, u64)>,
) -> Result<SnapshotHold, VolumeError> {
    let Some(name) = mapping_name(vg, lv) else {
        return Ok(SnapshotHold::NotOpen);
    };
    let Mapping::OnLv(numbers) = mapping_state(host, &name, lv_numbers) else {
        return Ok(SnapshotHold::NotOpen);
    };
    let mounts = host
        .mounts_of_device(numbers)
        .map_err(VolumeError::mount("reading the mount table"))?;
    // A mount of the filesystem's root (the staging mount) before a bind of a subdirectory.
    let at = mounts
        .iter()
        .find(|m| m.root == Path::new("/"))
        .or(mounts.first())
        .map(|m| m.mount_point.clone());
    Ok(match at {
        Some(p) => SnapshotHold::Freeze(p, numbers),
        None => SnapshotHold::OpenUnmounted,
    })
}

/// Thaws the filesystems on vglet's mappings that a process killed inside a snapshot's
/// freeze ([`SnapshotHold::Freeze`]) left frozen; returns the mount points it thawed. A
/// filesystem that is not frozen is left as it is.
pub fn thaw_left_frozen(host: &dyn NodeHost) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/dev/mapper") else {
        return Vec::new();
    };
    let mut thawed = Vec::new();
    for e in dir.flatten() {
        if !e.file_name().to_string_lossy().starts_with(MAPPING_PREFIX) {
            continue;
        }
        let Some(numbers) = host.device_numbers(&e.path()) else {
            continue;
        };
        let Some(m) = host
            .mounts_of_device(numbers)
            .ok()
            .and_then(|m| m.into_iter().next())
        else {
            continue;
        };
        match vglet_mount::thaw(&m.mount_point, numbers) {
            Ok(true) => thawed.push(m.mount_point),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot thaw an encrypted volume's filesystem"),
        }
    }
    thawed
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
    /// Under a first-format mark, the header an interrupted luksFormat left (no key
    /// slot): luksFormat again, then open.
    FormatAgainAndOpen,
}

impl Plan {
    pub fn formats(self) -> bool {
        matches!(self, Plan::FormatAndOpen | Plan::FormatAgainAndOpen)
    }
}

/// Whether the plan needs the header read ([`Header`]) before it can decide: a LUKS
/// signature under a first-format mark.
pub fn needs_header(marked: bool, mapping: Mapping, found: Option<&Signature>) -> bool {
    marked
        && mapping == Mapping::Absent
        && matches!(found, Some(Signature::Content { type_name, .. }) if type_name == LUKS_SIGNATURE)
}

/// The decision, from what was read. `found` is the LV's content by the first format's
/// evidence (`None`: nothing, lvcreate's zeroes or no blkid signature); `marked`: a first
/// format of this LV began and never finished; `header`: the header's key slots, read
/// when [`needs_header`]. A LUKS header with a key slot is never formatted again; one
/// without is formatted again only under the mark; a device holding anything else is
/// never formatted at all.
pub fn plan(
    id: &str,
    name: &str,
    adopted: bool,
    marked: bool,
    mapping: Mapping,
    found: Option<&Signature>,
    header: Option<&Header>,
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
        Some(Signature::Content { type_name, .. }) if type_name == LUKS_SIGNATURE => {
            match (marked, header) {
                (true, Some(Header::NoKeySlot)) => {
                    tracing::warn!(volume = %id,
                        "the first luksFormat was interrupted and left a header without a key slot; formatting again");
                    Ok(Plan::FormatAgainAndOpen)
                }
                (true, Some(Header::Unreadable(why))) => Err(VolumeError::Precondition(format!(
                    "encrypted volume {id}: its first format was interrupted, and its LUKS header cannot be read ({why}); refusing to format over it"
                ))),
                _ => Ok(Plan::Open),
            }
        }
        Some(other) => Err(VolumeError::Precondition(format!(
            "encrypted volume {id} holds {other}, not a LUKS header; refusing to format over data{}",
            if marked {
                " (its first format was interrupted, but this is not what luksFormat leaves)"
            } else {
                ""
            }
        ))),
    }
}

/// cryptsetup through the runner, where the binary started found it.
#[derive(Debug, Clone)]
pub struct Crypt {
    runner: Arc<dyn Runner>,
    cryptsetup: Result<PathBuf, ProgramMissing>,
    pbkdf: Pbkdf,
}

/// What [`Crypt::read`] found and decided for a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub name: String,
    pub lv_numbers: (u64, u64),
    pub plan: Plan,
}

impl Crypt {
    pub fn new(runner: Arc<dyn Runner>, programs: &Programs) -> Crypt {
        Crypt {
            runner,
            cryptsetup: programs.path(Program::Cryptsetup).map(Path::to_path_buf),
            pbkdf: Pbkdf::default(),
        }
    }

    /// The PBKDF cost of the key slots this driver writes.
    pub fn with_pbkdf(mut self, pbkdf: Pbkdf) -> Crypt {
        self.pbkdf = pbkdf;
        self
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

    /// Runs a keyed or unkeyed call; its stdout. A failure's text is argv and cryptsetup's
    /// stderr: the key is in neither.
    async fn run(&self, what: &str, cmd: Command) -> Result<String, VolumeError> {
        match self.runner.run(cmd).await {
            Ok(out) => Ok(out.stdout_lossy()),
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

    /// The key slot `key` opens on `dev`; `None` when it opens none.
    pub async fn slot_of(
        &self,
        id: &str,
        dev: &Path,
        key: &[u8],
    ) -> Result<Option<u32>, VolumeError> {
        let what = format!("checking a key of {id}");
        match self
            .run(
                &what,
                self.command(args::test_key(dev))?.stdin(key.to_vec()),
            )
            .await
        {
            Ok(out) => unlocked_slot(&out).map(Some).ok_or_else(|| {
                VolumeError::Internal(format!(
                    "{what}: cryptsetup accepted the key but named no key slot: {}",
                    out.trim()
                ))
            }),
            Err(VolumeError::Precondition(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// FAILED_PRECONDITION unless `key` opens the volume on `dev` (checked before a step
    /// that would not check it itself: `cryptsetup resize` takes the volume key from the
    /// open mapping when the kernel keyring does not hold it).
    pub async fn check_key(&self, id: &str, dev: &Path, key: &[u8]) -> Result<(), VolumeError> {
        self.available()?;
        match self.slot_of(id, dev, key).await? {
            Some(_) => Ok(()),
            None => Err(VolumeError::Precondition(format!(
                "encrypted volume {id}: the key in secret {KEY_SECRET:?} does not open it; nothing changed"
            ))),
        }
    }

    /// The header's key slots (see [`Header`]).
    pub async fn header(&self, id: &str, dev: &Path) -> Result<Header, VolumeError> {
        let out = self.runner.run(self.command(args::dump(dev))?).await;
        Ok(match out {
            Ok(o) => header_from_dump(&o.stdout_lossy()),
            Err(RunError::Failed { stderr, code, .. }) => Header::Unreadable(format!(
                "cryptsetup luksDump of {id}: exit {}: {}",
                code.map_or_else(|| "by signal".into(), |c| c.to_string()),
                stderr.trim()
            )),
            Err(e) => return Err(VolumeError::Internal(format!("luksDump of {id}: {e}"))),
        })
    }

    /// The read and the decision of a stage, nothing done yet: what the mapping is, the
    /// LV's content (`empty_head`: still lvcreate's zeroes, else blkid decides, as for
    /// mkfs), under a mark the header's key slots, then [`plan`].
    #[allow(clippy::too_many_arguments)]
    pub async fn prepare(
        &self,
        host: &dyn NodeHost,
        fs: &Filesystems,
        id: &str,
        vg: &str,
        lv: &str,
        dev: &Path,
        adopted: bool,
        empty_head: bool,
        marked: bool,
    ) -> Result<Prepared, VolumeError> {
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
        let header = if needs_header(marked, mapping, found.as_ref()) {
            Some(self.header(id, dev).await?)
        } else {
            None
        };
        let plan = plan(
            id,
            &name,
            adopted,
            marked,
            mapping,
            found.as_ref(),
            header.as_ref(),
        )?;
        Ok(Prepared {
            name,
            lv_numbers,
            plan,
        })
    }

    /// Carries out a [`Crypt::prepare`]d plan (the caller wrote the first-format mark
    /// before a plan that formats): luksFormat, a key rotation when `keys.previous` is
    /// given, open; then the mapping must be proven on the LV. Returns the mapping's
    /// device node and whether this call opened it.
    pub async fn act(
        &self,
        host: &dyn NodeHost,
        id: &str,
        dev: &Path,
        p: &Prepared,
        keys: Keys<'_>,
    ) -> Result<(PathBuf, bool), VolumeError> {
        let name = &p.name;
        match p.plan {
            Plan::Reuse(_) => {
                tracing::debug!(mapping = %name, "encryption mapping open on the LV already");
                self.rotate(id, dev, keys).await?;
                return Ok((mapping_path(name), false));
            }
            Plan::Open => {
                if let Err(e) = self.rotate(id, dev, keys).await {
                    return Err(self.explain_unopenable(id, dev, e).await);
                }
            }
            Plan::FormatAndOpen | Plan::FormatAgainAndOpen => {
                if keys.previous.is_some() {
                    tracing::info!("a new volume: the previous key of the secret is not used");
                }
                tracing::info!(device = %dev.display(), again = p.plan == Plan::FormatAgainAndOpen, "formatting LUKS2");
                self.run(
                    &format!("luksFormat of {id}"),
                    self.command(args::format(dev, &self.pbkdf))?
                        .stdin(keys.key.to_vec()),
                )
                .await?;
            }
        }
        let opened = self
            .run(
                &format!("opening encrypted volume {id}"),
                self.command(args::open(dev, name))?
                    .stdin(keys.key.to_vec()),
            )
            .await;
        if let Err(e) = opened {
            return Err(match p.plan {
                Plan::Open => self.explain_unopenable(id, dev, e).await,
                _ => e,
            });
        }
        match mapping_state(host, name, Some(p.lv_numbers)) {
            Mapping::OnLv(_) => {
                tracing::info!(mapping = %name, "encryption mapping opened");
                Ok((mapping_path(name), true))
            }
            m => Err(VolumeError::Internal(format!(
                "cryptsetup opened {name} for {id}, but it is not seen on the LV afterwards ({m:?})"
            ))),
        }
    }

    /// A refusal to open (no key opens it) said better where the header has no key slot at
    /// all (see [`unopenable`]); any other error, or a header that cannot be read, as it was.
    async fn explain_unopenable(&self, id: &str, dev: &Path, e: VolumeError) -> VolumeError {
        if !matches!(e, VolumeError::Precondition(_)) {
            return e;
        }
        match self.header(id, dev).await {
            Ok(h) => unopenable(id, &h, e),
            Err(_) => e,
        }
    }

    /// A key rotation's steps until [`rotation`] says done; nothing without a previous
    /// key (or one equal to the key). Each step reads which key opens which slot first.
    pub async fn rotate(&self, id: &str, dev: &Path, keys: Keys<'_>) -> Result<(), VolumeError> {
        let Some(previous) = keys.previous.filter(|p| *p != keys.key) else {
            return Ok(());
        };
        let new = self.slot_of(id, dev, keys.key).await?;
        let old = self.slot_of(id, dev, previous).await?;
        let kill = match rotation(id, new, old)? {
            Rotation::Done => {
                tracing::debug!(slot = ?new, "key rotation: only the new key opens the volume");
                return Ok(());
            }
            Rotation::KillOld(o) => o,
            Rotation::AddNewThenKillOld(o) => {
                tracing::info!(old_slot = o, "key rotation: adding the new key");
                self.run(
                    &format!("adding the new key to {id}"),
                    self.command(args::add_key(dev, &self.pbkdf))?
                        .stdin(previous.to_vec())
                        .extra_input(keys.key.to_vec()),
                )
                .await?;
                match self.slot_of(id, dev, keys.key).await? {
                    Some(n) if n != o => o,
                    n => {
                        return Err(VolumeError::Internal(format!(
                            "key rotation of {id}: after luksAddKey the new key opens slot {n:?}, the old one slot {o}; nothing removed"
                        )));
                    }
                }
            }
        };
        tracing::info!(slot = kill, "key rotation: removing the old key's slot");
        self.run(
            &format!("removing the old key of {id}"),
            self.command(args::kill_slot(dev, kill))?
                .stdin(keys.key.to_vec()),
        )
        .await?;
        match self.slot_of(id, dev, previous).await? {
            None => {
                tracing::info!("key rotation done: the old key no longer opens the volume");
                Ok(())
            }
            Some(s) => Err(VolumeError::Internal(format!(
                "key rotation of {id}: the old key still opens slot {s} after luksKillSlot"
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
        let none = Pbkdf::default();
        assert_eq!(
            s(args::format(dev, &none)),
            "luksFormat --type luks2 --batch-mode --key-file - /dev/vg0/csi-a"
        );
        let low = Pbkdf {
            iter_time_ms: Some(50),
            memory_kib: Some(32768),
            iterations: Some(4),
        };
        assert_eq!(
            s(args::format(dev, &low)),
            "luksFormat --type luks2 --batch-mode --key-file - /dev/vg0/csi-a \
             --iter-time 50 --pbkdf-memory 32768 --pbkdf-force-iterations 4"
        );
        assert_eq!(
            s(args::open(dev, "vglet-crypt-vg0-csi--a")),
            "open --type luks2 --key-file - /dev/vg0/csi-a vglet-crypt-vg0-csi--a"
        );
        assert_eq!(
            s(args::test_key(dev)),
            "open --type luks2 --test-passphrase --verbose --key-file - /dev/vg0/csi-a"
        );
        assert_eq!(
            s(args::dump(dev)),
            "luksDump --dump-json-metadata /dev/vg0/csi-a"
        );
        assert_eq!(
            s(args::add_key(dev, &none)),
            "luksAddKey --type luks2 --batch-mode --key-file - /dev/vg0/csi-a /dev/fd/3"
        );
        assert_eq!(
            s(args::kill_slot(dev, 1)),
            "luksKillSlot --type luks2 --batch-mode --key-file - /dev/vg0/csi-a 1"
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

    #[test]
    fn pbkdf_bounds() {
        assert!(Pbkdf::default().validate().is_ok());
        let p = |t, m, i| Pbkdf {
            iter_time_ms: t,
            memory_kib: m,
            iterations: i,
        };
        assert!(p(Some(1), Some(32), Some(4)).validate().is_ok());
        assert!(p(Some(0), None, None).validate().is_err());
        assert!(p(None, Some(31), None).validate().is_err());
        assert!(p(None, Some(5 << 20), None).validate().is_err());
        let e = p(None, None, Some(3)).validate().unwrap_err();
        assert!(e.contains("--luks-pbkdf-iterations"), "{e}");
    }

    fn precondition(r: Result<Plan, VolumeError>) -> String {
        match r {
            Err(VolumeError::Precondition(m)) => m,
            other => panic!("not a precondition: {other:?}"),
        }
    }

    fn luks() -> Signature {
        Signature::Content {
            type_name: LUKS_SIGNATURE.into(),
            usage: Some("crypto".into()),
        }
    }

    #[test]
    fn plan_formats_only_what_holds_nothing() {
        let luks = luks();
        let ext4 = Signature::Content {
            type_name: "ext4".into(),
            usage: Some("filesystem".into()),
        };
        let p = |adopted, m, f| plan("vg0/a", "n", adopted, false, m, f, None);
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
        // Without a mark, a header without key slot is opened (and refused by the key),
        // never formatted.
        assert_eq!(
            plan(
                "vg0/a",
                "n",
                false,
                false,
                Mapping::Absent,
                Some(&luks),
                Some(&Header::NoKeySlot)
            )
            .unwrap(),
            Plan::Open
        );
        assert!(!needs_header(false, Mapping::Absent, Some(&luks)));
    }

    #[test]
    fn under_a_mark_only_a_header_without_key_slot_is_formatted_again() {
        let luks = luks();
        let p =
            |h: Option<&Header>| plan("vg0/a", "n", false, true, Mapping::Absent, Some(&luks), h);
        assert!(needs_header(true, Mapping::Absent, Some(&luks)));
        assert!(!needs_header(true, Mapping::Absent, None));
        assert!(!needs_header(true, Mapping::OnLv((253, 1)), Some(&luks)));
        assert_eq!(
            p(Some(&Header::NoKeySlot)).unwrap(),
            Plan::FormatAgainAndOpen
        );
        assert_eq!(
            p(Some(&Header::Made { key_slots: 1 })).unwrap(),
            Plan::Open,
            "a made header is never formatted again, mark or not"
        );
        let e = precondition(p(Some(&Header::Unreadable("bad checksum".into()))));
        assert!(e.contains("bad checksum") && e.contains("refusing"), "{e}");
        // Nothing at all under the mark: formatted as the first time.
        assert_eq!(
            plan("vg0/a", "n", false, true, Mapping::Absent, None, None).unwrap(),
            Plan::FormatAndOpen
        );
        let swap = Signature::Content {
            type_name: "swap".into(),
            usage: None,
        };
        let e = precondition(plan(
            "vg0/a",
            "n",
            false,
            true,
            Mapping::Absent,
            Some(&swap),
            None,
        ));
        assert!(e.contains("not what luksFormat leaves"), "{e}");
        assert!(Plan::FormatAgainAndOpen.formats() && !Plan::Open.formats());
    }

    #[test]
    fn headers_and_slots_from_cryptsetup() {
        assert_eq!(
            header_from_dump(r#"{"keyslots":{},"tokens":{},"segments":{}}"#),
            Header::NoKeySlot
        );
        assert_eq!(
            header_from_dump(r#"{"keyslots":{"0":{"type":"luks2"},"3":{}},"tokens":{}}"#),
            Header::Made { key_slots: 2 }
        );
        assert!(matches!(header_from_dump("garbage"), Header::Unreadable(_)));
        assert_eq!(
            unlocked_slot(
                "No usable token is available.\nKey slot 1 unlocked.\nCommand successful.\n"
            ),
            Some(1)
        );
        assert_eq!(unlocked_slot("Command successful.\n"), None);
    }

    #[test]
    fn a_copy_without_a_key_slot_is_explained_not_blamed_on_the_key() {
        let refused = || VolumeError::Precondition("the key does not open it".into());
        let e = unopenable("vg/c", &Header::NoKeySlot, refused());
        let VolumeError::Precondition(m) = e else {
            panic!("{e:?}")
        };
        assert!(
            m.contains("no key slot")
                && m.contains("restore or clone")
                && m.contains("nothing changed"),
            "{m}"
        );
        // A made header: the key is wrong, and the refusal says so, as before.
        for h in [
            Header::Made { key_slots: 1 },
            Header::Unreadable("cut".into()),
        ] {
            let VolumeError::Precondition(m) = unopenable("vg/c", &h, refused()) else {
                panic!()
            };
            assert_eq!(m, "the key does not open it");
        }
    }

    #[test]
    fn rotation_converges_from_every_crash_point() {
        // Before: only the old key. After luksAddKey: both. After luksKillSlot: the new.
        assert_eq!(
            rotation("v", None, Some(0)).unwrap(),
            Rotation::AddNewThenKillOld(0)
        );
        assert_eq!(
            rotation("v", Some(1), Some(0)).unwrap(),
            Rotation::KillOld(0)
        );
        assert_eq!(rotation("v", Some(1), None).unwrap(), Rotation::Done);
        // One slot both open is never removed.
        assert_eq!(rotation("v", Some(2), Some(2)).unwrap(), Rotation::Done);
        let e = rotation("v", None, None).unwrap_err();
        let VolumeError::Precondition(m) = e else {
            panic!("{e:?}")
        };
        assert!(
            m.contains("previousPassphrase") && m.contains("nothing changed"),
            "{m}"
        );
        let k = Keys {
            key: b"s3cret",
            previous: Some(b"old-s3cret"),
        };
        assert!(!format!("{k:?}").contains("s3cret"));
    }

    #[test]
    fn a_snapshot_freezes_the_mount_of_the_mapping_on_the_lv() {
        use crate::host::FakeMount;
        let host = crate::FakeHost::new();
        let lv = (253, 1);
        let map = Path::new("/dev/mapper/vglet-crypt-vg0-csi--a");
        let hold = |lv_numbers| snapshot_hold(&host, "vg0", "csi-a", lv_numbers).unwrap();
        assert_eq!(hold(Some(lv)), SnapshotHold::NotOpen);
        host.add_mapping(map, (253, 2), "CRYPT-LUKS2-0123-vglet-crypt-vg0-csi--a", lv);
        // Open, nothing mounted (raw block).
        assert_eq!(hold(Some(lv)), SnapshotHold::OpenUnmounted);
        let mount = |path: &str, device| FakeMount {
            path: path.into(),
            device,
            block: false,
            read_only: false,
            options: vec![],
            fs_type: "ext4".into(),
        };
        // A mount of the LV itself is not the mapping's.
        host.add_mount(mount("/elsewhere", lv));
        assert_eq!(hold(Some(lv)), SnapshotHold::OpenUnmounted);
        host.add_mount(mount("/staging/a", (253, 2)));
        host.add_mount(mount("/pods/a", (253, 2)));
        assert_eq!(
            hold(Some(lv)),
            SnapshotHold::Freeze("/staging/a".into(), (253, 2))
        );
        // The mapping's name on another LV (or the LV not active here): not the volume's.
        assert_eq!(hold(Some((253, 9))), SnapshotHold::NotOpen);
        assert_eq!(hold(None), SnapshotHold::NotOpen);
        assert_eq!(
            snapshot_hold(&host, "vg0", &"x".repeat(200), Some(lv)).unwrap(),
            SnapshotHold::NotOpen
        );
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
}
