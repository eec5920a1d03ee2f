//! [`Lvm`] operations that prepare hosts (vg-init): PVs, VGs, tags, lockspaces, thin pools,
//! and the questions asked before touching anything (lock managers, system ID).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Lvm, check_tags, invalid, read};
use crate::args;
use crate::errors::LvmError;
use crate::lockd::{self, LockType};
use crate::naming::{validate_lv_name, validate_vg_name};
use crate::vg_requests::{ThinPoolCreate, VgCreate};

/// Bound for commands that may start a sanlock lockspace (vgcreate --shared, lockstart):
/// sanlock's start takes 20 s to minutes, well past the one-minute default.
pub const LOCK_START_BOUND: Duration = Duration::from_secs(300);

fn check_devices(devices: &[String]) -> Result<(), LvmError> {
    if devices.is_empty() {
        return Err(invalid("no devices given".into()));
    }
    match devices
        .iter()
        .find(|d| !d.starts_with('/') || d.contains(','))
    {
        Some(d) => Err(invalid(format!("{d:?} is not a device path"))),
        None => Ok(()),
    }
}

impl Lvm {
    /// Runs an lvm argv with its own bound instead of the configured one.
    async fn run_bounded(
        &self,
        argv: Vec<String>,
        timeout: Duration,
        vg: Option<&str>,
    ) -> Result<vglet_runner::Output, LvmError> {
        self.runner
            .run(self.command(argv).timeout(timeout))
            .await
            .map_err(|e| crate::classify(e, vg, None))
    }

    /// `lvm version` as printed (the `Configuration:` line says which lock managers it has).
    pub async fn version_text(&self) -> Result<String, LvmError> {
        Ok(self.run(args::version(), None, None).await?.stdout_lossy())
    }

    /// Lock managers this lvm was built for.
    pub async fn supported_lock_types(&self) -> Result<Vec<LockType>, LvmError> {
        Ok(lockd::supported_lock_types(&self.version_text().await?))
    }

    /// Configuration values with defaults filled in, keyed by their last path element
    /// (`global/use_lvmlockd` -> `use_lvmlockd`).
    pub async fn config_values(
        &self,
        paths: &[&str],
    ) -> Result<BTreeMap<String, String>, LvmError> {
        let out = self.run(args::config_values(paths), None, None).await?;
        Ok(lockd::parse_config_values(&out.stdout_lossy()))
    }

    /// The host's lvm system ID; `None` when it has none (`system_id_source = "none"`).
    pub async fn host_system_id(&self) -> Result<Option<String>, LvmError> {
        let out = self.run(args::systemid(), None, None).await?;
        Ok(lockd::parse_system_id(&out.stdout_lossy()))
    }

    /// Whether the lock manager behind `lock_type` answers on this host; `Err` says why
    /// not, in words for an operator.
    pub async fn lock_manager_status(&self, lock_type: LockType) -> Result<(), String> {
        let Some((program, argv)) = args::lock_manager_status(lock_type) else {
            return Ok(());
        };
        let mut cmd = self
            .programs()
            .command(program)
            .map_err(|e| e.to_string())?
            .args(&argv);
        if let Some(t) = read(&self.timeout) {
            cmd = cmd.timeout(t);
        }
        match self.runner.run(cmd).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let stderr = e.stderr().trim();
                let why = match e.exit_code() {
                    Some(c) if stderr.is_empty() => format!("exit {c}"),
                    Some(c) => format!("exit {c}: {stderr}"),
                    None => e.to_string(),
                };
                Err(format!("`{program} {}` failed ({why})", argv.join(" ")))
            }
        }
    }

    /// Initialise PVs with a metadata area of `metadata_size` bytes (lvm's default when
    /// `None`).
    pub async fn create_pvs(
        &self,
        devices: &[String],
        metadata_size: Option<u64>,
    ) -> Result<(), LvmError> {
        check_devices(devices)?;
        let argv = args::pvcreate(devices, metadata_size, &self.options(false).await);
        self.run(argv, None, None).await?;
        tracing::info!(devices = %devices.join(","), "physical volumes created");
        Ok(())
    }

    /// Creates a VG. A shared VG's vgcreate also initialises its PVs (before the first
    /// shared VG exists there is no global lock, and a separate pvcreate fails) and starts
    /// its lockspace, so it gets [`LOCK_START_BOUND`].
    pub async fn create_vg(&self, req: &VgCreate) -> Result<(), LvmError> {
        validate_vg_name(&req.vg).map_err(invalid)?;
        check_devices(&req.devices)?;
        check_tags(&req.tags)?;
        let argv = args::vgcreate(req, &self.options(false).await);
        if req.lock_type.is_some() {
            let bound = read(&self.timeout)
                .unwrap_or_default()
                .max(LOCK_START_BOUND);
            self.run_bounded(argv, bound, Some(&req.vg)).await?;
        } else {
            self.run(argv, Some(&req.vg), None).await?;
        }
        let lock_type = req
            .lock_type
            .map_or_else(|| "none".to_string(), |l| l.to_string());
        tracing::info!(vg = %req.vg, devices = %req.devices.join(" "), lock_type = %lock_type, "volume group created");
        Ok(())
    }

    pub async fn extend_vg(
        &self,
        vg: &str,
        devices: &[String],
        metadata_size: Option<u64>,
    ) -> Result<(), LvmError> {
        validate_vg_name(vg).map_err(invalid)?;
        check_devices(devices)?;
        let argv = args::vgextend(vg, devices, metadata_size, &self.options(false).await);
        self.run(argv, Some(vg), None).await?;
        tracing::info!(%vg, devices = %devices.join(","), "volume group extended");
        Ok(())
    }

    pub async fn add_vg_tags(&self, vg: &str, tags: &[String]) -> Result<(), LvmError> {
        validate_vg_name(vg).map_err(invalid)?;
        check_tags(tags)?;
        if tags.is_empty() {
            return Ok(());
        }
        let argv = args::vgchange_add_tags(vg, tags, &self.options(false).await);
        self.run(argv, Some(vg), None).await.map(drop)
    }

    pub async fn del_vg_tags(&self, vg: &str, tags: &[String]) -> Result<(), LvmError> {
        validate_vg_name(vg).map_err(invalid)?;
        check_tags(tags)?;
        if tags.is_empty() {
            return Ok(());
        }
        let argv = args::vgchange_del_tags(vg, tags, &self.options(false).await);
        self.run(argv, Some(vg), None).await.map(drop)
    }

    /// Adds `tags` to the PVs `devices` (the fast tier's tag).
    pub async fn add_pv_tags(&self, devices: &[String], tags: &[String]) -> Result<(), LvmError> {
        check_devices(devices)?;
        check_tags(tags)?;
        if tags.is_empty() {
            return Ok(());
        }
        let argv = args::pvchange_add_tags(devices, tags, &self.options(false).await);
        self.run(argv, None, None).await?;
        tracing::info!(devices = %devices.join(","), tags = %tags.join(","), "physical volumes tagged");
        Ok(())
    }

    pub async fn set_vg_system_id(&self, vg: &str, system_id: &str) -> Result<(), LvmError> {
        validate_vg_name(vg).map_err(invalid)?;
        if system_id.is_empty() || system_id.contains(char::is_whitespace) {
            return Err(invalid(format!("system ID {system_id:?}")));
        }
        let argv = args::vgchange_system_id(vg, system_id, &self.options(false).await);
        self.run(argv, Some(vg), None).await.map(drop)
    }

    /// `vgchange --lockstart`, which waits until the lockspace is ready, bounded by
    /// `timeout` (the command is killed after it: [`LvmError::Timeout`]).
    pub async fn lockstart_vg(&self, vg: &str, timeout: Duration) -> Result<(), LvmError> {
        validate_vg_name(vg).map_err(invalid)?;
        let argv = args::vgchange_lockstart(vg, &self.options(false).await);
        self.run_bounded(argv, timeout, Some(vg)).await.map(drop)
    }

    pub async fn lockstop_vg(&self, vg: &str) -> Result<(), LvmError> {
        validate_vg_name(vg).map_err(invalid)?;
        let argv = args::vgchange_lockstop(vg, &self.options(false).await);
        self.run(argv, Some(vg), None).await.map(drop)
    }

    /// Creates a thin pool. Zeroing its metadata and checking it (thin_check) make this
    /// one of the slower lvm commands, so it gets the lock-start bound too.
    pub async fn create_thin_pool(&self, req: &ThinPoolCreate) -> Result<(), LvmError> {
        validate_vg_name(&req.vg).map_err(invalid)?;
        validate_lv_name(&req.name).map_err(invalid)?;
        let argv = args::lvcreate_thin_pool(req, &self.options(false).await);
        let bound = read(&self.timeout)
            .unwrap_or_default()
            .max(LOCK_START_BOUND);
        self.run_bounded(argv, bound, Some(&req.vg)).await?;
        tracing::info!(vg = %req.vg, pool = %req.name, size = %req.size, "thin pool created");
        Ok(())
    }
}

/// Where lvmlockd listens; its presence tells "not running" from "not answering" in
/// messages.
pub const LVMLOCKD_SOCKET: &str = "/run/lvm/lvmlockd.socket";

/// For messages: whether lvmlockd's socket exists.
pub fn lvmlockd_socket_exists() -> bool {
    PathBuf::from(LVMLOCKD_SOCKET).exists()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vglet_runner::{Command, FakeRunner, Program, Programs, Reply};

    use super::*;
    use crate::vg_requests::PoolSize;

    fn fake(handler: impl Fn(&Command) -> Reply + Send + Sync + 'static) -> (FakeRunner, Lvm) {
        let runner = FakeRunner::with(handler);
        let lvm = Lvm::with_binary(Arc::new(runner.clone()), "/sbin/lvm".into());
        (runner, lvm)
    }

    const VERSION: &str = "  LVM version:     2.03.16(2) (2022-05-18)\n  Library version: 1.02.185 (2022-05-18)\n  Configuration:   ./configure --enable-lvmlockd-dlm --enable-lvmlockd-sanlock --enable-lvmpolld\n";

    #[tokio::test]
    async fn queries() {
        let (runner, lvm) = fake(|c| match c.arg_strings()[0].as_str() {
            "version" => Reply::ok(VERSION),
            "systemid" => Reply::ok("  system ID: node1\n"),
            "config" => Reply::ok("use_lvmlockd=1\nhost_id=7\n"),
            _ => Reply::ok(""),
        });
        assert_eq!(
            lvm.supported_lock_types().await.unwrap(),
            vec![LockType::Sanlock, LockType::Dlm]
        );
        assert_eq!(
            lvm.host_system_id().await.unwrap().as_deref(),
            Some("node1")
        );
        let v = lvm
            .config_values(&["global/use_lvmlockd", "local/host_id"])
            .await
            .unwrap();
        assert_eq!(
            (v["use_lvmlockd"].as_str(), v["host_id"].as_str()),
            ("1", "7")
        );
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm version",
                "lvm systemid",
                "lvm config --typeconfig full global/use_lvmlockd local/host_id"
            ]
        );
    }

    #[tokio::test]
    async fn modifying_commands() {
        let (runner, lvm) = fake(|_| Reply::ok(""));
        let devs = vec!["/dev/vda".to_string(), "/dev/vdb".to_string()];
        lvm.create_pvs(&devs, Some(16 << 20)).await.unwrap();
        lvm.create_vg(&VgCreate {
            vg: "vg0".into(),
            devices: devs.clone(),
            tags: vec!["vglet.managed=true".into()],
            lock_type: None,
            metadata_size: None,
        })
        .await
        .unwrap();
        lvm.extend_vg("vg0", &devs[1..], None).await.unwrap();
        lvm.add_vg_tags("vg0", &["a=b".into()]).await.unwrap();
        lvm.del_vg_tags("vg0", &["vglet.vg-init=0.0.1".into()])
            .await
            .unwrap();
        lvm.add_vg_tags("vg0", &[]).await.unwrap();
        lvm.set_vg_system_id("vg0", "node1").await.unwrap();
        lvm.lockstart_vg("vg0", Duration::from_secs(120))
            .await
            .unwrap();
        lvm.lockstop_vg("vg0").await.unwrap();
        lvm.create_thin_pool(&ThinPoolCreate {
            vg: "vg0".into(),
            name: "pool".into(),
            size: PoolSize::PercentOfVg(80),
            activate: true,
        })
        .await
        .unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm pvcreate --metadatasize 16384k /dev/vda /dev/vdb",
                "lvm vgcreate --addtag vglet.managed=true vg0 /dev/vda /dev/vdb",
                "lvm vgextend vg0 /dev/vdb",
                "lvm vgchange --addtag a=b vg0",
                "lvm vgchange --deltag vglet.vg-init=0.0.1 vg0",
                "lvm vgchange --systemid node1 vg0",
                "lvm vgchange --lockstart vg0",
                "lvm vgchange --lockstop vg0",
                "lvm lvcreate --type thin-pool -l 80%VG -n pool vg0",
            ]
        );
        let calls = runner.calls();
        assert_eq!(calls[6].timeout, Duration::from_secs(120));
        assert_eq!(calls[8].timeout, LOCK_START_BOUND);
    }

    #[tokio::test]
    async fn shared_vgcreate_gets_the_lock_start_bound() {
        let (runner, lvm) = fake(|_| Reply::ok(""));
        lvm.create_vg(&VgCreate {
            vg: "svg".into(),
            devices: vec!["/dev/vdc".into()],
            tags: vec![],
            lock_type: Some(LockType::Sanlock),
            metadata_size: Some(16 << 20),
        })
        .await
        .unwrap();
        assert_eq!(
            runner.call_lines(),
            vec!["lvm vgcreate --shared --locktype sanlock --metadatasize 16384k svg /dev/vdc"]
        );
        assert_eq!(runner.calls()[0].timeout, LOCK_START_BOUND);
    }

    #[tokio::test]
    async fn bad_input_never_reaches_lvm() {
        let (runner, lvm) = fake(|_| Reply::ok(""));
        assert!(matches!(
            lvm.create_pvs(&[], None).await,
            Err(LvmError::InvalidArgument(_))
        ));
        assert!(matches!(
            lvm.create_pvs(&["vda".into()], None).await,
            Err(LvmError::InvalidArgument(_))
        ));
        assert!(matches!(
            lvm.extend_vg("bad name", &["/dev/vda".into()], None).await,
            Err(LvmError::InvalidArgument(_))
        ));
        assert!(matches!(
            lvm.add_vg_tags("vg0", &["has space".into()]).await,
            Err(LvmError::InvalidArgument(_))
        ));
        assert!(matches!(
            lvm.set_vg_system_id("vg0", "").await,
            Err(LvmError::InvalidArgument(_))
        ));
        assert!(runner.calls().is_empty());
    }

    #[tokio::test]
    async fn lvm_answers_are_classified() {
        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                "  WARNING: lvmlockd process is not running.\n  Global lock failed: check that lvmlockd is running.\n",
            )
        });
        let req = VgCreate {
            vg: "svg".into(),
            devices: vec!["/dev/vdc".into()],
            lock_type: Some(LockType::Sanlock),
            ..Default::default()
        };
        assert!(matches!(
            lvm.create_vg(&req).await,
            Err(LvmError::LockManager(_))
        ));
        // Verbatim from lvm 2.03.16 with lvmlockd running but built without idm.
        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                "  VG create failed: lock manager idm is not supported by lvmlockd.\n",
            )
        });
        assert!(matches!(
            lvm.create_vg(&req).await,
            Err(LvmError::LockManager(_))
        ));
        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                "  Can't initialize physical volume \"/dev/vdf\" of volume group \"other\" without -ff\n",
            )
        });
        let e = lvm
            .create_pvs(&["/dev/vdf".into()], None)
            .await
            .unwrap_err();
        assert!(matches!(
            crate::vg_errors::vg_refusal(&e),
            Some(crate::vg_errors::VgRefusal::InOtherVg(_))
        ));
    }

    #[tokio::test]
    async fn lock_manager_status_without_the_tool() {
        let (runner, lvm) = fake(|_| Reply::ok(""));
        assert!(lvm.lock_manager_status(LockType::Idm).await.is_ok());
        lvm.lock_manager_status(LockType::Sanlock).await.unwrap();
        assert_eq!(runner.calls()[0].program, "/sbin/sanlock");
        // sanlock absent at start: said, and nothing runs.
        let runner = FakeRunner::new();
        let programs = Programs::all_in("/sbin").without(Program::Sanlock);
        let lvm = Lvm::new(Arc::new(runner.clone()), programs).unwrap();
        let e = lvm
            .lock_manager_status(LockType::Sanlock)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("sanlock is not available on this host"),
            "{e}"
        );
        assert!(runner.calls().is_empty());
    }
}
