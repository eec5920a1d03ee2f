//! The volume groups as the latest reads showed them.
//!
//! Only for decisions that lvm checks again itself under its VG lock: an optimistic
//! `lvcreate` that lvm refuses when the name exists or the space is gone. Nothing that lvm
//! would not re-check may be decided from here; that needs a fresh read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::report::{Pv, Report, Vg};

#[derive(Debug, Clone)]
struct Seen {
    /// When the caller asked for the read: never later than the read itself started.
    at: Instant,
    vg: Vg,
    pvs: Vec<Pv>,
}

#[derive(Debug, Default)]
pub struct RecentVgs {
    seen: Mutex<HashMap<String, Seen>>,
}

impl RecentVgs {
    /// Records a report of `scope` (one VG, or all when `None`) asked for at `asked_at`. A
    /// VG the report should have shown and did not is forgotten.
    pub fn record(&self, scope: Option<&str>, asked_at: Instant, report: &Report) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match scope {
            Some(name) if report.vg(name).is_none() => {
                seen.remove(name);
            }
            None => seen.retain(|name, _| report.vg(name).is_some()),
            Some(_) => {}
        }
        for vg in &report.vgs {
            if scope.is_some_and(|s| s != vg.name) {
                continue;
            }
            let newer = seen.get(&vg.name).is_none_or(|s| s.at <= asked_at);
            if newer {
                seen.insert(
                    vg.name.clone(),
                    Seen {
                        at: asked_at,
                        vg: vg.clone(),
                        pvs: report.pvs_in(&vg.name).cloned().collect(),
                    },
                );
            }
        }
    }

    /// The VG and its PVs as a read asked for at most `max_age` ago showed them.
    pub fn get(&self, name: &str, max_age: Duration) -> Option<(Vg, Vec<Pv>)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let s = seen.get(name)?;
        (s.at.elapsed() <= max_age).then(|| (s.vg.clone(), s.pvs.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(vgs: &[&str]) -> Report {
        Report {
            vgs: vgs
                .iter()
                .map(|n| Vg {
                    name: n.to_string(),
                    free: 7,
                    ..Default::default()
                })
                .collect(),
            pvs: vgs
                .iter()
                .map(|n| Pv {
                    name: format!("/dev/{n}-pv"),
                    vg: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            lvs: vec![],
        }
    }

    #[test]
    fn a_read_is_kept_for_its_age_and_only_for_what_it_showed() {
        let r = RecentVgs::default();
        let t0 = Instant::now();
        r.record(None, t0, &report(&["a", "b"]));
        let (vg, pvs) = r.get("a", Duration::from_secs(60)).unwrap();
        assert_eq!((vg.name.as_str(), vg.free), ("a", 7));
        assert_eq!(pvs.len(), 1);
        assert_eq!(pvs[0].vg, "a");
        assert!(r.get("c", Duration::from_secs(60)).is_none());
        // A read of one VG that no longer shows it forgets it, and leaves the others.
        r.record(Some("a"), Instant::now(), &report(&[]));
        assert!(r.get("a", Duration::from_secs(60)).is_none());
        assert!(r.get("b", Duration::from_secs(60)).is_some());
        // A read of all VGs forgets what it did not show.
        r.record(None, Instant::now(), &report(&["a"]));
        assert!(r.get("b", Duration::from_secs(60)).is_none());
    }

    #[test]
    fn an_older_read_finishing_late_does_not_replace_a_newer_one() {
        let r = RecentVgs::default();
        let old = Instant::now();
        let new = old + Duration::from_millis(5);
        let mut newer = report(&["a"]);
        newer.vgs[0].free = 99;
        r.record(Some("a"), new, &newer);
        r.record(Some("a"), old, &report(&["a"]));
        assert_eq!(r.get("a", Duration::from_secs(60)).unwrap().0.free, 99);
    }
}
