//! vg-init: makes an LVM volume group exist with exactly the requested shape. See
//! `vg-init --help`.

use clap::Parser;

/// Creates or extends vglet's LVM volume group from an inventory and/or device paths, tags
/// it, makes it shared through lvmlockd and starts its lockspace, optionally adds a thin pool.
/// Idempotent: a re-run changes nothing when the VG already has the requested shape.
///
/// Examples:
///   disk-discover --glob '/dev/disk/by-id/nvme-*' --target-vg vg0 --output /run/vglet/inventory.json
///   vg-init --vg vg0 --inventory /run/vglet/inventory.json --tag team=a
///   vg-init --vg svg --device /dev/mapper/lun1 --shared --lock-type sanlock
///   vg-init --vg vg0 --device /dev/vdd --fast-device /dev/vda
///
/// --fast-device adds a device as the VG's fast tier: its PV is tagged vglet.fast, and
/// csi-driver puts volume caches (the `cache` parameter) there and nowhere else.
///
/// A device that is a PV of another VG or holds any signature is never taken, unless --wipe
/// (which prints what it destroys first); a PV of another VG that has LVs is never wiped.
///
/// Exit status: 0 changed, 1 failed, 2 usage, 3 refused (unsafe device, lock manager absent,
/// unsupported lock type), 4 nothing to do (--nothing-to-do-exit-code). The result is a JSON
/// object on stdout; logs go to stderr.
#[derive(Debug, Parser)]
#[command(version = vglet_common::VERSION, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    cli: vg_init::Cli,
    #[command(flatten)]
    log: vglet_common::logging::LogArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(vg_init::run(args.cli));
    std::process::exit(code);
}
