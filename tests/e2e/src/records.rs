//! A writer that keeps appending checksummed records to a file while a volume changes
//! under it, and the check that every record it wrote reads back from the disks: what the
//! online conversions (raid, cache tiers) are proven with. Each record is RECORD bytes:
//! its sequence number, a 64-bit FNV-1a of its payload and the payload (derived from the
//! sequence number), appended with O_APPEND and fdatasync'd before the next.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const RECORD: usize = 4096;

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Record `seq` as it is written.
pub fn record(seq: u64) -> Vec<u8> {
    let mut payload = vec![0u8; RECORD - 16];
    let mut x = seq.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    for b in payload.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut r = Vec::with_capacity(RECORD);
    r.extend_from_slice(&seq.to_le_bytes());
    r.extend_from_slice(&fnv(&payload).to_le_bytes());
    r.extend_from_slice(&payload);
    r
}

/// The writer thread; stopped by [`Writer::stop`], which says how many records are on disk.
pub struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub file: PathBuf,
}

impl Writer {
    /// Starts appending to `file` (created; records numbered from 0).
    pub fn start(file: &Path) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .unwrap_or_else(|e| panic!("writer: open {}: {e}", file.display()));
        let (s, w) = (stop.clone(), written.clone());
        let thread = std::thread::spawn(move || {
            let mut seq = 0u64;
            while !s.load(Ordering::Relaxed) {
                f.write_all(&record(seq)).expect("writer: write");
                f.sync_data().expect("writer: fdatasync");
                seq += 1;
                w.store(seq, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Writer {
            stop,
            written,
            thread: Some(thread),
            file: file.to_path_buf(),
        }
    }

    /// Records fdatasync'd so far.
    pub fn count(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits until 5 more records than now are on disk: the writer is alive, `what` did
    /// not stall it for good.
    pub fn keeps_writing(&self, what: &str) {
        let from = self.count();
        let start = Instant::now();
        while self.count() < from + 5 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "writer stalled {what} (at {})",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("writer thread");
        self.count()
    }
}

/// Every record of `file` read back after dropping the page cache (run as root in the
/// guest): exactly `n` of them, in sequence, each with a matching checksum and payload.
pub fn verify(file: &Path, n: u64) {
    crate::sh("sync && echo 3 > /proc/sys/vm/drop_caches");
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .unwrap_or_else(|e| panic!("open {}: {e}", file.display()))
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(
        bytes.len() as u64,
        n * RECORD as u64,
        "{}: length",
        file.display()
    );
    for (i, r) in bytes.chunks(RECORD).enumerate() {
        let seq = u64::from_le_bytes(r[..8].try_into().unwrap());
        let sum = u64::from_le_bytes(r[8..16].try_into().unwrap());
        assert_eq!(seq, i as u64, "record {i}: sequence");
        assert_eq!(sum, fnv(&r[16..]), "record {i}: checksum");
        assert_eq!(r, record(seq).as_slice(), "record {i}: content");
    }
    eprintln!(
        "  {}: {n} records ({} KiB) verified",
        file.display(),
        n * RECORD as u64 / 1024
    );
}

/// The guest's end of the harness's rc share (`Vm::guest_unplug`).
pub const RC: &str = "/run/vglet-rc";

/// Asks the host to hot-unplug the virtio disk `name` (its serial) and waits for "ok".
pub fn unplug(name: &str) {
    // Creating a request right after the host removed the previous one has been seen to
    // fail once with ENOENT over 9p: retry briefly.
    let req = format!("{RC}/unplug-req/{name}");
    let mut tries = 0;
    while let Err(e) = std::fs::write(&req, "") {
        tries += 1;
        assert!(tries < 50, "unplug request {req}: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = PathBuf::from(format!("{RC}/unplug-done/{name}"));
    let start = Instant::now();
    while !done.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no answer from the host to unplug {name}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = std::fs::read_to_string(&done).unwrap();
    assert_eq!(answer.trim(), "ok", "unplug {name}");
}
