//! Children a killed process left running, found and stopped by its successor.
//!
//! [`crate::SystemRunner`] kills its child when the caller's future is dropped, but a
//! `kill -9` of the runner's process kills nothing else: its `lvm lvcreate` runs on,
//! reparented, and may commit after the process's successor has looked. A runner made with
//! [`crate::SystemRunner::owned_by`] marks every child's environment with
//! [`OWNER_ENV`]`=<owner>`; the successor calls [`stop_orphans`] before it trusts what it
//! reads, and so knows that nothing its predecessor started is still writing.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

/// Set in the environment of every child of an owned runner.
pub const OWNER_ENV: &str = "VGLET_RUNNER_OWNER";

/// A process an earlier owner started that was still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub pid: i32,
    pub argv: String,
    /// Killed (`true`), or it finished on its own within the grace period.
    pub killed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OrphanError {
    #[error("cannot list processes: {0}")]
    List(String),
    /// Killed but not gone (a process in uninterruptible I/O dies only when its I/O ends).
    #[error("processes started by an earlier run are still alive {waited:?} after SIGKILL: {}", list(.alive))]
    StillAlive {
        alive: Vec<Orphan>,
        waited: Duration,
    },
}

fn list(o: &[Orphan]) -> String {
    o.iter()
        .map(|o| format!("{} ({})", o.pid, o.argv))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ends every process whose environment carries `OWNER_ENV=owner` and that is not a child
/// of this process. Each gets up to `grace` to finish on its own: an lvm command ends its
/// commit, a format its writes, which is better than cutting them as a power loss would. One
/// that is stopped (SIGSTOP: it would never finish) or still running after `grace` is
/// killed (SIGKILL), and must be gone `wait` later. Returns every orphan found; an error if
/// any outlived the kill.
pub fn stop_orphans(
    owner: &str,
    grace: Duration,
    wait: Duration,
) -> Result<Vec<Orphan>, OrphanError> {
    let mut found = find(owner)?;
    let start = Instant::now();
    loop {
        let mut running = false;
        for o in found.iter_mut().filter(|o| !o.killed) {
            match state(o.pid) {
                None | Some('Z') => {}
                Some('T' | 't') => kill(o),
                Some(_) if start.elapsed() >= grace => kill(o),
                Some(_) => running = true,
            }
        }
        if !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed_at = Instant::now();
    loop {
        let alive: Vec<Orphan> = found.iter().filter(|o| is_alive(o.pid)).cloned().collect();
        if alive.is_empty() {
            return Ok(found);
        }
        if killed_at.elapsed() >= wait {
            return Err(OrphanError::StillAlive {
                alive,
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(o: &mut Orphan) {
    // Gone in between is fine; anything else shows in the wait for it to be gone.
    let _ = rustix::process::Pid::from_raw(o.pid)
        .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::KILL));
    o.killed = true;
}

/// The live processes marked with `owner` that this process did not start itself.
pub fn find(owner: &str) -> Result<Vec<Orphan>, OrphanError> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let all = procfs::process::all_processes().map_err(|e| OrphanError::List(e.to_string()))?;
    for p in all.flatten() {
        if p.pid == me {
            continue;
        }
        // Processes that exit while we look, and kernel threads, have no readable environ.
        let Ok(env) = p.environ() else { continue };
        if env.get(OsStr::new(OWNER_ENV)).map(|v| v.as_encoded_bytes()) != Some(owner.as_bytes()) {
            continue;
        }
        let Ok(stat) = p.stat() else { continue };
        if stat.ppid == me || stat.state == 'Z' {
            continue;
        }
        let argv = p.cmdline().map(|c| c.join(" ")).unwrap_or_default();
        out.push(Orphan {
            pid: p.pid,
            argv,
            killed: false,
        });
    }
    Ok(out)
}

/// The process's state letter (`R`, `S`, `D`, `T`, `Z`, ...); `None` once it is gone.
fn state(pid: i32) -> Option<char> {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .ok()
        .map(|s| s.state)
}

/// Alive: present and not a zombie (a zombie has stopped running; init reaps it).
fn is_alive(pid: i32) -> bool {
    !matches!(state(pid), None | Some('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphan_of_the_owner_is_killed_and_others_are_left() {
        let owner = format!("test-owner-{}", std::process::id());
        // A child that detaches itself (its parent shell exits at once), as a driver's
        // lvm child is reparented when the driver is killed.
        let spawn = |owner: &str| {
            std::process::Command::new("/bin/sh")
                .args(["-c", "sleep 30 >/dev/null 2>&1 & echo $!"])
                .env(OWNER_ENV, owner)
                .output()
                .unwrap()
        };
        let out = spawn(&owner);
        let orphan: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let other_out = spawn("someone-else");
        let other: i32 = String::from_utf8_lossy(&other_out.stdout)
            .trim()
            .parse()
            .unwrap();
        assert!(is_alive(orphan) && is_alive(other));

        // Still running after the grace period: killed.
        let killed =
            stop_orphans(&owner, Duration::from_millis(200), Duration::from_secs(5)).unwrap();
        assert_eq!(killed.len(), 1, "{killed:?}");
        assert_eq!(killed[0].pid, orphan);
        assert!(killed[0].killed);
        assert!(killed[0].argv.contains("sleep 30"), "{killed:?}");
        assert!(!is_alive(orphan));
        assert!(
            is_alive(other),
            "another owner's process is not ours to kill"
        );
        assert!(find(&owner).unwrap().is_empty());
        let _ = std::process::Command::new("kill")
            .arg(other.to_string())
            .status();
    }

    #[test]
    fn this_process_children_are_not_orphans() {
        let owner = format!("test-own-child-{}", std::process::id());
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .env(OWNER_ENV, &owner)
            .spawn()
            .unwrap();
        assert!(find(&owner).unwrap().is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn an_orphan_that_finishes_in_the_grace_period_is_not_killed_and_a_stopped_one_is() {
        let owner = format!("test-grace-{}", std::process::id());
        let spawn = |cmd: &str| -> i32 {
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &format!("{cmd} >/dev/null 2>&1 & echo $!")])
                .env(OWNER_ENV, &owner)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let finishing = spawn("sleep 0.3");
        let stopped = spawn("sleep 30");
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(stopped).unwrap(),
            rustix::process::Signal::STOP,
        )
        .unwrap();
        let t = Instant::now();
        let found = stop_orphans(&owner, Duration::from_secs(10), Duration::from_secs(5)).unwrap();
        // Returned once the running one finished, long before the grace period ended.
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let by_pid = |pid| found.iter().find(|o| o.pid == pid).unwrap();
        assert!(!by_pid(finishing).killed, "{found:?}");
        assert!(by_pid(stopped).killed, "{found:?}");
        assert!(!is_alive(stopped));
    }
}
