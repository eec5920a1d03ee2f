//! The VG/PV/LV records vglet reads, and the parser for `lvm fullreport` JSON.
//!
//! lvm's JSON is loosely typed: numbers arrive as strings, unset values as empty strings,
//! tags as one comma-separated string. The parser accepts JSON numbers as well, since
//! later lvm releases can print them (`--reportformat json_std`).

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Columns asked of the `vg` subreport; everything [`Vg`] holds and nothing else, which
/// keeps the output of a VG with hundreds of LVs small.
pub const VG_FIELDS: &[&str] = &[
    "vg_name",
    "vg_uuid",
    "vg_attr",
    "vg_size",
    "vg_free",
    "vg_extent_size",
    "vg_extent_count",
    "vg_free_count",
    "pv_count",
    "vg_missing_pv_count",
    "lv_count",
    "vg_tags",
    "vg_lock_type",
    "vg_systemid",
];
/// Columns of the `pv` subreport.
pub const PV_FIELDS: &[&str] = &[
    "pv_name", "vg_name", "pv_uuid", "pv_attr", "pv_size", "pv_free", "pv_tags",
];
/// Columns of the `lv` subreport. `segtype` is a segment column: asking for it here makes
/// lvm 2.03.16 fail ("contains columns which lead to change of report type"), so it comes
/// from the `seg` subreport.
pub const LV_FIELDS: &[&str] = &[
    "vg_name",
    "lv_name",
    "lv_uuid",
    "lv_attr",
    "lv_size",
    "lv_active",
    "lv_tags",
    "lv_path",
    "lv_dm_path",
    "lv_layout",
    "lv_role",
    "pool_lv",
    "origin",
    "data_percent",
    "metadata_percent",
    "copy_percent",
    "lv_health_status",
    "lv_lock_args",
    // A cached volume's statistics (crate::cache::CacheStats); empty for other LVs.
    "cache_total_blocks",
    "cache_used_blocks",
    "cache_dirty_blocks",
    "cache_read_hits",
    "cache_read_misses",
    "cache_write_hits",
    "cache_write_misses",
    "writecache_total_blocks",
    "writecache_free_blocks",
    "writecache_writeback_blocks",
    "writecache_error",
];
/// Columns of the `seg` subreport: the first segment's type is the LV's type.
pub const SEG_FIELDS: &[&str] = &["lv_uuid", "seg_start", "segtype"];
/// fullreport always prints a `pvseg` subreport; one small column keeps it cheap.
pub const PVSEG_FIELDS: &[&str] = &["pvseg_start"];

/// A volume group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vg {
    pub name: String,
    pub uuid: String,
    /// Bytes.
    pub size: u64,
    /// Bytes.
    pub free: u64,
    /// Bytes; every LV is a whole number of these.
    pub extent_size: u64,
    pub extent_count: u64,
    pub free_count: u64,
    pub pv_count: u64,
    pub missing_pv_count: u64,
    pub lv_count: u64,
    pub tags: Vec<String>,
    /// `""` for a local VG; `sanlock` or `dlm` for a shared (lvmlockd) VG.
    pub lock_type: String,
    pub system_id: String,
    /// `vg_attr`, e.g. `wz--n-`; the sixth character is `s` for shared VGs.
    pub attr: String,
}

impl Vg {
    /// Whether the VG is shared between hosts through lvmlockd.
    pub fn is_shared(&self) -> bool {
        is_shared_lock_type(&self.lock_type)
    }
}

/// The one reading of a VG's `lock_type` field: lvm reports `""` (or `none`) for a local VG
/// and the lock manager's name for a VG shared through lvmlockd. For code that holds the
/// field without a [`Vg`] (vg-init's own view of a VG).
pub fn is_shared_lock_type(lock_type: &str) -> bool {
    !matches!(lock_type, "" | "none")
}

/// A physical volume; `vg` is empty for a PV that belongs to no VG.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pv {
    pub name: String,
    pub vg: String,
    pub uuid: String,
    pub attr: String,
    /// Bytes.
    pub size: u64,
    /// Bytes.
    pub free: u64,
    /// `pv_tags`, e.g. [`crate::tags::FAST_PV_TAG`].
    pub tags: Vec<String>,
}

/// A logical volume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lv {
    pub vg: String,
    /// As lvm prints it: hidden sub-LVs come in brackets, e.g. `[pool_tdata]`.
    pub name: String,
    pub uuid: String,
    /// Bytes.
    pub size: u64,
    /// `lv_attr`, e.g. `-wi-a-----`. Without device-mapper lvm prints `X` for the state
    /// columns it cannot know.
    pub attr: String,
    /// Active on this host.
    pub active: bool,
    pub tags: Vec<String>,
    /// `/dev/<vg>/<lv>`; the udev-made link, present only while active.
    pub path: String,
    /// `/dev/mapper/<vg>-<lv>` (hyphens doubled).
    pub dm_path: String,
    /// Type of the first segment: `linear`, `striped`, `thin`, `thin-pool`, ...
    pub segtype: String,
    pub pool_lv: String,
    pub origin: String,
    /// Thin and snapshot usage in percent; `None` where it does not apply or is unknown.
    pub data_percent: Option<f64>,
    /// Thin pool metadata usage in percent; `None` for other LVs.
    pub metadata_percent: Option<f64>,
    /// RAID/mirror synchronisation in percent; `None` for LVs without copies or while
    /// inactive.
    pub copy_percent: Option<f64>,
    /// `lv_health_status`: empty when healthy, else `partial`, `refresh needed`,
    /// `mismatches exist`, ... (filled only while active).
    pub health_status: String,
    /// `lv_layout`, e.g. `linear`, `thin,sparse`.
    pub layout: String,
    /// `lv_role`, e.g. `public`, `private,thin,pool,data`.
    pub role: String,
    /// `lv_lock_args` in a shared VG: for sanlock `<version>:<lease offset>` in the VG's
    /// `lvmlock` LV. Empty in local VGs.
    pub lock_args: String,
    /// The statistics of a cached LV (all `None` for others and while inactive).
    pub cache: crate::cache::CacheStats,
}

impl Lv {
    /// LVM's internal sub-LVs (pool data/metadata, mirror images, spare metadata): never a
    /// CSI volume.
    pub fn is_hidden(&self) -> bool {
        self.name.starts_with('[') || self.role.split(',').any(|r| r == "private")
    }
}

/// What one `lvm fullreport` saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub vgs: Vec<Vg>,
    pub pvs: Vec<Pv>,
    pub lvs: Vec<Lv>,
}

impl Report {
    pub fn vg(&self, name: &str) -> Option<&Vg> {
        self.vgs.iter().find(|v| v.name == name)
    }

    pub fn lv(&self, vg: &str, name: &str) -> Option<&Lv> {
        self.lvs.iter().find(|l| l.vg == vg && l.name == name)
    }

    pub fn lvs_in<'a>(&'a self, vg: &'a str) -> impl Iterator<Item = &'a Lv> + 'a {
        self.lvs.iter().filter(move |l| l.vg == vg)
    }

    pub fn pvs_in<'a>(&'a self, vg: &'a str) -> impl Iterator<Item = &'a Pv> + 'a {
        self.pvs.iter().filter(move |p| p.vg == vg)
    }
}

/// Parses the stdout of `lvm fullreport --reportformat json --units b --nosuffix`.
///
/// The output holds one element per VG (plus one for PVs outside any VG); they are merged.
/// Subreports other than vg/pv/lv/seg (pvseg, a command log) are ignored.
pub fn parse_fullreport(stdout: &str) -> Result<Report, String> {
    // lvm prints nothing but the JSON on stdout, but a stray line before it must not turn
    // a good report into an error.
    let start = stdout
        .find('{')
        .ok_or_else(|| "no JSON object in lvm output".to_string())?;
    let root: Value =
        serde_json::from_str(&stdout[start..]).map_err(|e| format!("invalid JSON: {e}"))?;
    let elements = root
        .get("report")
        .and_then(Value::as_array)
        .ok_or_else(|| "no \"report\" array".to_string())?;
    let mut report = Report::default();
    for element in elements {
        let element = element
            .as_object()
            .ok_or_else(|| "report element is not an object".to_string())?;
        let segtypes = first_segment_types(element)?;
        for row in rows(element, "vg")? {
            report.vgs.push(parse_vg(row)?);
        }
        for row in rows(element, "pv")? {
            report.pvs.push(parse_pv(row)?);
        }
        for row in rows(element, "lv")? {
            report.lvs.push(parse_lv(row, &segtypes)?);
        }
    }
    Ok(report)
}

type Row = Map<String, Value>;

fn rows<'a>(element: &'a Row, key: &str) -> Result<Vec<&'a Row>, String> {
    match element.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| format!("{key} row is not an object"))
            })
            .collect(),
        Some(_) => Err(format!("{key} subreport is not an array")),
    }
}

/// lv_uuid -> segtype of the segment that starts at 0.
fn first_segment_types(element: &Row) -> Result<HashMap<String, String>, String> {
    let mut types = HashMap::new();
    for row in rows(element, "seg")? {
        let uuid = text(row, "lv_uuid")?;
        let first = matches!(number(row, "seg_start")?, Some(0));
        if first || !types.contains_key(&uuid) {
            types.insert(uuid, text(row, "segtype")?);
        }
    }
    Ok(types)
}

/// A column as text: "" when unset or absent (an older lvm without that column).
fn text(row: &Row, key: &str) -> Result<String, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format!("{key}: unexpected value {other}")),
    }
}

/// A column that identifies the row; a report without it is useless.
fn required(row: &Row, key: &str) -> Result<String, String> {
    let v = text(row, key)?;
    if v.is_empty() {
        return Err(format!("row without {key}"));
    }
    Ok(v)
}

/// A whole number: `None` when unset. lvm prints -1 for "unknown" in a few columns.
fn number(row: &Row, key: &str) -> Result<Option<u64>, String> {
    let t = text(row, key)?;
    match t.as_str() {
        "" | "-1" => Ok(None),
        s => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{key}: {s:?} is not a whole number")),
    }
}

fn count(row: &Row, key: &str) -> Result<u64, String> {
    Ok(number(row, key)?.unwrap_or(0))
}

fn percent(row: &Row, key: &str) -> Result<Option<f64>, String> {
    let t = text(row, key)?;
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<f64>()
        .map(Some)
        .map_err(|_| format!("{key}: {t:?} is not a number"))
}

fn tags(row: &Row, key: &str) -> Result<Vec<String>, String> {
    Ok(text(row, key)?
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect())
}

fn parse_vg(row: &Row) -> Result<Vg, String> {
    Ok(Vg {
        name: required(row, "vg_name")?,
        uuid: text(row, "vg_uuid")?,
        size: count(row, "vg_size")?,
        free: count(row, "vg_free")?,
        extent_size: count(row, "vg_extent_size")?,
        extent_count: count(row, "vg_extent_count")?,
        free_count: count(row, "vg_free_count")?,
        pv_count: count(row, "pv_count")?,
        missing_pv_count: count(row, "vg_missing_pv_count")?,
        lv_count: count(row, "lv_count")?,
        tags: tags(row, "vg_tags")?,
        lock_type: text(row, "vg_lock_type")?,
        system_id: text(row, "vg_systemid")?,
        attr: text(row, "vg_attr")?,
    })
}

fn parse_pv(row: &Row) -> Result<Pv, String> {
    Ok(Pv {
        name: required(row, "pv_name")?,
        vg: text(row, "vg_name")?,
        uuid: text(row, "pv_uuid")?,
        attr: text(row, "pv_attr")?,
        size: count(row, "pv_size")?,
        free: count(row, "pv_free")?,
        tags: tags(row, "pv_tags")?,
    })
}

fn parse_lv(row: &Row, segtypes: &HashMap<String, String>) -> Result<Lv, String> {
    let uuid = text(row, "lv_uuid")?;
    let attr = text(row, "lv_attr")?;
    // lv_active is "active" when active; the attr state column says the same and is what
    // older lvm releases fill reliably.
    let active = text(row, "lv_active")? == "active" || attr.chars().nth(4) == Some('a');
    Ok(Lv {
        vg: required(row, "vg_name")?,
        name: required(row, "lv_name")?,
        segtype: segtypes.get(&uuid).cloned().unwrap_or_default(),
        uuid,
        size: count(row, "lv_size")?,
        attr,
        active,
        tags: tags(row, "lv_tags")?,
        path: text(row, "lv_path")?,
        dm_path: text(row, "lv_dm_path")?,
        pool_lv: text(row, "pool_lv")?,
        origin: text(row, "origin")?,
        data_percent: percent(row, "data_percent")?,
        metadata_percent: percent(row, "metadata_percent")?,
        copy_percent: percent(row, "copy_percent")?,
        health_status: text(row, "lv_health_status")?,
        layout: text(row, "lv_layout")?,
        role: text(row, "lv_role")?,
        // Selected as `lv_lock_args`, but lvm 2.03 names the JSON key `lv_lockargs`.
        lock_args: text(row, "lv_lockargs")?,
        cache: crate::cache::CacheStats {
            total_blocks: number(row, "cache_total_blocks")?,
            used_blocks: number(row, "cache_used_blocks")?,
            dirty_blocks: number(row, "cache_dirty_blocks")?,
            read_hits: number(row, "cache_read_hits")?,
            read_misses: number(row, "cache_read_misses")?,
            write_hits: number(row, "cache_write_hits")?,
            write_misses: number(row, "cache_write_misses")?,
            writecache_total_blocks: number(row, "writecache_total_blocks")?,
            writecache_free_blocks: number(row, "writecache_free_blocks")?,
            writecache_writeback_blocks: number(row, "writecache_writeback_blocks")?,
            writecache_error: number(row, "writecache_error")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-written in lvm's layout for what this host cannot produce (no device-mapper):
    /// an active LV, a thin pool with a thin LV, a shared VG, JSON numbers.
    const ACTIVE_THIN_SHARED: &str = r#"  {
      "report": [
          {
              "vg": [
                  {"vg_name":"shared", "vg_uuid":"U1", "vg_attr":"wz--ns", "vg_size":"1073741824", "vg_free":"536870912", "vg_extent_size":"4194304", "vg_extent_count":"256", "vg_free_count":"128", "pv_count":"1", "vg_missing_pv_count":"0", "lv_count":"3", "vg_tags":"vglet.kind=shared,x", "vg_lock_type":"sanlock", "vg_systemid":""}
              ]
              ,
              "pv": [
                  {"pv_name":"/dev/sdb", "vg_name":"shared", "pv_uuid":"P1", "pv_attr":"a--", "pv_size":1073741824, "pv_free":536870912}
              ]
              ,
              "lv": [
                  {"vg_name":"shared", "lv_name":"csi-a", "lv_uuid":"L1", "lv_attr":"-wi-a-----", "lv_size":"8388608", "lv_active":"active", "lv_tags":"vglet.owner=lvm.vglet.io", "lv_path":"/dev/shared/csi-a", "lv_dm_path":"/dev/mapper/shared-csi--a", "lv_layout":"linear", "lv_role":"public", "pool_lv":"", "origin":"", "data_percent":""},
                  {"vg_name":"shared", "lv_name":"pool", "lv_uuid":"L2", "lv_attr":"twi-a-tz--", "lv_size":"104857600", "lv_active":"active", "lv_tags":"", "lv_path":"", "lv_dm_path":"/dev/mapper/shared-pool", "lv_layout":"thin,pool", "lv_role":"private", "pool_lv":"", "origin":"", "data_percent":"12.50", "metadata_percent":"3.25", "copy_percent":"", "lv_health_status":""},
                  {"vg_name":"shared", "lv_name":"thin1", "lv_uuid":"L3", "lv_attr":"Vwi---tz--", "lv_size":"209715200", "lv_active":"", "lv_tags":"", "lv_path":"/dev/shared/thin1", "lv_dm_path":"/dev/mapper/shared-thin1", "lv_layout":"thin,sparse", "lv_role":"public", "pool_lv":"pool", "origin":"", "data_percent":"0.00"},
                  {"vg_name":"shared", "lv_name":"[pool_tdata]", "lv_uuid":"L4", "lv_attr":"Twi-ao----", "lv_size":"104857600", "lv_active":"active", "lv_tags":"", "lv_path":"", "lv_dm_path":"/dev/mapper/shared-pool_tdata", "lv_layout":"linear", "lv_role":"private,thin,pool,data", "pool_lv":"", "origin":"", "data_percent":""}
              ]
              ,
              "pvseg": [
                  {"pvseg_start":"0"}
              ]
              ,
              "seg": [
                  {"lv_uuid":"L1", "seg_start":"4194304", "segtype":"striped"},
                  {"lv_uuid":"L1", "seg_start":"0", "segtype":"linear"},
                  {"lv_uuid":"L2", "seg_start":"0", "segtype":"thin-pool"},
                  {"lv_uuid":"L3", "seg_start":"0", "segtype":"thin"},
                  {"lv_uuid":"L4", "seg_start":"0", "segtype":"linear"}
              ]
          }
      ]
  }
"#;

    #[test]
    fn active_thin_and_shared() {
        let r = parse_fullreport(ACTIVE_THIN_SHARED).unwrap();
        let vg = r.vg("shared").unwrap();
        assert!(vg.is_shared());
        assert_eq!(vg.tags, vec!["vglet.kind=shared", "x"]);
        assert_eq!(vg.lock_type, "sanlock");
        assert_eq!(r.pvs[0].size, 1073741824);
        let a = r.lv("shared", "csi-a").unwrap();
        assert!(a.active);
        assert_eq!(a.segtype, "linear");
        assert_eq!(a.data_percent, None);
        assert!(!a.is_hidden());
        let pool = r.lv("shared", "pool").unwrap();
        assert_eq!(pool.segtype, "thin-pool");
        assert_eq!(pool.data_percent, Some(12.5));
        assert_eq!(pool.metadata_percent, Some(3.25));
        assert_eq!(pool.copy_percent, None);
        assert_eq!(pool.health_status, "");
        assert!(pool.is_hidden());
        let thin = r.lv("shared", "thin1").unwrap();
        assert!(!thin.active);
        assert_eq!(thin.pool_lv, "pool");
        assert_eq!(thin.segtype, "thin");
        assert_eq!(thin.data_percent, Some(0.0));
        assert!(r.lv("shared", "[pool_tdata]").unwrap().is_hidden());
        assert_eq!(r.lvs_in("shared").count(), 4);
        assert_eq!(r.lvs_in("other").count(), 0);
    }

    #[test]
    fn attr_alone_marks_active() {
        let json = r#"{"report":[{"lv":[{"vg_name":"v","lv_name":"l","lv_attr":"-wi-a-----","lv_active":""}]}]}"#;
        assert!(parse_fullreport(json).unwrap().lvs[0].active);
        let json = r#"{"report":[{"lv":[{"vg_name":"v","lv_name":"l","lv_attr":"-wi-XX----","lv_active":""}]}]}"#;
        assert!(!parse_fullreport(json).unwrap().lvs[0].active);
    }

    #[test]
    fn raid_sync_and_health() {
        let json = r#"{"report":[{"lv":[{"vg_name":"v","lv_name":"r","lv_attr":"rwi-a-r-r-","lv_active":"active","copy_percent":"42.50","lv_health_status":"refresh needed"}]}]}"#;
        let lv = &parse_fullreport(json).unwrap().lvs[0];
        assert_eq!(lv.copy_percent, Some(42.5));
        assert_eq!(lv.health_status, "refresh needed");
        assert_eq!(lv.metadata_percent, None);
    }

    #[test]
    fn empty_report_is_empty() {
        let r = parse_fullreport("  {\n      \"report\": [\n      ]\n  }\n").unwrap();
        assert_eq!(r, Report::default());
    }

    #[test]
    fn malformed_output_is_an_error_not_a_panic() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"report": {}}"#,
            r#"{"report": [1]}"#,
            r#"{"report": [{"vg": {}}]}"#,
            r#"{"report": [{"vg": [1]}]}"#,
            r#"{"report": [{"vg": [{"vg_name": ""}]}]}"#,
            r#"{"report": [{"vg": [{"vg_name": "v", "vg_size": "12x"}]}]}"#,
            r#"{"report": [{"vg": [{"vg_name": "v", "vg_size": "-5"}]}]}"#,
            r#"{"report": [{"vg": [{"vg_name": "v", "vg_size": [1]}]}]}"#,
            r#"{"report": [{"lv": [{"vg_name": "v", "lv_name": "l", "data_percent": "x"}]}]}"#,
            r#"{"report": [{"lv": [{"vg_name": "v", "lv_name": "l"}]"#,
        ] {
            assert!(parse_fullreport(bad).is_err(), "{bad:?} parsed");
        }
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use crate::tags::VolumeTags;

    const ONE_VG: &str = include_str!("../tests/fixtures/fullreport_one_vg.json");
    const ALL: &str = include_str!("../tests/fixtures/fullreport_all_with_orphan_pv.json");

    #[test]
    fn real_report_of_one_vg() {
        let r = parse_fullreport(ONE_VG).unwrap();
        assert_eq!(r.vgs.len(), 1);
        let vg = &r.vgs[0];
        assert_eq!(vg.name, "vgletx");
        assert_eq!(vg.uuid, "deyjxD-pldh-tpcU-JyDF-EjUp-a7Hc-CMPSpP");
        assert_eq!(vg.attr, "wz--n-");
        assert_eq!(vg.size, 205520896);
        assert_eq!(vg.free, 171966464);
        assert_eq!(vg.extent_size, 4 << 20);
        assert_eq!(vg.extent_count, 49);
        assert_eq!(vg.free_count, 41);
        assert_eq!(vg.free, vg.free_count * vg.extent_size);
        assert_eq!((vg.pv_count, vg.lv_count, vg.missing_pv_count), (1, 3, 0));
        assert_eq!(vg.tags, vec!["vglet.kind=local"]);
        assert_eq!(vg.lock_type, "");
        assert!(!vg.is_shared());
        assert_eq!(vg.system_id, "");

        assert_eq!(r.pvs.len(), 1);
        assert_eq!(r.pvs[0].name, "/dev/loop0");
        assert_eq!(r.pvs[0].vg, "vgletx");
        assert_eq!(r.pvs[0].size, 205520896);

        assert_eq!(r.lvs.len(), 3);
        let pvc = r.lv("vgletx", "csi-pvc-1").unwrap();
        assert_eq!(pvc.size, 20 << 20);
        assert_eq!(pvc.uuid, "7VQg9j-boUs-LlJL-ck0B-xD2S-fFrX-PfylpR");
        assert_eq!(pvc.attr, "-wi-XX----");
        assert!(!pvc.active);
        assert_eq!(pvc.path, "/dev/vgletx/csi-pvc-1");
        assert_eq!(pvc.dm_path, "/dev/mapper/vgletx-csi--pvc--1");
        assert_eq!(pvc.segtype, "linear");
        assert_eq!(
            (pvc.layout.as_str(), pvc.role.as_str()),
            ("linear", "public")
        );
        assert_eq!(pvc.data_percent, None);
        assert!(!pvc.is_hidden());
        let t = VolumeTags::from_tags(&pvc.tags).unwrap();
        assert_eq!(
            t,
            VolumeTags {
                owner: "lvm.vglet.io".into(),
                name: "pvc-1".into(),
                size: 10 << 20,
                fs: "ext4".into()
            }
        );
        let hashed = r.lv("vgletx", "csi-my_vol+0123456789abcdef").unwrap();
        assert_eq!(VolumeTags::from_tags(&hashed.tags).unwrap().name, "my vol");
        let other = r.lv("vgletx", "other").unwrap();
        assert!(other.tags.is_empty());
        assert_eq!(VolumeTags::from_tags(&other.tags), None);
    }

    #[test]
    fn real_report_of_everything_keeps_orphan_pvs() {
        let r = parse_fullreport(ALL).unwrap();
        assert_eq!(r.vgs.len(), 1);
        assert_eq!(r.lvs.len(), 3);
        assert_eq!(r.pvs.len(), 2);
        let orphan = r.pvs.iter().find(|p| p.name == "/dev/loop1").unwrap();
        assert_eq!(orphan.vg, "");
        assert_eq!(orphan.size, 100 << 20);
        assert_eq!(r.pvs_in("vgletx").count(), 1);
    }

    #[test]
    fn reads_lock_args_under_lvms_json_key() {
        let json = r#"{"report":[{"vg":[{"vg_name":"svg","vg_uuid":"u","vg_attr":"wz--ns","vg_size":"100","vg_free":"50","vg_extent_size":"4","vg_extent_count":"25","vg_free_count":"12","pv_count":"1","vg_missing_pv_count":"0","lv_count":"1","vg_tags":"","vg_lock_type":"sanlock","vg_systemid":""}],
            "pv":[],"lv":[{"vg_name":"svg","lv_name":"x","lv_uuid":"LCXS4I","lv_attr":"-wi-a-----","lv_size":"8388608","lv_active":"active","lv_tags":"","lv_path":"/dev/svg/x","lv_dm_path":"/dev/mapper/svg-x","lv_layout":"linear","lv_role":"public","pool_lv":"","origin":"","data_percent":"","lv_lockargs":"1.0.0:70254592"}],
            "pvseg":[],"seg":[]}]}"#;
        let r = parse_fullreport(json).unwrap();
        assert_eq!(r.lvs[0].lock_args, "1.0.0:70254592");
        assert_eq!(r.vgs[0].lock_type, "sanlock");
    }

    /// Rows as lvm 2.03.16 printed them in the guest for a dm-cache and a dm-writecache
    /// volume and a PV of the fast tier (tests/e2e/tests/cache_tier.rs).
    #[test]
    fn reads_cache_statistics_and_pv_tags() {
        let json = r#"{"report":[{"vg":[{"vg_name":"vgs"}],
          "pv":[{"pv_name":"/dev/vda","vg_name":"vgs","pv_tags":""},
                {"pv_name":"/dev/vdb","vg_name":"vgs","pv_tags":"vglet.fast"}],
          "lv":[{"vg_name":"vgs","lv_name":"main","lv_uuid":"u1","pool_lv":"[main_cache_cvol]",
                 "origin":"[main_corig]","cache_total_blocks":"896","cache_used_blocks":"0",
                 "cache_dirty_blocks":"0","cache_read_hits":"7","cache_read_misses":"2",
                 "cache_write_hits":"0","cache_write_misses":"10","writecache_free_blocks":""},
                {"vg_name":"vgs","lv_name":"w","lv_uuid":"u2","writecache_total_blocks":"127100",
                 "writecache_free_blocks":"106588","writecache_writeback_blocks":"0",
                 "writecache_error":"0","cache_dirty_blocks":""}],
          "seg":[{"lv_uuid":"u1","seg_start":"0","segtype":"cache"},
                 {"lv_uuid":"u2","seg_start":"0","segtype":"writecache"}]}]}"#;
        let r = parse_fullreport(json).unwrap();
        assert_eq!(r.pvs[0].tags, Vec::<String>::new());
        assert_eq!(r.pvs[1].tags, vec!["vglet.fast".to_string()]);
        let c = &r.lv("vgs", "main").unwrap().cache;
        assert_eq!(
            (c.total_blocks, c.read_hits, c.read_misses, c.write_misses),
            (Some(896), Some(7), Some(2), Some(10))
        );
        assert_eq!(c.dirty(), Some(0));
        assert_eq!(c.writecache_free_blocks, None);
        let w = &r.lv("vgs", "w").unwrap().cache;
        assert_eq!(w.dirty_blocks, None);
        assert_eq!(w.dirty(), Some(127100 - 106588));
        assert_eq!(w.writecache_error, Some(0));
    }
}
