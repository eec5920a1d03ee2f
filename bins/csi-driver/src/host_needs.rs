//! What the host kernel must provide before the driver can do its job. Without device-mapper
//! lvm still reads and writes metadata, but no LV can be activated, formatted or mounted, so
//! every CreateVolume would fail late; Probe says so up front instead.

/// `None` when device-mapper is there; otherwise why not and what to do.
///
/// Evidence: the kernel lists `device-mapper` in `/proc/misc` once dm-mod is loaded (a
/// `/dev/mapper/control` node alone proves nothing: it is often left behind on hosts without
/// it). When it is not listed, opening the control node is what libdm does too, and it loads
/// dm-mod when that is a module.
pub fn device_mapper_missing() -> Option<String> {
    let misc = std::fs::read_to_string("/proc/misc").unwrap_or_default();
    if lists_device_mapper(&misc) {
        return None;
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
    {
        Ok(_) => None,
        Err(e) => Some(format!(
            "this kernel has no device-mapper (not in /proc/misc; /dev/mapper/control: {e}), so \
             no LV can be activated or mounted: load it (modprobe dm_mod) or run on a kernel \
             that has it"
        )),
    }
}

/// Whether `/proc/misc` (`<minor> <name>` lines) lists device-mapper.
fn lists_device_mapper(proc_misc: &str) -> bool {
    proc_misc
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("device-mapper"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_misc() {
        assert!(lists_device_mapper(
            " 58 network_throughput\n236 device-mapper\n"
        ));
        assert!(!lists_device_mapper("237 loop-control\n229 fuse\n"));
        assert!(!lists_device_mapper(""));
        assert!(!lists_device_mapper("236 device-mapperX\n"));
    }
}
