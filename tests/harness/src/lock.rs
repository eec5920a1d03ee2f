//! One guest (or one group of guests) at a time on this machine.
//!
//! Each guest keeps both cores busy under TCG, so concurrent test threads and separate test
//! binaries take turns: an in-process gate (threads of one test binary) plus `flock` on
//! `<cache>/vm.lock` (other processes). The lock is re-entrant per thread: guests spawned by
//! the same thread while it holds the lock share it (two guests of one test run together), and
//! it is released when the last holder drops.

use std::cell::RefCell;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};

use crate::{HarnessError, io_err};

static GATE: Mutex<bool> = Mutex::new(false);
static GATE_FREED: Condvar = Condvar::new();

thread_local! {
    static MINE: RefCell<Weak<Held>> = const { RefCell::new(Weak::new()) };
}

/// Proof that this process may run guests now; guests hold one until they end.
#[derive(Clone, Debug)]
pub struct VmLock(#[allow(dead_code)] Arc<Held>);

#[derive(Debug)]
struct Held {
    _file: File, // the flock goes with the open file description
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut busy = GATE.lock().unwrap_or_else(|e| e.into_inner());
        *busy = false;
        GATE_FREED.notify_one();
    }
}

/// Takes the machine-wide VM lock (blocking), or shares the one this thread already holds.
pub fn vm_lock() -> Result<VmLock, HarnessError> {
    lock_in(&crate::host::cache_dir())
}

pub(crate) fn lock_in(cache_dir: &Path) -> Result<VmLock, HarnessError> {
    if let Some(held) = MINE.with(|m| m.borrow().upgrade()) {
        return Ok(VmLock(held));
    }
    {
        let mut busy = GATE.lock().unwrap_or_else(|e| e.into_inner());
        if *busy {
            eprintln!("vglet-vm: waiting for another guest of this process to finish");
        }
        while *busy {
            busy = GATE_FREED.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
    }
    let release_gate = || {
        *GATE.lock().unwrap_or_else(|e| e.into_inner()) = false;
        GATE_FREED.notify_one();
    };
    let file = match open_and_flock(cache_dir) {
        Ok(f) => f,
        Err(e) => {
            release_gate();
            return Err(e);
        }
    };
    let held = Arc::new(Held { _file: file });
    MINE.with(|m| *m.borrow_mut() = Arc::downgrade(&held));
    Ok(VmLock(held))
}

fn open_and_flock(cache_dir: &Path) -> Result<File, HarnessError> {
    fs::create_dir_all(cache_dir).map_err(io_err(format!("create {}", cache_dir.display())))?;
    let path = cache_dir.join("vm.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("open {}", path.display())))?;
    let fd = file.as_raw_fd();
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(file);
    }
    eprintln!(
        "vglet-vm: waiting for {} (a guest of another process is running)",
        path.display()
    );
    loop {
        // SAFETY: as above.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(HarnessError::Io {
                context: format!("flock {}", path.display()),
                source: e,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentrant_on_one_thread_exclusive_across_threads() {
        let dir = std::env::temp_dir().join(format!("vglet-vmh-lock-{}", std::process::id()));
        let a = lock_in(&dir).unwrap();
        let b = lock_in(&dir).unwrap(); // same thread: shared, no deadlock
        let (tx, rx) = std::sync::mpsc::channel();
        let d2 = dir.clone();
        let t = std::thread::spawn(move || {
            let _l = lock_in(&d2).unwrap();
            tx.send(()).unwrap();
        });
        drop(a);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            rx.try_recv().is_err(),
            "other thread got the lock while b is held"
        );
        drop(b);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("other thread gets the lock after release");
        t.join().unwrap();
        let _ = fs::remove_dir_all(&dir);
    }
}
