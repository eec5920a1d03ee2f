//! What callers ask lvm to do.

/// How to activate an LV. In a shared (lvmlockd) VG the mode is also the LV lock taken.
/// The node's state records keep it (lowercase names) for the reviver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `-ay`: local VGs; in a shared VG lvm treats it as exclusive.
    Local,
    /// `-aey`: exclusive on this host, fails while another host has it active.
    Exclusive,
    /// `-asy`: shared with other hosts (multi-writer block volumes on shared VGs).
    Shared,
}

impl Activation {
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Activation::Local => "-ay",
            Activation::Exclusive => "-aey",
            Activation::Shared => "-asy",
        }
    }
}

/// A new linear LV.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LvCreate {
    pub vg: String,
    pub name: String,
    /// Bytes. lvm rounds up to whole extents; callers that report a capacity should round
    /// with [`crate::round_up`] and the VG's extent size first, so the two agree.
    pub size: u64,
    pub tags: Vec<String>,
    /// Activate (and zero the start of) the new LV. `false` for shared VGs, where the LV
    /// is activated later on the node that uses it; it is then also excluded from
    /// autoactivation.
    pub activate: bool,
    /// The PVs lvm may allocate on (positional PV arguments, see
    /// [`crate::cache::data_pvs`]); empty: any of the VG's. Not used for thin LVs, whose
    /// blocks are the pool's.
    pub pvs: Vec<String>,
}
