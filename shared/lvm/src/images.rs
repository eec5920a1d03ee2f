//! An LV's images and the PVs under each, from `lvs -a -o lv_name,segtype,devices` of the LV
//! and its sub-LVs: what a redundancy change decides on (which PVs already hold a copy,
//! which image to drop, whether integrity sits under the images). The fullreport's `seg`
//! subreport carries no devices (one column more per segment of every LV of every read),
//! so this is a read of its own, run only by the operations that change an LV's layout.

use serde_json::Value;

/// Columns of the images read.
pub const IMAGE_FIELDS: &[&str] = &["lv_name", "segtype", "devices", "copy_percent"];

/// One segment row: an LV (brackets of hidden sub-LVs removed), its type and what it maps
/// onto (PVs `/dev/...`, sub-LVs by name, `[unknown]` for a missing PV).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRow {
    pub lv: String,
    pub segtype: String,
    pub devices: Vec<String>,
    pub copy_percent: Option<f64>,
}

/// One image of an LV: the LV itself for linear, `<lv>_rimage_<n>` for RAID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    /// The PVs the image's data lives on (in the order lvm lists them); `[unknown]` for a
    /// missing one.
    pub pvs: Vec<String>,
    /// dm-integrity is layered under this image (`--raidintegrity y`).
    pub integrity: bool,
}

impl Image {
    /// Every PV of the image is present.
    pub fn is_whole(&self) -> bool {
        !self.pvs.is_empty() && self.pvs.iter().all(|p| p.starts_with("/dev/"))
    }
}

/// What the images read says about one LV.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LvImages {
    /// The first segment's type of the LV itself (`linear`, `raid1`, `striped`, ...); empty
    /// when the read did not show the LV.
    pub segtype: String,
    /// Linear and striped LVs: one image, the LV; RAID: its `rimage` sub-LVs in order.
    pub images: Vec<Image>,
    /// The RAID metadata sub-LVs' PVs (one extent each), for the space they take.
    pub meta_pvs: Vec<String>,
    /// A cached LV (`segtype` `cache` or `writecache`): the segment type of its origin
    /// (`<lv>_corig` / `<lv>_wcorig`, what the LV is under the cache), whose images
    /// `images` and `meta_pvs` then are.
    pub cached_origin: Option<String>,
}

impl LvImages {
    pub fn integrity(&self) -> bool {
        self.images.iter().any(|i| i.integrity)
    }

    /// Every PV that holds part of an image.
    pub fn pvs(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for p in self.images.iter().flat_map(|i| i.pvs.iter()) {
            if !all.contains(&p.as_str()) {
                all.push(p);
            }
        }
        all
    }
}

/// `lv_name="a" || lv_name=~"^a_"`: the LV and its sub-LVs (`a_rimage_0`, `a_rmeta_0`,
/// `a_rimage_0_iorig`, ...). `+` and `.` are allowed in LV names and are regex operators, so
/// they go in brackets; LV names are validated before use and hold no quote.
pub fn lv_and_sub_lvs_selection(lv: &str) -> String {
    let mut re = String::new();
    for c in lv.chars() {
        match c {
            '+' | '.' => {
                re.push('[');
                re.push(c);
                re.push(']');
            }
            c => re.push(c),
        }
    }
    format!(r#"lv_name="{lv}" || lv_name=~"^{re}_""#)
}

/// `cache_rimage_0(0)` → `cache_rimage_0`; `/dev/vda(12)` → `/dev/vda`.
fn device_name(d: &str) -> String {
    let d = d.trim();
    match d.rfind('(') {
        Some(i) if d.ends_with(')') => d[..i].to_string(),
        _ => d.to_string(),
    }
}

fn strip_brackets(name: &str) -> &str {
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
}

fn text(row: &serde_json::Map<String, Value>, key: &str) -> String {
    match row.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Parses `lvs -a --reportformat json -o` [`IMAGE_FIELDS`].
pub fn parse_rows(stdout: &str) -> Result<Vec<SegmentRow>, String> {
    let start = stdout
        .find('{')
        .ok_or_else(|| "no JSON object in lvm output".to_string())?;
    let root: Value =
        serde_json::from_str(&stdout[start..]).map_err(|e| format!("invalid JSON: {e}"))?;
    let elements = root
        .get("report")
        .and_then(Value::as_array)
        .ok_or_else(|| "no \"report\" array".to_string())?;
    let mut out = Vec::new();
    for element in elements {
        let Some(rows) = element.get("lv").and_then(Value::as_array) else {
            continue;
        };
        for row in rows {
            let row = row
                .as_object()
                .ok_or_else(|| "lv row is not an object".to_string())?;
            let devices = text(row, "devices");
            let copy = text(row, "copy_percent");
            out.push(SegmentRow {
                lv: strip_brackets(&text(row, "lv_name")).to_string(),
                segtype: text(row, "segtype"),
                devices: devices
                    .split(',')
                    .filter(|d| !d.trim().is_empty())
                    .map(device_name)
                    .collect(),
                copy_percent: if copy.is_empty() {
                    None
                } else {
                    Some(
                        copy.parse::<f64>()
                            .map_err(|_| format!("copy_percent: {copy:?} is not a number"))?,
                    )
                },
            });
        }
    }
    Ok(out)
}

/// The PVs under `name`, following sub-LVs (integrity's `_iorig`, ...) down to devices.
fn pvs_under(rows: &[SegmentRow], name: &str, depth: usize, out: &mut Vec<String>) {
    for row in rows.iter().filter(|r| r.lv == name) {
        for d in &row.devices {
            let is_lv = rows.iter().any(|r| &r.lv == d);
            if is_lv && depth < 8 {
                pvs_under(rows, d, depth + 1, out);
            } else if !out.contains(d) {
                out.push(d.clone());
            }
        }
    }
}

/// The images of `lv` among `rows` (a read of it and its sub-LVs).
pub fn images_of(rows: &[SegmentRow], lv: &str) -> LvImages {
    let own: Vec<&SegmentRow> = rows.iter().filter(|r| r.lv == lv).collect();
    let Some(first) = own.first() else {
        return LvImages::default();
    };
    let segtype = first.segtype.clone();
    if crate::cache::CacheMode::of_segtype(&segtype).is_some()
        && let Some(origin) = first
            .devices
            .first()
            .filter(|d| rows.iter().any(|r| &r.lv == *d))
    {
        let under = images_of(rows, origin);
        return LvImages {
            segtype,
            cached_origin: Some(under.segtype),
            images: under.images,
            meta_pvs: under.meta_pvs,
        };
    }
    // The LV maps onto sub-LVs (RAID images, a cache's origin) or straight onto PVs.
    let subs: Vec<String> = own
        .iter()
        .flat_map(|r| r.devices.iter())
        .filter(|d| rows.iter().any(|r| &r.lv == *d))
        .cloned()
        .collect();
    if subs.is_empty() {
        let mut pvs = Vec::new();
        pvs_under(rows, lv, 0, &mut pvs);
        return LvImages {
            segtype,
            images: vec![Image {
                name: lv.to_string(),
                pvs,
                integrity: false,
            }],
            meta_pvs: Vec::new(),
            cached_origin: None,
        };
    }
    let images = subs
        .iter()
        .map(|name| {
            let mut pvs = Vec::new();
            pvs_under(rows, name, 0, &mut pvs);
            Image {
                name: name.clone(),
                pvs,
                integrity: rows
                    .iter()
                    .any(|r| &r.lv == name && r.segtype == "integrity"),
            }
        })
        .collect();
    let meta_prefix = format!("{lv}_rmeta_");
    let mut meta_pvs = Vec::new();
    for r in rows.iter().filter(|r| r.lv.starts_with(&meta_prefix)) {
        pvs_under(rows, &r.lv, 0, &mut meta_pvs);
    }
    LvImages {
        segtype,
        images,
        meta_pvs,
        cached_origin: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(json_rows: &[(&str, &str, &str)]) -> String {
        let rows: Vec<String> = json_rows
            .iter()
            .map(|(n, t, d)| {
                format!(r#"{{"lv_name":"{n}","segtype":"{t}","devices":"{d}","copy_percent":""}}"#)
            })
            .collect();
        format!(r#"{{"report":[{{"lv":[{}]}}]}}"#, rows.join(","))
    }

    /// As lvm 2.03.16 shows a raid1 volume with a writecache (`lvs -a` of it and its
    /// sub-LVs; the cachevol is not among them, its name is its own).
    #[test]
    fn a_cached_volume_shows_its_origins_images() {
        let r = parse_rows(&rows(&[
            ("csi-a", "writecache", "csi-a_wcorig(0)"),
            (
                "[csi-a_wcorig]",
                "raid1",
                "csi-a_wcorig_rimage_0(0),csi-a_wcorig_rimage_1(0)",
            ),
            ("[csi-a_wcorig_rimage_0]", "linear", "/dev/vda(1)"),
            ("[csi-a_wcorig_rimage_1]", "linear", "/dev/vdb(1)"),
            ("[csi-a_wcorig_rmeta_0]", "linear", "/dev/vda(0)"),
            ("[csi-a_wcorig_rmeta_1]", "linear", "/dev/vdb(0)"),
        ]))
        .unwrap();
        let i = images_of(&r, "csi-a");
        assert_eq!(i.segtype, "writecache");
        assert_eq!(i.cached_origin.as_deref(), Some("raid1"));
        assert_eq!(i.pvs(), vec!["/dev/vda", "/dev/vdb"]);
        assert_eq!(i.meta_pvs, vec!["/dev/vda", "/dev/vdb"]);
        let lin = parse_rows(&rows(&[
            ("csi-a", "cache", "csi-a_corig(0)"),
            ("[csi-a_corig]", "linear", "/dev/vda(0)"),
        ]))
        .unwrap();
        let i = images_of(&lin, "csi-a");
        assert_eq!(i.cached_origin.as_deref(), Some("linear"));
        assert_eq!(i.images.len(), 1);
        assert_eq!(i.images[0].pvs, vec!["/dev/vda"]);
    }

    #[test]
    fn selection_brackets_regex_operators() {
        assert_eq!(
            lv_and_sub_lvs_selection("csi-a.b+c"),
            r#"lv_name="csi-a.b+c" || lv_name=~"^csi-a[.]b[+]c_""#
        );
    }

    #[test]
    fn linear_is_one_image_on_its_pvs() {
        let r = parse_rows(&rows(&[
            ("lv", "linear", "/dev/vda(0)"),
            ("lv", "linear", "/dev/vdb(10)"),
        ]))
        .unwrap();
        let i = images_of(&r, "lv");
        assert_eq!(i.segtype, "linear");
        assert_eq!(i.images.len(), 1);
        assert_eq!(i.images[0].pvs, ["/dev/vda", "/dev/vdb"]);
        assert!(!i.integrity());
    }

    #[test]
    fn raid1_images_in_order_with_integrity_followed_down() {
        let r = parse_rows(&rows(&[
            (
                "lv",
                "raid1",
                "lv_rimage_0(0),lv_rimage_1(0),lv_rimage_2(0)",
            ),
            ("[lv_rimage_0]", "linear", "/dev/vda(0)"),
            ("[lv_rimage_1]", "integrity", "lv_rimage_1_iorig(0)"),
            ("[lv_rimage_1_iorig]", "linear", "/dev/vdb(1)"),
            ("[lv_rimage_1_imeta]", "linear", "/dev/vdb(70)"),
            ("[lv_rimage_2]", "linear", "[unknown](1)"),
            ("[lv_rmeta_0]", "linear", "/dev/vda(64)"),
            ("[lv_rmeta_1]", "linear", "/dev/vdb(0)"),
        ]))
        .unwrap();
        let i = images_of(&r, "lv");
        assert_eq!(i.segtype, "raid1");
        let names: Vec<&str> = i.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lv_rimage_0", "lv_rimage_1", "lv_rimage_2"]);
        assert_eq!(i.images[1].pvs, ["/dev/vdb"]);
        assert!(i.images[1].integrity && !i.images[0].integrity);
        assert!(i.integrity());
        assert!(i.images[0].is_whole() && !i.images[2].is_whole());
        assert_eq!(i.pvs(), ["/dev/vda", "/dev/vdb", "[unknown]"]);
        assert_eq!(i.meta_pvs, ["/dev/vda", "/dev/vdb"]);
    }

    #[test]
    fn an_lv_the_read_does_not_show_has_no_images() {
        assert_eq!(images_of(&[], "lv"), LvImages::default());
        assert!(parse_rows("nothing").is_err());
    }
}
