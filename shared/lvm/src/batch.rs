//! Group commit for tag removals: one `lvchange --deltag T vg/a vg/b ...` for every LV that
//! asked while the previous one ran.
//!
//! Each CreateVolume ends by dropping its "creating" marker, a VG metadata commit of its
//! own. In a burst these commits queue behind each other on lvm's VG lock; batched, a burst
//! of a hundred creates costs a handful of them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::errors::LvmError;

type Waiter = (String, oneshot::Sender<Result<(), LvmError>>);

#[derive(Debug, Default)]
pub(crate) struct TagBatcher {
    /// Per (VG, tag).
    queues: Mutex<HashMap<(String, String), Arc<Queue>>>,
}

#[derive(Debug, Default)]
struct Queue {
    pending: Mutex<Vec<Waiter>>,
    /// Held by the caller that runs the next batch.
    running: tokio::sync::Mutex<()>,
}

impl TagBatcher {
    /// Runs `batch(lvs)` for `lv` and everything queued with it; when the batch fails, each
    /// LV is retried alone with `single`, so every caller gets its own LV's outcome.
    ///
    /// Before a batch starts, it waits (checking every [`HOLD_POLL`], at most
    /// [`MAX_HOLD`]) while `hold(number of LVs queued)` is true: the caller knows when more
    /// LVs are about to come (creates queued behind the VG lock) and that one commit for
    /// all of them beats a commit that competes with each create for lvm's VG lock.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run<H, B, BF, S, SF>(
        &self,
        vg: &str,
        tag: &str,
        lv: &str,
        hold: H,
        batch: B,
        single: S,
    ) -> Result<(), LvmError>
    where
        H: Fn(usize) -> bool,
        B: FnOnce(Vec<String>) -> BF,
        BF: Future<Output = Result<(), LvmError>>,
        S: Fn(String) -> SF,
        SF: Future<Output = Result<(), LvmError>>,
    {
        let queue = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((vg.to_string(), tag.to_string()))
            .or_default()
            .clone();
        let (tx, rx) = oneshot::channel();
        lock(&queue.pending).push((lv.to_string(), tx));
        {
            let _running = queue.running.lock().await;
            let held = tokio::time::Instant::now();
            while held.elapsed() < MAX_HOLD && hold(lock(&queue.pending).len()) {
                tokio::time::sleep(HOLD_POLL).await;
            }
            let waiters = std::mem::take(&mut *lock(&queue.pending));
            // Empty when an earlier caller's batch already took ours.
            if !waiters.is_empty() {
                let lvs: Vec<String> = waiters.iter().map(|(lv, _)| lv.clone()).collect();
                tracing::debug!(%vg, %tag, lvs = lvs.len(), "removing a tag in one batch");
                if batch(lvs).await.is_ok() {
                    for (_, tx) in waiters {
                        let _ = tx.send(Ok(()));
                    }
                } else {
                    for (lv, tx) in waiters {
                        let _ = tx.send(single(lv).await);
                    }
                }
            }
        }
        // A batch dropped half-way (its caller cancelled) drops our sender: retry alone.
        match rx.await {
            Ok(r) => r,
            Err(_) => single(lv.to_string()).await,
        }
    }
}

/// How often a held batch looks again; small beside an lvm command (hundreds of ms).
pub(crate) const HOLD_POLL: Duration = Duration::from_millis(20);
/// The longest a batch is held for more LVs: bounds what holding adds to one caller.
pub(crate) const MAX_HOLD: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_batches() {
        let b = Arc::new(TagBatcher::default());
        let batches = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let mut handles = Vec::new();
        for i in 0..30 {
            let (b, batches) = (b.clone(), batches.clone());
            handles.push(tokio::spawn(async move {
                b.run(
                    "vg",
                    "t",
                    &format!("lv{i}"),
                    |_| false,
                    |lvs| async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        batches.lock().unwrap().push(lvs);
                        Ok(())
                    },
                    |_| async { panic!("no single retry when the batch works") },
                )
                .await
            }));
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        let batches = batches.lock().unwrap();
        let mut all: Vec<String> = batches.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 30, "every LV untagged exactly once: {batches:?}");
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 30);
        assert!(
            batches.len() <= 3,
            "30 callers took {} batches",
            batches.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_gives_each_lv_its_own_outcome() {
        let b = Arc::new(TagBatcher::default());
        let singles = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for i in 0..4 {
            let (b, singles) = (b.clone(), singles.clone());
            handles.push(tokio::spawn(async move {
                b.run(
                    "vg",
                    "t",
                    &format!("lv{i}"),
                    |_| false,
                    |_| async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err(LvmError::LvNotFound("one of them".into()))
                    },
                    |lv| {
                        let singles = singles.clone();
                        async move {
                            singles.fetch_add(1, Ordering::SeqCst);
                            if lv == "lv2" {
                                Err(LvmError::LvNotFound(lv))
                            } else {
                                Ok(())
                            }
                        }
                    },
                )
                .await
            }));
        }
        let results: Vec<bool> = futures_join(handles).await;
        assert_eq!(results, [true, true, false, true]);
        assert_eq!(singles.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_batch_collects_until_released_or_bounded() {
        let b = Arc::new(TagBatcher::default());
        let batches = Arc::new(Mutex::new(Vec::<usize>::new()));
        // Callers arrive one every 100 ms (as creates leave a serialised VG lock); the hold
        // keeps the batch open until 8 are queued.
        let mut handles = Vec::new();
        for i in 0..16 {
            let (b, batches) = (b.clone(), batches.clone());
            handles.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100 * i)).await;
                b.run(
                    "vg",
                    "t",
                    &format!("lv{i}"),
                    |queued| queued < 8,
                    |lvs| async move {
                        batches.lock().unwrap().push(lvs.len());
                        Ok(())
                    },
                    |_| async { panic!("no single retry when the batch works") },
                )
                .await
            }));
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        assert_eq!(*batches.lock().unwrap(), vec![8, 8]);

        // A hold that never lets go is bounded.
        let start = tokio::time::Instant::now();
        b.run(
            "vg",
            "t",
            "alone",
            |_| true,
            |_| async { Ok(()) },
            |_| async { Ok(()) },
        )
        .await
        .unwrap();
        assert!(start.elapsed() >= MAX_HOLD && start.elapsed() < MAX_HOLD * 2);
    }

    async fn futures_join(
        handles: Vec<tokio::task::JoinHandle<Result<(), LvmError>>>,
    ) -> Vec<bool> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().is_ok());
        }
        out
    }
}
