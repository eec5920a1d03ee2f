//! Creating LVs with a layout, snapshots, and access to the runner for the copy and freeze
//! commands that go with them.

use std::sync::Arc;

use vglet_runner::Runner;

use super::{Lvm, check_names, check_tags, invalid};
use crate::args;
use crate::errors::LvmError;
use crate::layout::{LayoutCreate, LvType, SnapshotCreate, SnapshotKind};
use crate::naming::{validate_lv_name, validate_volume};

impl Lvm {
    /// The runner lvm runs through, for the other programs an lvm operation needs around it
    /// (fsfreeze, dd, cmp) so they are bounded, logged and faked the same way.
    pub fn runner(&self) -> Arc<dyn Runner> {
        self.runner.clone()
    }

    /// Creates an LV of any [`crate::Layout`]; linear is exactly [`Lvm::create_lv`].
    pub async fn create_lv_layout(&self, req: &LayoutCreate) -> Result<(), LvmError> {
        if req.layout.lv_type == LvType::Linear {
            return self.create_lv(&req.lv).await;
        }
        let lv = &req.lv;
        validate_volume(&lv.vg, &lv.name).map_err(invalid)?;
        check_tags(&lv.tags)?;
        if lv.size == 0 {
            return Err(invalid(format!("{}/{}: size 0", lv.vg, lv.name)));
        }
        if req.layout.lv_type == LvType::Thin {
            let pool = req.layout.thin_pool.as_deref().unwrap_or("");
            validate_lv_name(pool).map_err(|e| invalid(format!("thin pool: {e}")))?;
        }
        let argv = args::lvcreate_layout(req, &self.options(!lv.activate).await);
        self.run(argv, Some(&lv.vg), Some(&lv.name)).await?;
        tracing::info!(vg = %lv.vg, lv = %lv.name, bytes = lv.size, layout = %req.layout.lv_type, "logical volume created");
        Ok(())
    }

    pub async fn create_snapshot(&self, req: &SnapshotCreate) -> Result<(), LvmError> {
        check_names(&req.vg, &req.origin)?;
        validate_volume(&req.vg, &req.name).map_err(invalid)?;
        check_tags(&req.tags)?;
        if let SnapshotKind::Thick { percent_of_origin } = req.kind
            && !(1..=100).contains(&percent_of_origin)
        {
            return Err(invalid(format!(
                "snapshot size {percent_of_origin}% of the origin is not within 1-100"
            )));
        }
        let argv = args::lvcreate_snapshot(req, &self.options(false).await);
        self.run(argv, Some(&req.vg), Some(&req.name)).await?;
        tracing::info!(vg = %req.vg, origin = %req.origin, snapshot = %req.name, kind = %req.kind, "snapshot created");
        Ok(())
    }

    /// `lvchange -ay -K`: activates also an LV marked activation-skip (a thin snapshot).
    pub async fn activate_lv_ignoring_skip(&self, vg: &str, lv: &str) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        let argv = args::lvchange_activate_ignoring_skip(vg, lv, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LvCreate;
    use crate::layout::Layout;
    use vglet_runner::{FakeRunner, Reply};

    fn fake() -> (FakeRunner, Lvm) {
        let runner = FakeRunner::with(|_| Reply::ok(""));
        let lvm = Lvm::with_binary(Arc::new(runner.clone()), "/sbin/lvm".into());
        (runner, lvm)
    }

    fn thin(pool: &str) -> LayoutCreate {
        LayoutCreate {
            lv: LvCreate {
                vg: "vg0".into(),
                name: "csi-t".into(),
                size: 8 << 20,
                tags: vec![],
                activate: true,
                pvs: vec![],
            },
            layout: Layout {
                lv_type: LvType::Thin,
                thin_pool: Some(pool.into()),
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn layouts_and_snapshots_run_their_argv() {
        let (runner, lvm) = fake();
        lvm.create_lv_layout(&thin("pool0")).await.unwrap();
        let mut linear = thin("pool0");
        linear.layout = Layout::linear();
        lvm.create_lv_layout(&linear).await.unwrap();
        lvm.create_snapshot(&SnapshotCreate {
            vg: "vg0".into(),
            origin: "csi-t".into(),
            name: "snap-x".into(),
            tags: vec!["a=b".into()],
            kind: SnapshotKind::Thick {
                percent_of_origin: 100,
            },
        })
        .await
        .unwrap();
        lvm.activate_lv_ignoring_skip("vg0", "snap-x")
            .await
            .unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm lvcreate -y --type thin -V 8388608b --thinpool pool0 -n csi-t vg0",
                "lvm lvcreate -y --wipesignatures y -Z y -n csi-t -L 8388608b vg0",
                "lvm lvcreate -y -s -l 100%ORIGIN -n snap-x --addtag a=b vg0/csi-t",
                "lvm lvchange -ay -K vg0/snap-x",
            ]
        );
    }

    #[tokio::test]
    async fn bad_requests_never_run() {
        let (runner, lvm) = fake();
        assert!(matches!(
            lvm.create_lv_layout(&thin("../p")).await,
            Err(LvmError::InvalidArgument(_))
        ));
        let mut zero = thin("pool0");
        zero.lv.size = 0;
        assert!(lvm.create_lv_layout(&zero).await.is_err());
        for (origin, name, pct) in [
            ("csi-a", "snap-a", 0),
            ("csi-a", "snap-a", 101),
            ("-x", "snap-a", 50),
            ("csi-a", "snapshot1", 50),
        ] {
            assert!(
                lvm.create_snapshot(&SnapshotCreate {
                    vg: "vg0".into(),
                    origin: origin.into(),
                    name: name.into(),
                    tags: vec![],
                    kind: SnapshotKind::Thick {
                        percent_of_origin: pct
                    },
                })
                .await
                .is_err(),
                "{origin} {name} {pct}"
            );
        }
        assert!(runner.calls().is_empty(), "{:?}", runner.call_lines());
    }
}
