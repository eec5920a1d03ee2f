//! What the host must provide before the driver can do its job: the programs it runs
//! ([`programs_for`]), resolved once at start, and device-mapper in the kernel. Without
//! device-mapper lvm still reads and writes metadata, but no LV can be activated, formatted
//! or mounted, so every CreateVolume would fail late; Probe says so up front instead.

use vglet_runner::{MissingPrograms, Override, Program, Programs, Wanted, optional, required};

use crate::config::{Config, Mode};

/// The programs a driver in `mode` runs.
///
/// - Always lvm (required); lvmlockctl (Probe's lockspace check) and sanlock (naming the
///   host that holds a lock) only matter for shared VGs, so without them local VGs are
///   served and shared ones fail Probe / lose the holder's name in refusals.
/// - Controller: dd, blockdev and cmp copy and verify clones and restores by copy; without
///   them those requests are refused with the program named (FAILED_PRECONDITION).
/// - Node: blkid (nothing is formatted without looking first) and e2fsprogs (ext4 is the
///   default filesystem) are required; xfsprogs are optional: an xfs-less node still
///   serves ext4 and block volumes, and refuses to format, check or grow xfs, naming the
///   tool (FAILED_PRECONDITION). cryptsetup is optional too: without it encrypted
///   volumes are refused at NodeStageVolume, naming it (FAILED_PRECONDITION).
///
/// What is absent is logged once at start ([`Programs::log_absent`]).
pub fn programs_for(mode: Mode) -> Vec<Wanted> {
    let mut wanted = vec![
        required(Program::Lvm),
        optional(Program::Lvmlockctl),
        optional(Program::Sanlock),
    ];
    if mode.controller() {
        wanted.extend([
            optional(Program::Dd),
            optional(Program::Blockdev),
            optional(Program::Cmp),
        ]);
    }
    if mode.node() {
        wanted.extend([
            required(Program::Blkid),
            required(Program::MkfsExt4),
            required(Program::FsckExt4),
            required(Program::Resize2fs),
            optional(Program::MkfsXfs),
            optional(Program::XfsRepair),
            optional(Program::XfsGrowfs),
            optional(Program::Cryptsetup),
        ]);
    }
    wanted
}

/// Resolves [`programs_for`] the configured mode, `--lvm` first for lvm.
pub fn resolve_programs(cfg: &Config) -> Result<Programs, MissingPrograms> {
    let lvm = Override {
        program: Program::Lvm,
        path: cfg.lvm.clone(),
        from: "--lvm",
    };
    Programs::resolve(&programs_for(cfg.mode), &[lvm])
}

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
    fn each_mode_asks_for_its_programs() {
        let find = |mode, p| programs_for(mode).into_iter().find(|w| w.program == p);
        assert_eq!(
            find(Mode::Controller, Program::Lvm),
            Some(required(Program::Lvm))
        );
        assert_eq!(find(Mode::Controller, Program::Blkid), None);
        assert_eq!(
            find(Mode::Controller, Program::Dd),
            Some(optional(Program::Dd))
        );
        assert_eq!(find(Mode::Node, Program::Dd), None);
        assert_eq!(
            find(Mode::Node, Program::MkfsExt4),
            Some(required(Program::MkfsExt4))
        );
        assert_eq!(
            find(Mode::Node, Program::MkfsXfs),
            Some(optional(Program::MkfsXfs))
        );
        for p in [
            Program::Lvm,
            Program::Dd,
            Program::Blkid,
            Program::XfsGrowfs,
        ] {
            assert!(find(Mode::All, p).is_some(), "{p}");
        }
    }

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
