//! The facts a figure needs beside it to mean anything: machine, kernel, lvm, build.

use std::path::Path;

use crate::floor::output;
use crate::report::Machine;

pub fn now() -> String {
    output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn machine(environment: &str, driver: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let guest_cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let guest_mem_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let lvm = output("lvm", &["version"])
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("LVM version:")
                    .map(|v| v.trim().to_string())
            })
        })
        .map(|v| format!("lvm {v}"))
        .unwrap_or_else(|| "lvm ?".into());
    Machine {
        environment: environment.to_string(),
        guest_cpu,
        guest_vcpus: cpuinfo.matches("processor\t:").count(),
        guest_mem_mib,
        kernel: output("uname", &["-r"])
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        lvm,
        udev: Path::new("/run/udev/control").exists(),
        driver_build: if driver.components().any(|c| c.as_os_str() == "release") {
            "release".into()
        } else {
            "debug".into()
        },
    }
}
