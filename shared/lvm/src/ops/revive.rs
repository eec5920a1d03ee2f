//! [`Lvm`] operations for recovery (csi-driver start-up reconcile, reviver).

use super::{Lvm, check_names, invalid};
use crate::errors::LvmError;
use crate::naming::validate_tag;

impl Lvm {
    /// Removes `vg/lv` only if it still carries `tag`. lvm evaluates the selection under the
    /// VG write lock, so an LV whose tag another process removes a moment earlier (a create
    /// completing) is left alone: check and removal are one step. Nothing matching is
    /// success; read the LV back to learn which happened.
    pub async fn remove_lv_if_tagged(&self, vg: &str, lv: &str, tag: &str) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        validate_tag(tag).map_err(invalid)?;
        let o = self.options(false).await;
        let mut argv = vec!["lvremove".to_string()];
        if !o.devices.is_empty() {
            argv.extend(["--devices".to_string(), o.devices.join(",")]);
        }
        if let Some(c) = o.config {
            argv.extend(["--config".to_string(), c]);
        }
        argv.extend([
            "-y".to_string(),
            "--select".to_string(),
            // Quoted: a tag may hold '&' and '=', which select would otherwise parse.
            format!("lv_tags=\"{tag}\""),
            format!("{vg}/{lv}"),
        ]);
        self.run(argv, Some(vg), Some(lv)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vglet_runner::{FakeRunner, Reply};

    use super::*;

    #[tokio::test]
    async fn conditional_remove_argv() {
        let runner = FakeRunner::with(|_| Reply::ok(""));
        let lvm = Lvm::with_binary(Arc::new(runner.clone()), "/sbin/lvm".into());
        lvm.remove_lv_if_tagged("vg0", "csi-a", "vglet.creating")
            .await
            .unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![r#"lvm lvremove -y --select lv_tags="vglet.creating" vg0/csi-a"#]
        );
        assert!(matches!(
            lvm.remove_lv_if_tagged("vg0", "csi-a", "a b").await,
            Err(LvmError::InvalidArgument(_))
        ));
    }
}
