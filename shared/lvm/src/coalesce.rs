//! Report reads shared between concurrent callers.
//!
//! A burst of RPCs (a StatefulSet scaling up) would otherwise start one `lvm fullreport`
//! each, all scanning the same devices at once. A caller here waits for the read in flight
//! to end and then shares the next one with everybody who queued meanwhile: a shared read
//! always *started after* each sharer asked, so it shows every change that was complete
//! when they asked (a caller never gets a view older than its own request).

use std::collections::HashMap;
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
        let waiting = Waiting::enter(&slot);
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

/// One caller counted in [`Slot::waiting`] from arrival until it leaves or is dropped.
struct Waiting<'a> {
    slot: &'a Slot,
    counted: bool,
}

impl<'a> Waiting<'a> {
    fn enter(slot: &'a Slot) -> Waiting<'a> {
        slot.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting {
            slot,
            counted: true,
        }
    }

    /// Whether this caller was the last one waiting.
    fn leave(mut self) -> bool {
        self.counted = false;
        self.slot.waiting.fetch_sub(1, Ordering::SeqCst) == 1
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.slot.waiting.fetch_sub(1, Ordering::SeqCst);
        }
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
