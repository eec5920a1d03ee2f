//! Report reads shared between concurrent callers.
//!
//! A burst of RPCs (a StatefulSet scaling up) would otherwise start one `lvm fullreport`
//! each, all scanning the same devices at once. A caller here waits for the read in flight
//! to end and then shares the next one with everybody who queued meanwhile: a shared read
//! always *started after* each sharer asked, so it shows every change that was complete
//! when they asked (a caller never gets a view older than its own request).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::errors::LvmError;
use crate::report::Report;

#[derive(Debug, Default)]
pub(crate) struct ReadCoalescer {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Debug, Default)]
struct Slot {
    /// Reads started so far; a read's id is its number.
    started: AtomicU64,
    /// Callers between arrival and answer; the last one out drops the kept report.
    waiting: AtomicUsize,
    /// One read at a time, and the last successful one with its id.
    last: tokio::sync::Mutex<Option<(u64, Arc<Report>)>>,
}

impl ReadCoalescer {
    pub(crate) async fn read<F, Fut>(&self, key: &str, read: F) -> Result<Report, LvmError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Report, LvmError>>,
    {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        // Counted out by the guard even when the caller is cancelled while it waits.
        let waiting = Waiting::enter(&slot.waiting);
        // Every read with a larger id starts after this point.
        let arrived = slot.started.load(Ordering::SeqCst);
        let mut last = slot.last.lock().await;
        let result = match &*last {
            Some((id, report)) if *id > arrived => Ok(Report::clone(report)),
            _ => {
                let id = slot.started.fetch_add(1, Ordering::SeqCst) + 1;
                let r = read().await;
                *last = r.as_ref().ok().map(|r| (id, Arc::new(r.clone())));
                r
            }
        };
        if waiting.leave() {
            // Nobody queued: no one can use the kept report any more (a later caller needs
            // a newer read), so do not hold a large VG's report in memory.
            *last = None;
        }
        result
    }
}

/// One caller counted in a slot's `waiting` from arrival until it leaves or is dropped.
struct Waiting<'a> {
    waiting: &'a AtomicUsize,
    counted: bool,
}

impl<'a> Waiting<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Waiting<'a> {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting {
            waiting,
            counted: true,
        }
    }

    /// Whether this caller was the last one waiting.
    fn leave(mut self) -> bool {
        self.counted = false;
        self.waiting.fetch_sub(1, Ordering::SeqCst) == 1
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads of a few LVs of a VG (see `args::fullreport_of_lvs`) shared between concurrent
/// callers, as [`ReadCoalescer`] shares whole reads: a burst of DeleteVolume would
/// otherwise start one lvm read each. A caller's LV goes into its VG's queue; the next read
/// takes every queued LV, so it answers all who queued before it started. A caller is
/// answered only by a read that started after it arrived *and* asked for its LV.
#[derive(Debug, Default)]
pub(crate) struct LvReadBatcher {
    slots: Mutex<HashMap<String, Arc<LvSlot>>>,
}

#[derive(Debug, Default)]
struct LvSlot {
    queue: Mutex<LvQueue>,
    /// Callers between arrival and answer; the last one out drops the kept report.
    waiting: AtomicUsize,
    /// One read at a time, and the last successful one.
    last: tokio::sync::Mutex<Option<LvRead>>,
}

/// A successful read of a few LVs: its id, the LVs it asked for, what it saw.
type LvRead = (u64, BTreeSet<String>, Arc<Report>);

#[derive(Debug, Default)]
struct LvQueue {
    /// LVs asked for and not yet taken by a read.
    pending: BTreeSet<String>,
    /// Reads started so far; a read's id is its number. Counted under the same lock as
    /// `pending`, so a read with a larger id than a caller's arrival took its LV.
    started: u64,
}

impl LvReadBatcher {
    /// The report of `read(lvs)` for a set of `lvs` that holds `lv`, from a read that
    /// started after this call.
    pub(crate) async fn read<F, Fut>(&self, vg: &str, lv: &str, read: F) -> Result<Report, LvmError>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<Report, LvmError>>,
    {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(vg.to_string())
            .or_default()
            .clone();
        let waiting = Waiting::enter(&slot.waiting);
        let arrived = {
            let mut q = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.pending.insert(lv.to_string());
            q.started
        };
        let mut last = slot.last.lock().await;
        let result = match &*last {
            Some((id, lvs, report)) if *id > arrived && lvs.contains(lv) => {
                Ok(Report::clone(report))
            }
            _ => {
                let (id, lvs) = {
                    let mut q = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
                    // Taken already by a read whose report this caller did not get.
                    q.pending.insert(lv.to_string());
                    q.started += 1;
                    (q.started, std::mem::take(&mut q.pending))
                };
                let r = read(lvs.iter().cloned().collect()).await;
                *last = r.as_ref().ok().map(|r| (id, lvs, Arc::new(r.clone())));
                r
            }
        };
        if waiting.leave() {
            *last = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    fn report(n: u32) -> Report {
        Report {
            vgs: vec![crate::report::Vg {
                name: format!("read{n}"),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_shares_one_read_that_started_after_it_arrived() {
        let c = Arc::new(ReadCoalescer::default());
        let reads = Arc::new(AtomicU32::new(0));
        let slow_read = |reads: Arc<AtomicU32>| async move {
            let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(report(n))
        };
        // The first caller starts read 1; the 20 who arrive during it must not get read 1
        // (it started before them) but all share read 2.
        let first = {
            let (c, reads) = (c.clone(), reads.clone());
            tokio::spawn(async move { c.read("vg", || slow_read(reads)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut later = Vec::new();
        for _ in 0..20 {
            let (c, reads) = (c.clone(), reads.clone());
            later.push(tokio::spawn(async move {
                c.read("vg", || slow_read(reads)).await
            }));
        }
        assert_eq!(first.await.unwrap().unwrap().vgs[0].name, "read1");
        for h in later {
            assert_eq!(h.await.unwrap().unwrap().vgs[0].name, "read2");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // A caller arriving after everything finished reads anew.
        let r = c.read("vg", || slow_read(reads.clone())).await.unwrap();
        assert_eq!(r.vgs[0].name, "read3");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_caller_is_counted_out() {
        let c = Arc::new(ReadCoalescer::default());
        let leader = {
            let c = c.clone();
            tokio::spawn(async move {
                c.read("vg", || async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(report(1))
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.read("vg", || async { Ok(report(2)) }).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        waiter.abort();
        let _ = waiter.await;
        leader.await.unwrap().unwrap();
        let slot = c.slots.lock().unwrap().get("vg").unwrap().clone();
        assert_eq!(slot.waiting.load(Ordering::SeqCst), 0);
        assert!(
            slot.last.lock().await.is_none(),
            "nobody waits: nothing kept"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lv_reads_of_a_burst_are_one_read_of_every_queued_lv() {
        let c = Arc::new(LvReadBatcher::default());
        let asked = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let slow_read = |asked: Arc<Mutex<Vec<Vec<String>>>>| {
            move |lvs: Vec<String>| async move {
                let n = {
                    let mut a = asked.lock().unwrap();
                    a.push(lvs);
                    a.len() as u32
                };
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(report(n))
            }
        };
        let first = {
            let (c, asked) = (c.clone(), asked.clone());
            tokio::spawn(async move { c.read("vg", "a", slow_read(asked)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Arrived during read 1, which did not ask for them (and started before them, even
        // for "a"): all share read 2, which asks for each once.
        let mut later = Vec::new();
        for lv in ["b", "c", "a", "b"] {
            let (c, asked) = (c.clone(), asked.clone());
            later.push(tokio::spawn(async move {
                c.read("vg", lv, slow_read(asked)).await
            }));
        }
        assert_eq!(first.await.unwrap().unwrap().vgs[0].name, "read1");
        for h in later {
            assert_eq!(h.await.unwrap().unwrap().vgs[0].name, "read2");
        }
        assert_eq!(
            *asked.lock().unwrap(),
            vec![
                vec!["a".to_string()],
                vec!["a".into(), "b".into(), "c".into()]
            ]
        );
        // Nobody waits: nothing kept, and another VG is a slot of its own.
        let slot = c.slots.lock().unwrap().get("vg").unwrap().clone();
        assert_eq!(slot.waiting.load(Ordering::SeqCst), 0);
        assert!(slot.last.lock().await.is_none());
        let r = c.read("vg2", "a", slow_read(asked.clone())).await.unwrap();
        assert_eq!(r.vgs[0].name, "read3");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_lv_read_is_not_kept_and_a_read_asks_for_the_callers_lv() {
        let c = LvReadBatcher::default();
        let r = c
            .read("vg", "a", |_| async {
                Err(LvmError::VgNotFound("vg".into()))
            })
            .await;
        assert!(r.is_err());
        let r = c
            .read("vg", "a", |lvs| async move {
                assert_eq!(lvs, ["a"]);
                Ok(report(4))
            })
            .await
            .unwrap();
        assert_eq!(r.vgs[0].name, "read4");
    }

    #[tokio::test(start_paused = true)]
    async fn keys_do_not_share_and_failures_are_not_kept() {
        let c = ReadCoalescer::default();
        let r = c
            .read("a", || async { Err(LvmError::VgNotFound("a".into())) })
            .await;
        assert!(r.is_err());
        let r = c.read("a", || async { Ok(report(7)) }).await.unwrap();
        assert_eq!(r.vgs[0].name, "read7");
        let r = c.read("b", || async { Ok(report(8)) }).await.unwrap();
        assert_eq!(r.vgs[0].name, "read8");
    }
}
