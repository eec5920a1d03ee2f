//! What one pass did, per volume: for operators (text), for scripts (JSON) and for logs.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Something was missing and is back now (see the actions).
    Restored,
    /// Nothing to do.
    AlreadyFine,
    /// The LV no longer exists; its record was removed.
    Removed,
    /// Not (fully) restored; the reason says why.
    Failed,
    /// An encrypted volume: the reviver has no key (it is never stored on the node), so it
    /// leaves the volume to kubelet, whose NodeStageVolume brings the key again.
    NeedsKey,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Restored => "restored",
            Outcome::AlreadyFine => "already fine",
            Outcome::Removed => "removed",
            Outcome::Failed => "failed",
            Outcome::NeedsKey => "needs key, left to kubelet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeReport {
    /// The volume id, or for an unreadable record the record's file.
    pub volume_id: String,
    pub outcome: Outcome,
    /// What was done, in order ("activated", "mounted /path", ...).
    pub actions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl VolumeReport {
    pub fn new(volume_id: impl Into<String>) -> Self {
        VolumeReport {
            volume_id: volume_id.into(),
            outcome: Outcome::AlreadyFine,
            actions: Vec::new(),
            reason: None,
        }
    }

    pub fn failed(volume_id: impl Into<String>, reason: impl Into<String>) -> Self {
        VolumeReport {
            outcome: Outcome::Failed,
            reason: Some(reason.into()),
            ..VolumeReport::new(volume_id)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub restored: usize,
    pub already_fine: usize,
    pub removed: usize,
    pub failed: usize,
    /// Encrypted volumes left to kubelet's NodeStageVolume (see [`Outcome::NeedsKey`]).
    pub needs_key: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub volumes: Vec<VolumeReport>,
    pub summary: Summary,
    /// Volume groups it was told to wait for (--volume-group) that are not usable, each with
    /// the reason: a failure even when no record names them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_vgs: Vec<String>,
}

impl Report {
    pub fn push(&mut self, v: VolumeReport) {
        match v.outcome {
            Outcome::Restored => self.summary.restored += 1,
            Outcome::AlreadyFine => self.summary.already_fine += 1,
            Outcome::Removed => self.summary.removed += 1,
            Outcome::Failed => self.summary.failed += 1,
            Outcome::NeedsKey => self.summary.needs_key += 1,
        }
        self.volumes.push(v);
    }

    pub fn any_failed(&self) -> bool {
        self.summary.failed > 0 || !self.missing_vgs.is_empty()
    }

    pub fn text(&self) -> String {
        let width = self
            .volumes
            .iter()
            .map(|v| v.volume_id.len())
            .max()
            .unwrap_or(0);
        let mut s = String::new();
        for v in &self.volumes {
            let mut detail = v.actions.join(", ");
            if let Some(r) = &v.reason {
                if !detail.is_empty() {
                    detail.push_str("; ");
                }
                detail.push_str(r);
            }
            let _ = writeln!(
                s,
                "{:<width$}  {:<12}  {detail}",
                v.volume_id,
                v.outcome.as_str()
            );
        }
        for vg in &self.missing_vgs {
            let _ = writeln!(s, "FAILED: {vg}");
        }
        let m = &self.summary;
        let _ = writeln!(
            s,
            "{} volume(s): {} restored, {} already fine, {} removed, {} failed{}",
            self.volumes.len(),
            m.restored,
            m.already_fine,
            m.removed,
            m.failed,
            if m.needs_key > 0 {
                format!(
                    ", {} encrypted left to kubelet (need their key)",
                    m.needs_key
                )
            } else {
                String::new()
            }
        );
        s
    }
}

/// The report on stdout.
pub fn print(report: &Report, json: bool) {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("reviver: cannot encode the report: {e}"),
        }
    } else {
        print!("{}", report.text());
    }
}

/// One log line per volume that needed attention, and a summary (watch mode).
pub fn log(report: &Report) {
    for v in &report.volumes {
        match v.outcome {
            Outcome::AlreadyFine => {}
            Outcome::Failed => {
                tracing::error!(volume = %v.volume_id, reason = v.reason.as_deref().unwrap_or(""), actions = %v.actions.join("; "), "volume not restored")
            }
            o => {
                tracing::info!(volume = %v.volume_id, outcome = o.as_str(), actions = %v.actions.join("; "), reason = v.reason.as_deref().unwrap_or(""), "volume")
            }
        }
    }
    for vg in &report.missing_vgs {
        tracing::error!(reason = %vg, "volume group not usable");
    }
    let m = &report.summary;
    tracing::info!(
        restored = m.restored,
        already_fine = m.already_fine,
        removed = m.removed,
        failed = m.failed,
        needs_key = m.needs_key,
        "pass done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json() {
        let mut r = Report::default();
        let mut a = VolumeReport::new("vg0/csi-a");
        a.outcome = Outcome::Restored;
        a.actions = vec!["activated".into(), "mounted /s/a".into()];
        r.push(a);
        r.push(VolumeReport::new("vg0/csi-bb"));
        r.push(VolumeReport::failed(
            "vg0/csi-c",
            "volume group vg0 not found",
        ));
        assert!(r.any_failed());
        let t = r.text();
        assert!(
            t.contains("vg0/csi-a   restored      activated, mounted /s/a\n"),
            "{t}"
        );
        assert!(t.contains("vg0/csi-bb  already fine"), "{t}");
        assert!(
            t.contains("failed        volume group vg0 not found"),
            "{t}"
        );
        assert!(t.ends_with("3 volume(s): 1 restored, 1 already fine, 0 removed, 1 failed\n"));
        let j: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(j["volumes"][1]["outcome"], "already-fine");
        assert_eq!(j["summary"]["failed"], 1);
        assert!(j["volumes"][0].get("reason").is_none());
    }
}
