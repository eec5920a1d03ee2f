//! At most one operation per volume at a time. The CO retries an RPC whose deadline passed
//! while the first call is still running; the spec answers that with ABORTED rather than a
//! second lvcreate or mount racing the first.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tonic::Status;

#[derive(Debug, Default, Clone)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Releases its key when dropped, also when the RPC future is cancelled.
#[derive(Debug)]
pub struct InFlightGuard {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    pub fn acquire(&self, key: &str) -> Result<InFlightGuard, Status> {
        let mut keys = self.keys.lock().expect("in-flight set poisoned");
        if !keys.insert(key.to_string()) {
            return Err(Status::aborted(format!(
                "an operation on {key} is already in progress; retry later"
            )));
        }
        Ok(InFlightGuard {
            keys: self.keys.clone(),
            key: key.to_string(),
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.remove(&self.key);
        }
    }
}

/// Serialises LVM writes per VG inside the process: lvm would serialise them on its VG lock
/// anyway, but waiting here is cheaper than lvm's lock-file polling and keeps a burst of
/// CreateVolume calls from timing out on each other.
#[derive(Debug, Default, Clone)]
pub struct VgWriteLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl VgWriteLocks {
    pub async fn lock(&self, vg: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.locks.lock().expect("vg lock map poisoned");
            map.entry(vg.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Whether an lvm write in `vg` is running or queued here. The lock is fair: when it is
    /// free, nobody waits for it.
    pub fn busy(&self, vg: &str) -> bool {
        let map = self.locks.lock().expect("vg lock map poisoned");
        map.get(vg).is_some_and(|m| m.try_lock().is_err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_aborted_until_release() {
        let f = InFlight::default();
        let g = f.acquire("vg/a").unwrap();
        let e = f.acquire("vg/a").unwrap_err();
        assert_eq!(e.code(), tonic::Code::Aborted);
        assert!(f.acquire("vg/b").is_ok());
        drop(g);
        assert!(f.acquire("vg/a").is_ok());
    }

    #[tokio::test]
    async fn a_vg_is_busy_while_its_write_lock_is_held() {
        let l = VgWriteLocks::default();
        assert!(!l.busy("vg0"));
        let g = l.lock("vg0").await;
        assert!(l.busy("vg0"));
        assert!(!l.busy("vg1"));
        drop(g);
        assert!(!l.busy("vg0"));
    }
}
