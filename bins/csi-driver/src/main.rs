//! csi-driver: serves CSI v1 for LVM volume groups. See `csi-driver --help`.

use clap::Parser;

/// vglet CSI driver: serves Identity, Controller and Node services for LVM2 volume groups
/// on a unix socket.
///
/// Examples:
///   csi-driver --mode all --node-id node1 --volume-group vg0 --endpoint unix:///run/vglet/csi.sock
///   NODE_ID=node1 VGLET_VOLUME_GROUPS=vg0,vg1 csi-driver --mode node
///
/// Only LVs this driver created (tag vglet.owner=<driver name>) in the named volume groups are
/// ever touched.
#[derive(Debug, Parser)]
#[command(version = vglet_common::VERSION, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    config: csi_driver::Config,
    #[command(flatten)]
    log: vglet_common::logging::LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init();
    csi_driver::run(args.config).await
}
