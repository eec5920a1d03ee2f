//! A crash during a volume's first format never bricks it: the mark and the format
//! decision are [`vglet_volume::first_format`]'s (see there for the why); this module holds
//! the driver's start-up pass over the marks. DeleteVolume removes a volume's local mark
//! (the tag goes with the LV); the start-up reconcile reports marks older than
//! [`STUCK_AFTER`] with their volume ids and drops local marks whose LV is gone.

use vglet_state::StateStore;

use crate::rules::volume_id::VolumeId;

use vglet_lvm::tags::FORMATTING_TAG_PREFIX;
/// The decision and the marks are the node-volume library's (staging uses them); the
/// start-up pass over the marks is the driver's.
pub use vglet_volume::first_format::{STUCK_AFTER, now_unix, tag_on};

/// A mark the start-up pass found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundMark {
    pub volume_id: String,
    pub age_secs: u64,
}

/// What the start-up pass found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Startup {
    /// Older than [`STUCK_AFTER`]: logged as stuck.
    pub stuck: Vec<FoundMark>,
    /// Local marks of LVs that no longer exist (or another LV of the name): removed.
    pub stale: Vec<String>,
}

/// Reports stuck marks (local records and, from `report`, formatting tags of the served
/// VGs) and drops local marks whose LV is gone. `report` is the start-up lvm report; a VG
/// it does not show is left alone (its LVs are unknown, not absent).
pub fn at_start(
    store: Option<&StateStore>,
    report: Option<&vglet_lvm::Report>,
    served: &[String],
    now: u64,
) -> Startup {
    let mut out = Startup::default();
    let age = |started: u64| now.saturating_sub(started);
    let mut note = |volume_id: String, started: u64| {
        let found = FoundMark {
            volume_id,
            age_secs: age(started),
        };
        if found.age_secs > STUCK_AFTER.as_secs() {
            tracing::warn!(volume = %found.volume_id, age_secs = found.age_secs,
                "a first format began long ago and never finished: the volume was never staged; \
                 its next NodeStageVolume formats it again if only a half-made filesystem is there");
            out.stuck.push(found);
        }
    };
    if let Some(store) = store {
        let marks = match store.format_marks() {
            Ok((marks, bad)) => {
                for b in bad {
                    tracing::warn!(path = %b.path.display(), reason = %b.reason, "unusable first-format mark");
                }
                marks
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the first-format marks");
                Vec::new()
            }
        };
        for m in marks {
            let lv = VolumeId::parse(&m.volume_id).ok().and_then(|id| {
                let r = report?;
                r.vg(&id.vg)?;
                Some(r.lvs.iter().find(|l| l.vg == id.vg && l.name == id.lv))
            });
            match lv {
                Some(lv) if lv.is_none_or(|l| l.uuid != m.lv_uuid) => {
                    tracing::info!(volume = %m.volume_id, "dropping the first-format mark of a volume that no longer exists");
                    match store.remove_format_mark(&m.volume_id) {
                        Ok(()) => out.stale.push(m.volume_id),
                        Err(e) => {
                            tracing::warn!(volume = %m.volume_id, error = %e, "cannot remove a stale first-format mark")
                        }
                    }
                }
                _ => note(m.volume_id, m.started_unix),
            }
        }
    }
    for lv in report
        .map(|r| r.lvs.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|l| served.contains(&l.vg))
    {
        if let Some(started) =
            tag_on(&lv.tags).and_then(|t| t[FORMATTING_TAG_PREFIX.len()..].parse::<u64>().ok())
        {
            note(format!("{}/{}", lv.vg, lv.name), started);
        }
    }
    out
}

/// Current time for [`at_start`].
pub fn at_start_now(
    store: Option<&StateStore>,
    report: Option<&vglet_lvm::Report>,
    served: &[String],
) -> Startup {
    at_start(store, report, served, now_unix())
}

#[cfg(test)]
mod tests {
    use super::*;

    use vglet_state::FormatMark;

    fn report(lvs: &[(&str, &str, &str)]) -> vglet_lvm::Report {
        let lvs: Vec<String> = lvs
            .iter()
            .map(|(name, uuid, tags)| {
                format!(
                    r#"{{"vg_name":"vg0","lv_name":"{name}","lv_uuid":"{uuid}","lv_attr":"-wi-a-----","lv_size":"67108864","lv_active":"active","lv_tags":"{tags}","lv_path":"/dev/vg0/{name}"}}"#
                )
            })
            .collect();
        let json = format!(
            r#"{{"report":[{{"vg":[{{"vg_name":"vg0","vg_size":"1073741824","vg_free":"536870912","vg_extent_size":"4194304","vg_lock_type":""}}],"pv":[],"lv":[{}]}}]}}"#,
            lvs.join(",")
        );
        vglet_lvm::parse_fullreport(&json).unwrap()
    }

    #[test]
    fn start_up_reports_old_marks_and_drops_those_of_gone_lvs() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        let put = |lv: &str, uuid: &str, started| {
            store
                .put_format_mark(&FormatMark {
                    version: 1,
                    volume_id: format!("vg0/{lv}"),
                    lv_uuid: uuid.into(),
                    fs_type: "xfs".into(),
                    started_unix: started,
                })
                .unwrap()
        };
        let now = 100_000;
        put("old", "U-old", now - 3600);
        put("young", "U-young", now - 10);
        put("gone", "U-gone", now - 3600);
        put("renamed", "U-before", now - 3600);
        put("unread", "U-x", now - 3600); // in a VG the report does not show
        store
            .put_format_mark(&FormatMark {
                version: 1,
                volume_id: "vg9/unread".into(),
                lv_uuid: "U-x".into(),
                fs_type: "xfs".into(),
                started_unix: now - 3600,
            })
            .unwrap();
        let r = report(&[
            ("old", "U-old", ""),
            ("young", "U-young", ""),
            ("renamed", "U-after", ""),
            ("unread", "U-x", ""),
            (
                "tagged",
                "U-t",
                &format!("{FORMATTING_TAG_PREFIX}{}", now - 7200),
            ),
            (
                "fresh",
                "U-f",
                &format!("{FORMATTING_TAG_PREFIX}{}", now - 5),
            ),
        ]);
        let out = at_start(Some(&store), Some(&r), &["vg0".to_string()], now);
        let stuck: Vec<&str> = out.stuck.iter().map(|m| m.volume_id.as_str()).collect();
        assert_eq!(
            stuck,
            vec!["vg0/old", "vg0/unread", "vg9/unread", "vg0/tagged"]
        );
        assert_eq!(out.stale, vec!["vg0/gone", "vg0/renamed"]);
        assert_eq!(store.format_mark("vg0/gone").unwrap(), None);
        assert!(store.format_mark("vg0/young").unwrap().is_some());
        assert!(store.format_mark("vg9/unread").unwrap().is_some());
    }
}
