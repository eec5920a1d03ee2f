//! The one activation rule: how a volume's LV is activated on this node.

use vglet_csi_proto::v1::volume_capability::access_mode::Mode;
use vglet_lvm::Activation;

use crate::capability::{Capability, VgKind};

/// Local VGs: plain activation. Shared VGs: exclusive, except raw block with a multi-node
/// mode and reader-only multi-node modes, which take the shared lock.
pub fn activation_for(kind: VgKind, cap: &Capability) -> Activation {
    match kind {
        VgKind::Local => Activation::Local,
        VgKind::Shared => match cap.mode {
            Mode::MultiNodeMultiWriter
            | Mode::MultiNodeSingleWriter
            | Mode::MultiNodeReaderOnly
                if cap.is_block() || cap.is_read_only_mode() =>
            {
                Activation::Shared
            }
            _ => Activation::Exclusive,
        },
    }
}

/// The VG's kind as a recorded activation tells it: only shared VGs take LV locks, so a
/// record answers "is this VG shared" without an lvm read.
pub fn kind_of(activation: Activation) -> VgKind {
    match activation {
        Activation::Local => VgKind::Local,
        Activation::Exclusive | Activation::Shared => VgKind::Shared,
    }
}

/// Whether the LV must be activated for `kind`: a local LV already active stays as it is;
/// a shared one is activated again, which takes (or checks) its lock.
pub fn needs_activation(kind: VgKind, active: bool) -> bool {
    !(active && kind == VgKind::Local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Access;

    fn cap(block: bool, mode: Mode) -> Capability {
        Capability {
            access: if block {
                Access::Block
            } else {
                Access::Mount {
                    fs_type: "ext4".into(),
                    mount_flags: vec![],
                }
            },
            mode,
        }
    }

    #[test]
    fn local_is_plain_shared_is_exclusive_but_for_multi_node_block_and_readers() {
        for mode in [Mode::SingleNodeWriter, Mode::MultiNodeMultiWriter] {
            assert_eq!(
                activation_for(VgKind::Local, &cap(true, mode)),
                Activation::Local
            );
        }
        assert_eq!(
            activation_for(VgKind::Shared, &cap(false, Mode::SingleNodeWriter)),
            Activation::Exclusive
        );
        assert_eq!(
            activation_for(VgKind::Shared, &cap(true, Mode::MultiNodeMultiWriter)),
            Activation::Shared
        );
        assert_eq!(
            activation_for(VgKind::Shared, &cap(false, Mode::MultiNodeReaderOnly)),
            Activation::Shared
        );
        assert_eq!(
            activation_for(VgKind::Shared, &cap(true, Mode::SingleNodeWriter)),
            Activation::Exclusive
        );
        assert_eq!(kind_of(Activation::Local), VgKind::Local);
        assert_eq!(kind_of(Activation::Shared), VgKind::Shared);
        assert!(!needs_activation(VgKind::Local, true));
        assert!(needs_activation(VgKind::Shared, true));
        assert!(needs_activation(VgKind::Local, false));
    }
}
