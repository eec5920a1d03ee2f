//! Two guests on one shared disk (tests/shared_vg.rs, tests/shared_pod.rs): marker-file
//! coordination through a shared directory, and the host services of a sanlock host
//! (docs/host-preparation.md, 4.1), started by hand since the guest has no systemd.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::sh;

/// `use_lvmlockd = 1` in lvm.conf, this host's `host_id` in lvmlocal.conf, and lvmlockd's
/// socket directory.
pub fn use_lvmlockd(host_id: u32) {
    sh("sed -i 's/^global {/global {\\n\\tuse_lvmlockd = 1/' /etc/lvm/lvm.conf");
    std::fs::write(
        "/etc/lvm/lvmlocal.conf",
        format!("local {{\n\thost_id = {host_id}\n}}\n"),
    )
    .unwrap();
    sh("mkdir -p /run/lvm");
}

/// sanlock (no watchdog device: `-w 0`) and lvmlockd for sanlock VGs, as host daemons;
/// returns once lvmlockd answers.
pub fn start_sanlock_lvmlockd(host_id: u32) {
    use_lvmlockd(host_id);
    sh("mkdir -p /run/sanlock");
    sh("sanlock daemon -w 0 -U root -G root");
    // -o 2: 2 s sanlock I/O timeout keeps lockstart and lease expiry short in a test.
    sh("lvmlockd -g sanlock -o 2");
    wait_for_lvmlockd();
}

/// Waits until lvmlockd answers on its socket.
pub fn wait_for_lvmlockd() {
    let t = Instant::now();
    while sh("lvmlockctl --info >/dev/null 2>&1 && echo up || true").trim() != "up" {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "lvmlockd did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Marker-file coordination between the two guests: a file in the shared 9p directory
/// VGLET_SYNC signals a step, and a panicking host writes FAIL-<role> so that its peer stops
/// at once instead of waiting for a timeout.
pub struct Sync {
    pub dir: PathBuf,
    /// "a" or "b" (VGLET_ROLE).
    pub role: String,
    /// Which boot of this host this is (VGLET_BOOT, default 1): a host that reboots runs
    /// the test again in a new guest with the same role.
    pub boot: u32,
    timings: Vec<String>,
}

impl Sync {
    pub fn from_env() -> Sync {
        let dir = PathBuf::from(std::env::var("VGLET_SYNC").expect("VGLET_SYNC"));
        let role = std::env::var("VGLET_ROLE").expect("VGLET_ROLE");
        let boot = std::env::var("VGLET_BOOT").map_or(1, |b| b.parse().expect("VGLET_BOOT"));
        let hook_dir = dir.clone();
        let hook_role = role.clone();
        let default = std::panic::take_hook();
        // A failing host tells its peer at once, instead of letting it wait for a timeout.
        std::panic::set_hook(Box::new(move |info| {
            let _ = std::fs::write(hook_dir.join(format!("FAIL-{hook_role}")), info.to_string());
            default(info);
        }));
        Sync {
            dir,
            role,
            boot,
            timings: Vec::new(),
        }
    }

    pub fn signal(&self, what: &str) {
        std::fs::write(self.dir.join(what), b"").unwrap();
        eprintln!("[{}] signal {what}", self.role);
    }

    pub fn signal_value(&self, what: &str, value: &str) {
        let tmp = self.dir.join(format!(".{what}.tmp"));
        std::fs::write(&tmp, value).unwrap();
        std::fs::rename(&tmp, self.dir.join(what)).unwrap();
        eprintln!("[{}] signal {what}={value}", self.role);
    }

    pub fn wait(&self, what: &str) -> String {
        self.wait_up_to(what, Duration::from_secs(600))
    }

    /// [`Sync::wait`] with a bound of its own (e.g. across the peer's reboot).
    pub fn wait_up_to(&self, what: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(v) = std::fs::read_to_string(self.dir.join(what)) {
                eprintln!("[{}] got {what}", self.role);
                return v;
            }
            for peer in ["a", "b"] {
                let f = self.dir.join(format!("FAIL-{peer}"));
                if peer != self.role && f.exists() {
                    panic!(
                        "peer {peer} failed: {}",
                        std::fs::read_to_string(f).unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn time<T>(&mut self, what: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.record(what, t.elapsed());
        out
    }

    pub fn record(&mut self, what: &str, d: Duration) {
        let line = format!("  {:>7.2}s  {what}", d.as_secs_f64());
        eprintln!("[{}] {line}", self.role);
        self.timings.push(line);
        let all = self.timings.join("\n") + "\n";
        std::fs::write(self.dir.join(self.timings_file()), all).unwrap();
    }

    /// `timings-<role>` of the first boot, `timings-<role>-boot<n>` of a later one.
    pub fn timings_file(&self) -> String {
        match self.boot {
            1 => format!("timings-{}", self.role),
            n => format!("timings-{}-boot{n}", self.role),
        }
    }
}
