//! What csictl prints: our own serde structs mirroring the CSI responses (stable JSON for
//! scripts, sizes as plain byte numbers) and their text form.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use vglet_csi_proto::v1;

/// One command's result, ready to print.
#[derive(Debug)]
pub struct Report {
    pub json: serde_json::Value,
    pub text: String,
    pub exit: u8,
}

impl Report {
    pub fn new<T: Render>(value: &T) -> Report {
        Report::with_exit(value, crate::error::EXIT_OK)
    }

    pub fn with_exit<T: Render>(value: &T, exit: u8) -> Report {
        Report {
            // Our own plain structs: serialising them cannot fail.
            json: serde_json::to_value(value).expect("output structs serialise"),
            text: value.text(),
            exit,
        }
    }
}

/// A result that has a text form besides its JSON form.
pub trait Render: Serialize {
    fn text(&self) -> String;
}

#[derive(Debug, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub vendor_version: String,
    pub manifest: BTreeMap<String, String>,
    /// `service:CONTROLLER_SERVICE`, `volume_expansion:ONLINE`, ...
    pub capabilities: Vec<String>,
}

impl PluginInfo {
    pub fn from_proto(
        info: v1::GetPluginInfoResponse,
        caps: v1::GetPluginCapabilitiesResponse,
    ) -> Self {
        use v1::plugin_capability::{Type, service, volume_expansion};
        let capabilities = caps
            .capabilities
            .into_iter()
            .map(|c| match c.r#type {
                Some(Type::Service(s)) => {
                    format!(
                        "service:{}",
                        enum_name(s.r#type, |n| service::Type::try_from(n)
                            .ok()
                            .map(|t| t.as_str_name()))
                    )
                }
                Some(Type::VolumeExpansion(v)) => format!(
                    "volume_expansion:{}",
                    enum_name(v.r#type, |n| volume_expansion::Type::try_from(n)
                        .ok()
                        .map(|t| t.as_str_name()))
                ),
                None => "UNKNOWN".to_string(),
            })
            .collect();
        PluginInfo {
            name: info.name,
            vendor_version: info.vendor_version,
            manifest: sorted(info.manifest),
            capabilities,
        }
    }
}

impl Render for PluginInfo {
    fn text(&self) -> String {
        let mut t = Table::default();
        t.row("name", &self.name);
        t.row("vendor_version", &self.vendor_version);
        t.row("manifest", &kv_list(&self.manifest));
        t.row("capabilities", &self.capabilities.join(", "));
        t.finish()
    }
}

#[derive(Debug, Serialize)]
pub struct Probe {
    /// An unset `ready` means ready, per the spec.
    pub ready: bool,
}

impl Render for Probe {
    fn text(&self) -> String {
        if self.ready {
            "ready\n".into()
        } else {
            "not ready\n".into()
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Volume {
    pub volume_id: String,
    pub capacity_bytes: i64,
    pub volume_context: BTreeMap<String, String>,
    pub accessible_topology: Vec<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_source: Option<ContentSource>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ContentSource {
    SnapshotId(String),
    VolumeId(String),
}

impl Volume {
    pub fn from_proto(v: v1::Volume) -> Self {
        use v1::volume_content_source::Type;
        Volume {
            volume_id: v.volume_id,
            capacity_bytes: v.capacity_bytes,
            volume_context: sorted(v.volume_context),
            accessible_topology: v
                .accessible_topology
                .into_iter()
                .map(|t| sorted(t.segments))
                .collect(),
            content_source: v.content_source.and_then(|s| s.r#type).map(|t| match t {
                Type::Snapshot(s) => ContentSource::SnapshotId(s.snapshot_id),
                Type::Volume(v) => ContentSource::VolumeId(v.volume_id),
            }),
        }
    }

    fn rows(&self, t: &mut Table) {
        t.row("volume_id", &self.volume_id);
        t.row("capacity_bytes", &human_bytes(self.capacity_bytes));
        t.row("volume_context", &kv_list(&self.volume_context));
        let topo: Vec<String> = self.accessible_topology.iter().map(kv_list).collect();
        t.row("accessible_topology", &topo.join(" | "));
        match &self.content_source {
            Some(ContentSource::SnapshotId(id)) => {
                t.row("content_source", &format!("snapshot {id}"))
            }
            Some(ContentSource::VolumeId(id)) => t.row("content_source", &format!("volume {id}")),
            None => {}
        }
    }
}

impl Render for Volume {
    fn text(&self) -> String {
        let mut t = Table::default();
        self.rows(&mut t);
        t.finish()
    }
}

#[derive(Debug, Serialize)]
pub struct Condition {
    pub abnormal: bool,
    pub message: String,
}

impl Condition {
    fn from_proto(c: v1::VolumeCondition) -> Self {
        Condition {
            abnormal: c.abnormal,
            message: c.message,
        }
    }

    fn describe(&self) -> String {
        let state = if self.abnormal { "abnormal" } else { "normal" };
        if self.message.is_empty() {
            state.into()
        } else {
            format!("{state}: {}", self.message)
        }
    }
}

/// One volume with the status fields of ListVolumes / ControllerGetVolume.
#[derive(Debug, Serialize)]
pub struct VolumeWithStatus {
    #[serde(flatten)]
    pub volume: Volume,
    pub published_node_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl VolumeWithStatus {
    pub fn new(
        volume: Option<v1::Volume>,
        published: Vec<String>,
        condition: Option<v1::VolumeCondition>,
    ) -> Self {
        VolumeWithStatus {
            volume: Volume::from_proto(volume.unwrap_or_default()),
            published_node_ids: published,
            condition: condition.map(Condition::from_proto),
        }
    }

    fn rows(&self, t: &mut Table) {
        self.volume.rows(t);
        t.row("published_node_ids", &self.published_node_ids.join(", "));
        if let Some(c) = &self.condition {
            t.row("condition", &c.describe());
        }
    }
}

impl Render for VolumeWithStatus {
    fn text(&self) -> String {
        let mut t = Table::default();
        self.rows(&mut t);
        t.finish()
    }
}

#[derive(Debug, Serialize)]
pub struct VolumeList {
    pub entries: Vec<VolumeWithStatus>,
    /// Empty when this was the last page.
    pub next_token: String,
}

impl Render for VolumeList {
    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<40} {:>22}  CONTEXT", "VOLUME_ID", "CAPACITY");
        for e in &self.entries {
            let _ = writeln!(
                out,
                "{:<40} {:>22}  {}",
                e.volume.volume_id,
                human_bytes(e.volume.capacity_bytes),
                kv_list(&e.volume.volume_context)
            );
        }
        let _ = writeln!(out, "{} volume(s)", self.entries.len());
        if !self.next_token.is_empty() {
            let _ = writeln!(out, "more: --starting-token {}", self.next_token);
        }
        out
    }
}

/// ListVolumes entries that no known volume refers to.
#[derive(Debug, Serialize)]
pub struct Orphans {
    pub listed: usize,
    pub known: usize,
    pub orphans: Vec<Volume>,
}

pub fn orphans(listed: Vec<v1::Volume>, known: &std::collections::BTreeSet<String>) -> Orphans {
    let count = listed.len();
    let mut orphans: Vec<Volume> = listed
        .into_iter()
        .filter(|v| !known.contains(&v.volume_id))
        .map(Volume::from_proto)
        .collect();
    orphans.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    Orphans {
        listed: count,
        known: known.len(),
        orphans,
    }
}

impl Render for Orphans {
    fn text(&self) -> String {
        let mut out = String::new();
        if !self.orphans.is_empty() {
            let _ = writeln!(out, "{:<40} {:>22}", "VOLUME_ID", "CAPACITY");
        }
        for v in &self.orphans {
            let _ = writeln!(
                out,
                "{:<40} {:>22}",
                v.volume_id,
                human_bytes(v.capacity_bytes)
            );
        }
        let _ = writeln!(
            out,
            "{} orphan(s) among {} listed volume(s), {} known; nothing was deleted",
            self.orphans.len(),
            self.listed,
            self.known
        );
        out
    }
}

#[derive(Debug, Serialize)]
pub struct Capacity {
    pub available_capacity: i64,
    pub maximum_volume_size: Option<i64>,
    pub minimum_volume_size: Option<i64>,
}

impl Render for Capacity {
    fn text(&self) -> String {
        let opt = |v: Option<i64>| v.map(human_bytes).unwrap_or_else(|| "-".into());
        let mut t = Table::default();
        t.row("available_capacity", &human_bytes(self.available_capacity));
        t.row("maximum_volume_size", &opt(self.maximum_volume_size));
        t.row("minimum_volume_size", &opt(self.minimum_volume_size));
        t.finish()
    }
}

#[derive(Debug, Serialize)]
pub struct Expanded {
    pub volume_id: String,
    pub capacity_bytes: i64,
    /// Only ControllerExpandVolume reports this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_expansion_required: Option<bool>,
}

impl Render for Expanded {
    fn text(&self) -> String {
        let mut t = Table::default();
        t.row("volume_id", &self.volume_id);
        t.row("capacity_bytes", &human_bytes(self.capacity_bytes));
        if let Some(n) = self.node_expansion_required {
            t.row("node_expansion_required", &n.to_string());
        }
        t.finish()
    }
}

#[derive(Debug, Serialize)]
pub struct Validation {
    pub volume_id: String,
    pub confirmed: bool,
    pub message: String,
}

impl Render for Validation {
    fn text(&self) -> String {
        let verdict = if self.confirmed {
            "confirmed"
        } else {
            "NOT confirmed"
        };
        if self.message.is_empty() {
            format!("{}: {verdict}\n", self.volume_id)
        } else {
            format!("{}: {verdict}: {}\n", self.volume_id, self.message)
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Capabilities {
    /// Upper-case CSI names, e.g. `CREATE_DELETE_VOLUME`; unknown numbers as `UNKNOWN(n)`.
    pub capabilities: Vec<String>,
}

impl Capabilities {
    pub fn controller(resp: v1::ControllerGetCapabilitiesResponse) -> Self {
        use v1::controller_service_capability::{Type, rpc};
        let capabilities = resp
            .capabilities
            .into_iter()
            .map(|c| match c.r#type {
                Some(Type::Rpc(r)) => enum_name(r.r#type, |n| {
                    rpc::Type::try_from(n).ok().map(|t| t.as_str_name())
                }),
                None => "UNKNOWN".into(),
            })
            .collect();
        Capabilities { capabilities }
    }

    pub fn node(resp: v1::NodeGetCapabilitiesResponse) -> Self {
        use v1::node_service_capability::{Type, rpc};
        let capabilities = resp
            .capabilities
            .into_iter()
            .map(|c| match c.r#type {
                Some(Type::Rpc(r)) => enum_name(r.r#type, |n| {
                    rpc::Type::try_from(n).ok().map(|t| t.as_str_name())
                }),
                None => "UNKNOWN".into(),
            })
            .collect();
        Capabilities { capabilities }
    }
}

impl Render for Capabilities {
    fn text(&self) -> String {
        self.capabilities.iter().map(|c| format!("{c}\n")).collect()
    }
}

#[derive(Debug, Serialize)]
pub struct NodeInfo {
    pub node_id: String,
    /// 0: the plugin sets no limit.
    pub max_volumes_per_node: i64,
    pub accessible_topology: Option<BTreeMap<String, String>>,
}

impl NodeInfo {
    pub fn from_proto(r: v1::NodeGetInfoResponse) -> Self {
        NodeInfo {
            node_id: r.node_id,
            max_volumes_per_node: r.max_volumes_per_node,
            accessible_topology: r.accessible_topology.map(|t| sorted(t.segments)),
        }
    }
}

impl Render for NodeInfo {
    fn text(&self) -> String {
        let mut t = Table::default();
        t.row("node_id", &self.node_id);
        t.row(
            "max_volumes_per_node",
            &self.max_volumes_per_node.to_string(),
        );
        t.row(
            "accessible_topology",
            &self
                .accessible_topology
                .as_ref()
                .map(kv_list)
                .unwrap_or_default(),
        );
        t.finish()
    }
}

#[derive(Debug, Serialize)]
pub struct Usage {
    /// `BYTES` or `INODES`.
    pub unit: String,
    pub total: i64,
    pub used: i64,
    pub available: i64,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub volume_id: String,
    pub usage: Vec<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl Stats {
    pub fn from_proto(volume_id: String, r: v1::NodeGetVolumeStatsResponse) -> Self {
        use v1::volume_usage::Unit;
        Stats {
            volume_id,
            usage: r
                .usage
                .into_iter()
                .map(|u| Usage {
                    unit: enum_name(u.unit, |n| Unit::try_from(n).ok().map(|t| t.as_str_name())),
                    total: u.total,
                    used: u.used,
                    available: u.available,
                })
                .collect(),
            condition: r.volume_condition.map(Condition::from_proto),
        }
    }
}

impl Render for Stats {
    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<8} {:>24} {:>24} {:>24}",
            "UNIT", "TOTAL", "USED", "AVAILABLE"
        );
        for u in &self.usage {
            let fmt = |v: i64| {
                if u.unit == "BYTES" {
                    human_bytes(v)
                } else {
                    v.to_string()
                }
            };
            let _ = writeln!(
                out,
                "{:<8} {:>24} {:>24} {:>24}",
                u.unit,
                fmt(u.total),
                fmt(u.used),
                fmt(u.available)
            );
        }
        if let Some(c) = &self.condition {
            let _ = writeln!(out, "condition: {}", c.describe());
        }
        out
    }
}

/// Result of an RPC whose response is empty (delete, stage, publish, ...).
#[derive(Debug, Serialize)]
pub struct Done {
    pub volume_id: String,
    /// `deleted`, `staged`, `unstaged`, `published`, `unpublished`.
    pub result: &'static str,
}

impl Render for Done {
    fn text(&self) -> String {
        format!("{} {}\n", self.result, self.volume_id)
    }
}

/// `NAME` for a known enum number, `UNKNOWN(n)` otherwise (a newer plugin may send values this
/// build does not know).
fn enum_name(n: i32, name: impl Fn(i32) -> Option<&'static str>) -> String {
    name(n)
        .map(str::to_string)
        .unwrap_or_else(|| format!("UNKNOWN({n})"))
}

fn sorted(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

fn kv_list(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1073741824 (1 GiB)`; bytes alone below 1 KiB.
pub fn human_bytes(b: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = None;
    let mut v = b as f64;
    for u in UNITS {
        if v.abs() < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = Some(u);
    }
    match unit {
        None => b.to_string(),
        Some(u) => {
            let s = format!("{v:.2}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            format!("{b} ({s} {u})")
        }
    }
}

/// `key:  value` lines with aligned values.
#[derive(Default)]
struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    fn row(&mut self, k: &str, v: &str) {
        self.rows.push((k.to_string(), v.to_string()));
    }

    fn finish(self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        let mut out = String::new();
        for (k, v) in self.rows {
            let _ = writeln!(out, "{:<width$} {v}", format!("{k}:"), width = width);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_listed_volumes_not_known() {
        let vol = |id: &str| v1::Volume {
            volume_id: id.into(),
            capacity_bytes: 1 << 20,
            ..Default::default()
        };
        let known = ["vg0/b".to_string(), "vg0/zz".to_string()].into();
        let o = orphans(vec![vol("vg0/c"), vol("vg0/b"), vol("vg0/a")], &known);
        let ids: Vec<&str> = o.orphans.iter().map(|v| v.volume_id.as_str()).collect();
        assert_eq!(ids, vec!["vg0/a", "vg0/c"]);
        assert_eq!((o.listed, o.known), (3, 2));
        assert!(
            o.text()
                .ends_with("2 orphan(s) among 3 listed volume(s), 2 known; nothing was deleted\n")
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0");
        assert_eq!(human_bytes(1023), "1023");
        assert_eq!(human_bytes(1 << 30), "1073741824 (1 GiB)");
        assert_eq!(human_bytes(3 << 29), "1610612736 (1.5 GiB)");
        assert_eq!(human_bytes(100_000_000), "100000000 (95.37 MiB)");
    }

    #[test]
    fn volume_json_keeps_bytes_as_numbers() {
        let v = v1::Volume {
            capacity_bytes: 1 << 30,
            volume_id: "vg0/pvc-1".into(),
            volume_context: [("fs".to_string(), "xfs".to_string())].into(),
            content_source: None,
            accessible_topology: vec![v1::Topology {
                segments: [("node".to_string(), "n1".to_string())].into(),
            }],
        };
        let r = Report::new(&Volume::from_proto(v));
        assert_eq!(
            r.json,
            serde_json::json!({
                "volume_id": "vg0/pvc-1",
                "capacity_bytes": 1073741824,
                "volume_context": {"fs": "xfs"},
                "accessible_topology": [{"node": "n1"}],
            })
        );
        assert!(
            r.text.contains("capacity_bytes:      1073741824 (1 GiB)"),
            "{}",
            r.text
        );
        assert!(
            r.text.contains("accessible_topology: node=n1"),
            "{}",
            r.text
        );
    }

    #[test]
    fn unknown_enum_numbers_are_shown_not_dropped() {
        use v1::controller_service_capability as csc;
        let resp = v1::ControllerGetCapabilitiesResponse {
            capabilities: [1, 99]
                .into_iter()
                .map(|t| v1::ControllerServiceCapability {
                    r#type: Some(csc::Type::Rpc(csc::Rpc { r#type: t })),
                })
                .collect(),
        };
        assert_eq!(
            Capabilities::controller(resp).capabilities,
            ["CREATE_DELETE_VOLUME", "UNKNOWN(99)"]
        );
    }

    #[test]
    fn list_entries_flatten_the_volume() {
        let e = VolumeWithStatus::new(
            Some(v1::Volume {
                volume_id: "a".into(),
                ..Default::default()
            }),
            vec!["n1".into()],
            Some(v1::VolumeCondition {
                abnormal: true,
                message: "lv missing".into(),
            }),
        );
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["volume_id"], "a");
        assert_eq!(j["published_node_ids"][0], "n1");
        assert_eq!(j["condition"]["abnormal"], true);
        assert!(
            e.text()
                .contains("condition:           abnormal: lv missing"),
            "{}",
            e.text()
        );
    }
}
