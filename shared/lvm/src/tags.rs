//! The tags vglet writes on its LVs. They are the only record of which CSI volume an LV
//! holds, who owns it, what size was asked for and how it is formatted: the driver keeps no
//! state of its own, so everything it needs after a restart must be here.

use crate::naming::{decode_tag_value, encode_tag_value};

/// `vglet.owner=<driver name>`: only LVs carrying our driver's name are ever touched.
pub const OWNER_PREFIX: &str = "vglet.owner=";
/// `vglet.name=<encoded CSI name>`: the name the LV name was derived from.
pub const NAME_PREFIX: &str = "vglet.name=";
/// `vglet.size=<bytes>`: the requested capacity, before rounding to extents.
pub const SIZE_PREFIX: &str = "vglet.size=";
/// `vglet.fs=<fs type>` or `vglet.fs=block`.
pub const FS_PREFIX: &str = "vglet.fs=";
/// `vglet.adopt=<driver name>`, set by the operator on an LV that vglet did not create: the
/// named driver may use it as a static volume (stage, publish, expand, report) but never
/// removes it. It names the driver, as the owner tag does, so that one driver instance's
/// permission is not another's.
pub const ADOPT_PREFIX: &str = "vglet.adopt=";
/// `vglet.adopt.delete=<driver name>`: a second, separate opt-in that lets DeleteVolume
/// remove an adopted LV. Without `vglet.adopt=` as well it grants nothing.
pub const ADOPT_DELETE_PREFIX: &str = "vglet.adopt.delete=";

/// `vglet.creating`: carried by an LV from its lvcreate until CreateVolume finished every
/// step; the reconcile at start removes LVs that still carry it.
pub const CREATING_TAG: &str = "vglet.creating";
/// `vglet.create-id=<id>`: which CreateVolume attempt made the LV, written in lvcreate's
/// commit where the attempt is recorded by a create intent on the node instead of
/// [`CREATING_TAG`]; it lets an unfinished LV be told from one of the same name made
/// earlier, which must never be removed for it.
pub const CREATE_ID_PREFIX: &str = "vglet.create-id=";
/// `vglet.formatting=<mark>`: a shared volume's first format is in progress.
pub const FORMATTING_TAG_PREFIX: &str = "vglet.formatting=";

/// On a snapshot LV: the CSI snapshot name, encoded.
pub const SNAPSHOT_NAME_PREFIX: &str = "vglet.snapshot-name=";
/// On a snapshot LV: the source volume id, encoded.
pub const SOURCE_PREFIX: &str = "vglet.source=";
/// On a snapshot LV: seconds since the epoch.
pub const CREATED_PREFIX: &str = "vglet.created=";
/// The origin's size at the moment of the snapshot: what a restore needs at least. The LV
/// size of a thick snapshot is its COW area, which says nothing about that.
pub const SNAPSHOT_SIZE_PREFIX: &str = "vglet.snapshot-size=";

/// On a VG: vg-init manages it.
pub const MANAGED_TAG: &str = "vglet.managed=true";
/// Any value of the managed tag (only vg-init sets it).
pub const MANAGED_PREFIX: &str = "vglet.managed=";
/// On a VG: `vglet.vg-init=<version>`, which vg-init last shaped it.
pub const VG_INIT_PREFIX: &str = "vglet.vg-init=";

/// On a PV: `vglet.fast`, the fast tier of its VG (an NVMe disk or a PMEM namespace in a VG
/// of slower disks). vg-init sets it (`--fast-device`); the driver puts a volume's cache LV
/// only on PVs that carry it (`lvcreate ... VG @vglet.fast`), never on the others.
pub const FAST_PV_TAG: &str = "vglet.fast";

/// On a cache LV: `vglet.cache-of=<encoded LV name>`, the volume whose cache it is. With
/// the owner tag it is how the driver knows the cache LV is its own and whose it is, both
/// while it is a visible LV (made, not yet attached: a crash between the two steps) and
/// while lvm hides it as `[<name>_cvol]` (the tags go along). It carries no `vglet.name=`,
/// so it is never taken for a volume.
pub const CACHE_OF_PREFIX: &str = "vglet.cache-of=";

/// The tags of the cache LV of volume LV `lv`, made by `driver`.
pub fn cache_lv_tags(driver: &str, lv: &str) -> Vec<String> {
    vec![
        format!("{OWNER_PREFIX}{}", encode_tag_value(driver)),
        format!("{CACHE_OF_PREFIX}{}", encode_tag_value(lv)),
    ]
}

/// The volume LV whose cache an LV with these tags is, when `driver` made it; `None` for
/// every other LV (no or another owner, no or an unreadable `vglet.cache-of=`).
pub fn cache_of(tags: &[String], driver: &str) -> Option<String> {
    if !is_owned_by(tags, driver) {
        return None;
    }
    single_value(tags, CACHE_OF_PREFIX)
}

/// What the vglet tags of one LV say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeTags {
    pub owner: String,
    pub name: String,
    pub size: u64,
    pub fs: String,
}

impl VolumeTags {
    /// The tags to write, values encoded with [`encode_tag_value`].
    pub fn to_tags(&self) -> Vec<String> {
        vec![
            owner_tag(&self.owner),
            format!("{NAME_PREFIX}{}", encode_tag_value(&self.name)),
            format!("{SIZE_PREFIX}{}", self.size),
            format!("{FS_PREFIX}{}", encode_tag_value(&self.fs)),
        ]
    }

    /// Reads the vglet tags among an LV's tags. `None` when the LV has no owner tag (not
    /// created by vglet) or a vglet tag is missing, malformed or contradicts another.
    ///
    /// Two size tags are tolerated and the larger wins: a retag after an expansion adds the
    /// new size before deleting the old one, and a crash between the two must not orphan
    /// the volume. Other tags never change after creation, so a second, different value is
    /// corruption.
    pub fn from_tags(tags: &[String]) -> Option<VolumeTags> {
        let owner = single_value(tags, OWNER_PREFIX)?;
        let name = single_value(tags, NAME_PREFIX)?;
        let fs = single_value(tags, FS_PREFIX)?;
        let size = values(tags, SIZE_PREFIX)
            .map(|v| {
                // Digits only: u64::from_str would also take a leading '+'.
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                v.parse::<u64>().ok()
            })
            .collect::<Option<Vec<u64>>>()?
            .into_iter()
            .max()?;
        Some(VolumeTags {
            owner,
            name,
            size,
            fs,
        })
    }
}

/// What the tags of a snapshot LV say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTags {
    pub owner: String,
    pub name: String,
    /// The source volume id.
    pub source: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub size: u64,
}

impl SnapshotTags {
    pub fn to_tags(&self) -> Vec<String> {
        vec![
            format!("{OWNER_PREFIX}{}", encode_tag_value(&self.owner)),
            format!("{SNAPSHOT_NAME_PREFIX}{}", encode_tag_value(&self.name)),
            format!("{SOURCE_PREFIX}{}", encode_tag_value(&self.source)),
            format!("{CREATED_PREFIX}{}", self.created),
            format!("{SNAPSHOT_SIZE_PREFIX}{}", self.size),
        ]
    }

    /// `None` when a tag is missing, malformed or given twice with different values.
    pub fn from_tags(tags: &[String]) -> Option<SnapshotTags> {
        Some(SnapshotTags {
            owner: single_value(tags, OWNER_PREFIX)?,
            name: single_value(tags, SNAPSHOT_NAME_PREFIX)?,
            source: single_value(tags, SOURCE_PREFIX)?,
            created: single_value(tags, CREATED_PREFIX)?.parse().ok()?,
            size: single_value(tags, SNAPSHOT_SIZE_PREFIX)?.parse().ok()?,
        })
    }
}

/// What a volume was created to hold, as its `vglet.fs=` tag records it: the one place
/// that knows the tag's spelling of "raw block" (`block`), so no caller compares strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Content {
    /// A raw block device: never formatted, published as a device node.
    Block,
    /// A filesystem of this type (`ext4`, `xfs`), made on first stage.
    Filesystem(String),
}

impl Content {
    /// The tag value that means [`Content::Block`].
    pub const BLOCK: &'static str = "block";

    /// Reads a `vglet.fs=` value.
    pub fn from_tag(value: &str) -> Content {
        match value {
            Content::BLOCK => Content::Block,
            fs => Content::Filesystem(fs.to_string()),
        }
    }

    /// The `vglet.fs=` value.
    pub fn as_tag(&self) -> &str {
        match self {
            Content::Block => Content::BLOCK,
            Content::Filesystem(fs) => fs,
        }
    }

    /// The filesystem type, `None` for raw block.
    pub fn fs(&self) -> Option<&str> {
        match self {
            Content::Block => None,
            Content::Filesystem(fs) => Some(fs),
        }
    }

    pub fn is_block(&self) -> bool {
        matches!(self, Content::Block)
    }
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_tag())
    }
}

impl VolumeTags {
    /// What the `vglet.fs=` tag says the volume holds.
    pub fn content(&self) -> Content {
        Content::from_tag(&self.fs)
    }
}

/// `vglet.encryption=luks2` on an LV: CreateVolume was asked for an encrypted volume, so
/// the node puts LUKS2 between the LV and the filesystem. The tag, not the volume context
/// (which any PV author writes), is what the node believes: a volume created encrypted is
/// never staged in the clear.
pub const ENCRYPTION_PREFIX: &str = "vglet.encryption=";

/// How a volume is encrypted at rest, as its `vglet.encryption=` tag records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encryption {
    Luks2,
}

impl Encryption {
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Luks2 => "luks2",
        }
    }

    pub fn parse(s: &str) -> Option<Encryption> {
        (s == "luks2").then_some(Encryption::Luks2)
    }

    pub fn tag(self) -> String {
        format!("{ENCRYPTION_PREFIX}{}", self.as_str())
    }

    /// What an LV's tags say. `Err` when an encryption tag is there but not one this
    /// version knows (a newer driver's scheme, a hand-written tag): such a volume must
    /// be refused, never staged in the clear.
    pub fn from_tags(tags: &[String]) -> Result<Option<Encryption>, String> {
        let mut found = None;
        for v in tags
            .iter()
            .filter_map(|t| t.strip_prefix(ENCRYPTION_PREFIX))
        {
            let e = Encryption::parse(v).ok_or_else(|| format!("{ENCRYPTION_PREFIX}{v}"))?;
            if found.is_some_and(|f| f != e) {
                return Err(format!("two {ENCRYPTION_PREFIX} tags"));
            }
            found = Some(e);
        }
        Ok(found)
    }
}

/// `vglet.pmem=<mode>` on a VG: its PVs are persistent-memory namespaces of this mode.
/// vg-init writes it from the inventory; the driver chooses VGs by it and the node mounts
/// fsdax volumes with DAX because of it.
pub const PMEM_MODE_PREFIX: &str = "vglet.pmem=";
/// `vglet.pmem-region=<region>` on a VG: the one NVDIMM region all its PVs are in, so no
/// volume of the VG can span regions.
pub const PMEM_REGION_PREFIX: &str = "vglet.pmem-region=";

/// The namespace mode of persistent memory, the one enum for it: pmem-ns-init creates
/// namespaces in it (through vglet_ndctl, which re-exports it), disk-discover and vg-init
/// carry it, and a VG's `vglet.pmem=` tag records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PmemMode {
    /// Byte-addressable; filesystems on it can be mounted with DAX.
    Fsdax,
    /// Behind a BTT: block semantics with atomic sector writes, no DAX.
    Sector,
}

impl PmemMode {
    pub const ALL: [PmemMode; 2] = [PmemMode::Fsdax, PmemMode::Sector];

    pub fn as_str(self) -> &'static str {
        match self {
            PmemMode::Fsdax => "fsdax",
            PmemMode::Sector => "sector",
        }
    }

    pub fn parse(s: &str) -> Option<PmemMode> {
        PmemMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn tag(self) -> String {
        format!("{PMEM_MODE_PREFIX}{}", self.as_str())
    }
}

impl std::fmt::Display for PmemMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a VG's tags say about persistent memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VgPmem {
    /// No `vglet.pmem=` tag: an ordinary VG.
    None,
    Mode(PmemMode),
    /// Unknown or contradicting `vglet.pmem=` tags. Such a VG is neither chosen for a mode
    /// nor mounted with DAX: guessing could mount a sector device with DAX or the reverse.
    Bad,
}

impl VgPmem {
    pub fn from_tags(tags: &[String]) -> VgPmem {
        let mut found = None;
        for v in values(tags, PMEM_MODE_PREFIX) {
            let Some(m) = PmemMode::parse(v) else {
                return VgPmem::Bad;
            };
            if found.is_some_and(|f| f != m) {
                return VgPmem::Bad;
            }
            found = Some(m);
        }
        found.map_or(VgPmem::None, VgPmem::Mode)
    }

    pub fn mode(self) -> Option<PmemMode> {
        match self {
            VgPmem::Mode(m) => Some(m),
            _ => None,
        }
    }

    /// True only for a VG whose tags say fsdax without contradiction: its filesystems get
    /// DAX.
    pub fn is_fsdax(self) -> bool {
        self == VgPmem::Mode(PmemMode::Fsdax)
    }
}

/// True when the tags carry `vglet.owner=<driver_name>`.
pub fn is_owned_by(tags: &[String], driver_name: &str) -> bool {
    let want = format!("{OWNER_PREFIX}{}", encode_tag_value(driver_name));
    tags.contains(&want)
}

/// Why a driver may act on an LV, decided from its tags alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Created by this driver; the tags say what it is. Adopt tags on it change nothing.
    Created(VolumeTags),
    /// Created by someone else and handed to this driver with [`ADOPT_PREFIX`].
    Adopted { may_delete: bool },
    /// Carries vglet tags of another driver, of a snapshot or of an unfinished create, or
    /// malformed ones: the adopt tag cannot override them.
    Foreign,
    /// No vglet tags at all and no adopt tag for this driver.
    NotAdopted,
}

/// What `driver_name` may do with an LV carrying `tags`.
///
/// Any `vglet.` tag other than the adopt tags means the LV came from some vglet instance
/// (a volume, a snapshot, a half-done create): such an LV is never adoptable, so adopting
/// cannot turn another driver's volume or one of our snapshots into a volume.
pub fn claim(tags: &[String], driver_name: &str) -> Claim {
    if let Some(t) = VolumeTags::from_tags(tags) {
        // An adopt tag on a volume we created changes nothing: it was always ours.
        if t.owner == driver_name {
            return Claim::Created(t);
        }
        return Claim::Foreign;
    }
    if tags
        .iter()
        .any(|t| t.starts_with("vglet.") && !is_adopt_tag(t))
    {
        return Claim::Foreign;
    }
    let names = |prefix| values(tags, prefix).map(decode_tag_value);
    let mut adopters = names(ADOPT_PREFIX);
    if !adopters.any(|n| n.as_deref() == Some(driver_name)) {
        return Claim::NotAdopted;
    }
    let may_delete = names(ADOPT_DELETE_PREFIX).any(|n| n.as_deref() == Some(driver_name));
    Claim::Adopted { may_delete }
}

/// The adopt tags, and their bare names (a likely operator slip, answered with the right
/// spelling rather than "foreign").
fn is_adopt_tag(t: &str) -> bool {
    t.starts_with(ADOPT_PREFIX)
        || t.starts_with(ADOPT_DELETE_PREFIX)
        || t == "vglet.adopt"
        || t == "vglet.adopt.delete"
}

/// The tag that lets `driver_name` adopt an LV, as `lvchange --addtag` takes it.
pub fn adopt_tag(driver_name: &str) -> String {
    format!("{ADOPT_PREFIX}{}", encode_tag_value(driver_name))
}

/// `vglet.create-id=<id>` of one create attempt (`id`: letters and digits).
pub fn create_id_tag(id: &str) -> String {
    format!("{CREATE_ID_PREFIX}{}", encode_tag_value(id))
}

/// `vglet.owner=<driver>`, as an LV the driver created carries it.
pub fn owner_tag(driver_name: &str) -> String {
    format!("{OWNER_PREFIX}{}", encode_tag_value(driver_name))
}

/// The tag that lets `driver_name` remove an adopted LV.
pub fn adopt_delete_tag(driver_name: &str) -> String {
    format!("{ADOPT_DELETE_PREFIX}{}", encode_tag_value(driver_name))
}

/// VG tag `vglet.sanlock-host.<host_id>=<node>`, written by vg-init on each node that joins a
/// sanlock VG: a lease names its holder only by host_id, and an operator reading "in use on
/// another node" wants the node's name.
pub const SANLOCK_HOST_PREFIX: &str = "vglet.sanlock-host.";

/// The prefix of the host tag of `host_id`, up to and including the `=`.
pub fn sanlock_host_prefix(host_id: u64) -> String {
    format!("{SANLOCK_HOST_PREFIX}{host_id}=")
}

/// The VG tag saying that `node` uses sanlock `host_id`.
pub fn sanlock_host_tag(host_id: u64, node: &str) -> String {
    format!("{}{}", sanlock_host_prefix(host_id), encode_tag_value(node))
}

/// The node that uses sanlock `host_id`, from the VG's tags; `None` when no vg-init said so,
/// or two disagree.
pub fn sanlock_host_node(vg_tags: &[String], host_id: u64) -> Option<String> {
    single_value(vg_tags, &sanlock_host_prefix(host_id))
}

fn values<'a>(tags: &'a [String], prefix: &'a str) -> impl Iterator<Item = &'a str> {
    tags.iter().filter_map(move |t| t.strip_prefix(prefix))
}

fn single_value(tags: &[String], prefix: &str) -> Option<String> {
    let mut decoded = values(tags, prefix).map(decode_tag_value);
    let first = decoded.next()??;
    for other in decoded {
        if other? != first {
            return None;
        }
    }
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_lv_is_ours_by_its_tags_and_never_a_volume() {
        let tags = cache_lv_tags("vglet.io", "csi-pvc&1");
        assert_eq!(
            tags,
            vec![
                "vglet.owner=vglet.io".to_string(),
                "vglet.cache-of=csi-pvc&261".to_string()
            ]
        );
        assert_eq!(cache_of(&tags, "vglet.io").as_deref(), Some("csi-pvc&1"));
        assert_eq!(cache_of(&tags, "other.io"), None, "another driver's cache");
        assert_eq!(cache_of(&tags[1..], "vglet.io"), None, "no owner tag");
        // No vglet.name=: never claimed as a volume, so ListVolumes and orphans skip it.
        assert_eq!(claim(&tags, "vglet.io"), Claim::Foreign);
    }

    #[test]
    fn sanlock_host_tags_name_the_node_of_a_host_id() {
        let t = sanlock_host_tag(7, "worker-3.example.com");
        assert!(t.starts_with("vglet.sanlock-host.7="), "{t}");
        let tags = vec![t, sanlock_host_tag(17, "worker-9"), "other".to_string()];
        assert_eq!(
            sanlock_host_node(&tags, 7).as_deref(),
            Some("worker-3.example.com")
        );
        assert_eq!(sanlock_host_node(&tags, 17).as_deref(), Some("worker-9"));
        assert_eq!(sanlock_host_node(&tags, 1), None);
    }

    #[test]
    fn content_reads_and_writes_the_fs_tag() {
        assert_eq!(Content::from_tag("block"), Content::Block);
        assert_eq!(Content::from_tag("xfs"), Content::Filesystem("xfs".into()));
        assert_eq!(Content::Block.as_tag(), "block");
        assert_eq!(Content::Filesystem("ext4".into()).fs(), Some("ext4"));
        assert_eq!(Content::Block.fs(), None);
        let t = VolumeTags {
            fs: "block".into(),
            ..Default::default()
        };
        assert!(t.content().is_block());
    }

    fn sample() -> VolumeTags {
        VolumeTags {
            owner: "lvm.vglet.io".into(),
            name: "pvc 1/ü&x".into(),
            size: 10 * 1024 * 1024,
            fs: "ext4".into(),
        }
    }

    #[test]
    fn to_tags_writes_valid_encoded_tags() {
        let tags = sample().to_tags();
        assert_eq!(
            tags,
            vec![
                "vglet.owner=lvm.vglet.io",
                "vglet.name=pvc&201/&C3&BC&26x",
                "vglet.size=10485760",
                "vglet.fs=ext4",
            ]
        );
        for t in &tags {
            crate::naming::validate_tag(t).unwrap();
        }
    }

    #[test]
    fn round_trip_ignores_foreign_tags() {
        let mut tags = vec!["backup".to_string(), "team=a".to_string()];
        tags.extend(sample().to_tags());
        assert_eq!(VolumeTags::from_tags(&tags), Some(sample()));
    }

    #[test]
    fn not_owned_or_malformed_is_none() {
        let full = sample().to_tags();
        assert_eq!(VolumeTags::from_tags(&[]), None);
        assert_eq!(VolumeTags::from_tags(&["foo".to_string()]), None);
        for missing in 0..full.len() {
            let mut t = full.clone();
            t.remove(missing);
            assert_eq!(VolumeTags::from_tags(&t), None, "without {}", full[missing]);
        }
        for bad in [
            "vglet.size=abc",
            "vglet.size=",
            "vglet.size=+5",
            "vglet.size=-1",
        ] {
            let mut t = full.clone();
            t[2] = bad.to_string();
            assert_eq!(VolumeTags::from_tags(&t), None, "{bad}");
        }
        let mut t = full.clone();
        t[1] = "vglet.name=bad&zz".into();
        assert_eq!(VolumeTags::from_tags(&t), None);
    }

    #[test]
    fn conflicting_names_are_malformed_but_two_sizes_take_the_larger() {
        let mut t = sample().to_tags();
        t.push("vglet.name=other".into());
        assert_eq!(VolumeTags::from_tags(&t), None);

        let mut t = sample().to_tags();
        t.push("vglet.size=20971520".into());
        assert_eq!(VolumeTags::from_tags(&t).unwrap().size, 20971520);

        let mut t = sample().to_tags();
        t.push("vglet.fs=ext4".into());
        assert_eq!(VolumeTags::from_tags(&t), Some(sample()));
    }

    #[test]
    fn claims() {
        let d = "lvm.vglet.io";
        let adopt = adopt_tag(d);
        let delete = adopt_delete_tag(d);
        assert_eq!(adopt, "vglet.adopt=lvm.vglet.io");
        assert_eq!(delete, "vglet.adopt.delete=lvm.vglet.io");
        for t in [&adopt, &delete] {
            crate::naming::validate_tag(t).unwrap();
        }
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();

        assert_eq!(claim(&sample().to_tags(), d), Claim::Created(sample()));
        assert_eq!(claim(&sample().to_tags(), "other"), Claim::Foreign);
        assert_eq!(claim(&[], d), Claim::NotAdopted);
        assert_eq!(claim(&s(&["backup", "team=a"]), d), Claim::NotAdopted);
        assert_eq!(
            claim(&s(&["backup", &adopt]), d),
            Claim::Adopted { may_delete: false }
        );
        assert_eq!(
            claim(&s(&[&delete, &adopt]), d),
            Claim::Adopted { may_delete: true }
        );
        // The delete opt-in alone adopts nothing.
        assert_eq!(claim(&s(&[&delete]), d), Claim::NotAdopted);
        // Another driver's permission is not ours, nor is a prefix of our name.
        assert_eq!(claim(&s(&["vglet.adopt=other.io"]), d), Claim::NotAdopted);
        assert_eq!(claim(&s(&["vglet.adopt=lvm.vglet"]), d), Claim::NotAdopted);
        assert_eq!(claim(&s(&["vglet.adopt"]), d), Claim::NotAdopted);
        assert_eq!(
            claim(&s(&[&adopt, "vglet.adopt.delete=other.io"]), d),
            Claim::Adopted { may_delete: false }
        );
        // Adoption never overrides vglet's own tags: a volume of another driver, a
        // snapshot, an unfinished create, half a tag set.
        let mut other = sample();
        other.owner = "other.io".into();
        let mut t = other.to_tags();
        t.push(adopt.clone());
        assert_eq!(claim(&t, d), Claim::Foreign);
        // Our own volume stays ours with an adopt tag added.
        let mut t = sample().to_tags();
        t.extend([adopt.clone()]);
        assert_eq!(claim(&t, d), Claim::Created(sample()));
        for marker in [
            "vglet.snapshot-name=s1",
            "vglet.creating",
            "vglet.owner=lvm.vglet.io",
            "vglet.fs=ext4",
        ] {
            assert_eq!(claim(&s(&[marker, &adopt]), d), Claim::Foreign, "{marker}");
        }
    }

    #[test]
    fn ownership() {
        let tags = sample().to_tags();
        assert!(is_owned_by(&tags, "lvm.vglet.io"));
        assert!(!is_owned_by(&tags, "other.vglet.io"));
        assert!(!is_owned_by(&tags, "lvm.vglet"));
        assert!(!is_owned_by(&[], "lvm.vglet.io"));
    }

    #[test]
    fn pmem_mode_from_vg_tags() {
        let t =
            |v: &[&str]| VgPmem::from_tags(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(t(&[]), VgPmem::None);
        assert_eq!(t(&["vglet.managed=true"]), VgPmem::None);
        assert_eq!(t(&["vglet.pmem=fsdax"]), VgPmem::Mode(PmemMode::Fsdax));
        assert!(t(&["vglet.pmem-region=region0", "vglet.pmem=fsdax"]).is_fsdax());
        assert_eq!(
            t(&["vglet.pmem=sector", "vglet.pmem=sector"]).mode(),
            Some(PmemMode::Sector)
        );
        assert_eq!(t(&["vglet.pmem=fsdax", "vglet.pmem=sector"]), VgPmem::Bad);
        assert_eq!(t(&["vglet.pmem=devdax"]), VgPmem::Bad);
        assert!(!t(&["vglet.pmem=FSDAX"]).is_fsdax());
        assert_eq!(PmemMode::Sector.tag(), "vglet.pmem=sector");
        crate::naming::validate_tag(&PmemMode::Fsdax.tag()).unwrap();
        crate::naming::validate_tag(&format!("{PMEM_REGION_PREFIX}region12")).unwrap();
    }

    #[test]
    fn encryption_tag() {
        let t = Encryption::Luks2.tag();
        assert_eq!(t, "vglet.encryption=luks2");
        assert_eq!(
            Encryption::from_tags(&["a".into(), t.clone()]),
            Ok(Some(Encryption::Luks2))
        );
        assert_eq!(Encryption::from_tags(&["vglet.fs=ext4".into()]), Ok(None));
        // An unknown scheme is an error, never "not encrypted".
        assert!(Encryption::from_tags(&["vglet.encryption=luks9".into()]).is_err());
    }
}
