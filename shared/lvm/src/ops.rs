//! [`Lvm`]: the lvm operations vglet performs, run through the injected [`Runner`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use vglet_runner::{Command, Output, Program, ProgramMissing, Programs, Runner};

use crate::args::{self, CommonOptions};
use crate::errors::{LvmError, classify, is_extend_noop};
use crate::naming::{validate_lv_name, validate_tag, validate_vg_name, validate_volume};
use crate::report::{Lv, Report, Vg, parse_fullreport};
use crate::requests::{Activation, LvCreate};
use crate::version::LvmVersion;

mod cache;
mod convert;
mod layout;
mod revive;
pub(crate) mod vg;

/// Typed access to lvm2. Cheap to share behind an `Arc`; the settings use interior
/// mutability so a daemon can change them (a new device appears) without rebuilding it.
#[derive(Debug)]
pub struct Lvm {
    runner: Arc<dyn Runner>,
    binary: PathBuf,
    /// lvm's companions (lvmlockctl, sanlock, dlm_tool, wipefs), resolved at start.
    programs: Programs,
    devices: RwLock<Vec<String>>,
    config: RwLock<Option<String>>,
    /// `None`: the runner's default bound.
    timeout: RwLock<Option<Duration>>,
    niceness: RwLock<Option<i32>>,
    version: OnceLock<LvmVersion>,
    reads: crate::coalesce::ReadCoalescer,
    lv_reads: crate::coalesce::LvReadBatcher,
    untags: crate::batch::TagBatcher,
    recent: crate::recent::RecentVgs,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    // A poisoned lock only means a writer panicked mid-assignment of a plain value; the
    // value is still whole, so keep serving it.
    lock.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|e| e.into_inner()) = value;
}

fn invalid(e: String) -> LvmError {
    LvmError::InvalidArgument(e)
}

fn check_names(vg: &str, lv: &str) -> Result<(), LvmError> {
    validate_vg_name(vg).map_err(invalid)?;
    validate_lv_name(lv).map_err(invalid)
}

fn check_tags(tags: &[String]) -> Result<(), LvmError> {
    tags.iter()
        .try_for_each(|t| validate_tag(t))
        .map_err(invalid)
}

impl Lvm {
    /// Runs the programs the binary resolved at start; lvm itself must be among them.
    pub fn new(runner: Arc<dyn Runner>, programs: Programs) -> Result<Lvm, ProgramMissing> {
        let binary = programs.path(Program::Lvm)?.to_path_buf();
        Ok(Lvm::from_parts(runner, binary, programs))
    }

    /// For tests with a fake runner: lvm at `path` and every other program beside it in the
    /// same directory, none of them checked.
    pub fn with_binary(runner: Arc<dyn Runner>, path: PathBuf) -> Lvm {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let programs = Programs::all_in(dir).with(Program::Lvm, path.clone());
        Lvm::from_parts(runner, path, programs)
    }

    fn from_parts(runner: Arc<dyn Runner>, binary: PathBuf, programs: Programs) -> Lvm {
        Lvm {
            runner,
            binary,
            programs,
            devices: RwLock::new(Vec::new()),
            config: RwLock::new(None),
            timeout: RwLock::new(None),
            niceness: RwLock::new(None),
            version: OnceLock::new(),
            reads: Default::default(),
            lv_reads: Default::default(),
            untags: Default::default(),
            recent: Default::default(),
        }
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The programs this lvm was built with (the binary's, resolved at start).
    pub fn programs(&self) -> &Programs {
        &self.programs
    }

    /// Restrict scanning to these devices (`--devices dev1,dev2`) where lvm supports it
    /// (2.03.12 and later; older versions scan everything). They must include every PV of
    /// the VGs used, or lvm will see those VGs with missing PVs. An empty list lifts the
    /// restriction. Entries that lvm would split (commas) or that are blank are dropped.
    pub fn set_device_scope(&self, devices: Vec<String>) {
        let devices: Vec<String> = devices
            .into_iter()
            .map(|d| d.trim().to_string())
            .filter(|d| {
                let ok = !d.is_empty() && !d.contains(',');
                if !ok {
                    tracing::warn!(device = %d, "device not usable in lvm --devices; ignored");
                }
                ok
            })
            .collect();
        write(&self.devices, devices);
    }

    pub fn device_scope(&self) -> Vec<String> {
        read(&self.devices)
    }

    /// An lvm.conf fragment passed as `--config` to every report and modifying command,
    /// e.g. `global { activation = 0 }` on a host without device-mapper (tests, dry runs).
    pub fn set_config(&self, config: Option<String>) {
        write(&self.config, config);
    }

    /// Bound for each lvm command (default one minute). A hung lvm is killed and reported
    /// as [`LvmError::Timeout`].
    pub fn set_timeout(&self, timeout: Duration) {
        write(&self.timeout, Some(timeout));
    }

    /// Runs lvm `n` nice levels below this process from now on (`None`: at its priority
    /// again): for start-up reads that must not take the CPU from a server already answering.
    pub fn set_niceness(&self, n: Option<i32>) {
        write(&self.niceness, n);
    }

    fn command(&self, argv: Vec<String>) -> Command {
        let mut cmd = Command::new(&self.binary)
            .args(argv)
            // lvm warns on stderr about every inherited descriptor; those lines would only
            // clutter the messages we classify.
            .env("LVM_SUPPRESS_FD_WARNINGS", "1");
        if let Some(n) = read(&self.niceness) {
            cmd = cmd.niceness(n);
        }
        match read(&self.timeout) {
            Some(t) => cmd.timeout(t),
            None => cmd,
        }
    }

    async fn run(
        &self,
        argv: Vec<String>,
        vg: Option<&str>,
        lv: Option<&str>,
    ) -> Result<Output, LvmError> {
        self.runner
            .run(self.command(argv))
            .await
            .map_err(|e| classify(e, vg, lv))
    }

    /// The installed lvm's version; asked once, then remembered (the binary does not change
    /// under a running process).
    pub async fn version(&self) -> Result<LvmVersion, LvmError> {
        if let Some(v) = self.version.get() {
            return Ok(*v);
        }
        let out = self.run(args::version(), None, None).await?;
        let text = out.stdout_lossy();
        let v = LvmVersion::parse(&text).ok_or_else(|| {
            LvmError::Parse(format!("no \"LVM version:\" line in {:?}", text.trim()))
        })?;
        let _ = self.version.set(v);
        Ok(v)
    }

    /// The options for the next command. The version is asked only when a gated option
    /// would be used; if it cannot be learnt the options are left out, which is slower
    /// (full scan) or laxer (autoactivation) but never wrong.
    async fn options(&self, creating_inactive: bool) -> CommonOptions {
        let devices = read(&self.devices);
        let version = if !devices.is_empty() || creating_inactive {
            match self.version().await {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "lvm version unknown; not using --devices or --setautoactivation");
                    None
                }
            }
        } else {
            None
        };
        let devices_ok = version.is_some_and(|v| v.supports_devices_option());
        if !devices.is_empty() && !devices_ok {
            tracing::debug!(
                ?version,
                "lvm does not support --devices; scanning all devices"
            );
        }
        CommonOptions {
            devices: if devices_ok { devices } else { Vec::new() },
            config: read(&self.config),
            setautoactivation: version.is_some_and(|v| v.supports_setautoactivation()),
        }
    }

    /// One `lvm fullreport` for one VG (or all): VG, PVs, LVs with tags.
    pub async fn report(&self, vg: Option<&str>) -> Result<Report, LvmError> {
        if let Some(vg) = vg {
            validate_vg_name(vg).map_err(invalid)?;
        }
        let asked = std::time::Instant::now();
        // Concurrent callers share a read that started after they asked (see coalesce.rs).
        let report = self
            .reads
            .read(vg.unwrap_or(""), || async {
                let argv = args::fullreport(vg, &self.options(false).await);
                let out = self.run(argv, vg, None).await?;
                parse_fullreport(&out.stdout_lossy()).map_err(LvmError::Parse)
            })
            .await;
        if let Ok(r) = &report {
            self.recent.record(vg, asked, r);
        }
        report
    }

    /// One `lvm fullreport` of VG `vg` limited to LV `lv` and the LVs whose origin it is
    /// (its snapshots): the VG and its PVs as [`Lvm::report`] shows them, and of the LVs
    /// only those. What a decision about one LV needs, at a cost that does not grow with
    /// the VG's other LVs' rows. Concurrent callers of the VG share one read of all their
    /// LVs (see coalesce.rs), so the report may hold other LVs as well: look the LV up by
    /// name. [`LvmError::VgNotFound`] when the VG is missing; a VG without the LV is a
    /// report without it.
    pub async fn report_lv(&self, vg: &str, lv: &str) -> Result<Report, LvmError> {
        check_names(vg, lv)?;
        let asked = std::time::Instant::now();
        let report = self
            .lv_reads
            .read(vg, lv, |lvs| async move {
                let argv = args::fullreport_of_lvs(vg, &lvs, &self.options(false).await);
                let out = self.run(argv, Some(vg), None).await?;
                parse_fullreport(&out.stdout_lossy()).map_err(LvmError::Parse)
            })
            .await;
        if let Ok(r) = &report {
            // The VG and its PVs are shown in full: as fresh a view of them as a whole read.
            self.recent.record(Some(vg), asked, r);
        }
        report
    }

    /// The VG and its PVs as a read asked for at most `max_age` ago showed them, without
    /// running lvm: only for a decision lvm re-checks itself (see recent.rs).
    pub fn recent_vg(&self, vg: &str, max_age: Duration) -> Option<(Vg, Vec<crate::report::Pv>)> {
        self.recent.get(vg, max_age)
    }

    /// The VG, or [`LvmError::VgNotFound`].
    pub async fn vg(&self, vg: &str) -> Result<Vg, LvmError> {
        self.report(Some(vg))
            .await?
            .vgs
            .into_iter()
            .find(|v| v.name == vg)
            .ok_or_else(|| LvmError::VgNotFound(vg.to_string()))
    }

    /// Every LV of the VG, hidden sub-LVs included (see [`Lv::is_hidden`]).
    pub async fn lvs(&self, vg: &str) -> Result<Vec<Lv>, LvmError> {
        let report = self.report(Some(vg)).await?;
        if report.vg(vg).is_none() {
            return Err(LvmError::VgNotFound(vg.to_string()));
        }
        Ok(report.lvs.into_iter().filter(|l| l.vg == vg).collect())
    }

    /// The LV, `None` when the VG exists but has no such LV.
    pub async fn lv(&self, vg: &str, lv: &str) -> Result<Option<Lv>, LvmError> {
        validate_lv_name(lv).map_err(invalid)?;
        Ok(self.lvs(vg).await?.into_iter().find(|l| l.name == lv))
    }

    /// Creates a linear LV of `req.size` bytes (lvm rounds up to whole extents).
    pub async fn create_lv(&self, req: &LvCreate) -> Result<(), LvmError> {
        validate_volume(&req.vg, &req.name).map_err(invalid)?;
        check_tags(&req.tags)?;
        if req.size == 0 {
            return Err(invalid(format!("{}/{}: size 0", req.vg, req.name)));
        }
        let argv = args::lvcreate(req, &self.options(!req.activate).await);
        self.run(argv, Some(&req.vg), Some(&req.name)).await?;
        tracing::info!(vg = %req.vg, lv = %req.name, bytes = req.size, active = req.activate, "logical volume created");
        Ok(())
    }

    pub async fn remove_lv(&self, vg: &str, lv: &str) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        let argv = args::lvremove(vg, lv, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await?;
        tracing::info!(%vg, %lv, "logical volume removed");
        Ok(())
    }

    /// Grow to `size` bytes (already rounded to extents by the caller or by lvm). An LV
    /// that already has at least that size is left alone and is success, so a retried
    /// expansion is harmless.
    /// `pvs`: the PVs lvm may allocate on (empty: any; see [`crate::cache::data_pvs`]).
    pub async fn extend_lv(
        &self,
        vg: &str,
        lv: &str,
        size: u64,
        pvs: &[String],
    ) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        let argv = args::lvextend(vg, lv, size, pvs, &self.options(false).await);
        self.run_extend(argv, vg, lv, size).await
    }

    /// Extends an LV of a shared VG that another host holds active (see
    /// [`args::lvextend_skip_lv_lock`]). Only for linear LVs whose holder refreshes after.
    pub async fn extend_lv_skip_lv_lock(
        &self,
        vg: &str,
        lv: &str,
        size: u64,
        pvs: &[String],
    ) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        let argv = args::lvextend_skip_lv_lock(vg, lv, size, pvs, &self.options(false).await);
        self.run_extend(argv, vg, lv, size).await
    }

    async fn run_extend(
        &self,
        argv: Vec<String>,
        vg: &str,
        lv: &str,
        size: u64,
    ) -> Result<(), LvmError> {
        match self.runner.run(self.command(argv)).await {
            Ok(_) => {
                tracing::info!(%vg, %lv, bytes = size, "logical volume extended");
                Ok(())
            }
            Err(e) if is_extend_noop(&e) => {
                tracing::debug!(%vg, %lv, bytes = size, "logical volume already that large");
                Ok(())
            }
            Err(e) => Err(classify(e, Some(vg), Some(lv))),
        }
    }

    /// VGs whose lvmlockd lockspace is started on this host. `LockManager` when lvmlockd
    /// does not answer (not running, or lvmlockctl missing).
    pub async fn started_lockspaces(&self) -> Result<Vec<String>, LvmError> {
        let mut cmd = self
            .programs
            .command(Program::Lvmlockctl)
            .map_err(|e| LvmError::LockManager(format!("lvmlockd cannot be asked: {e}")))?
            .args(args::lvmlockctl_info());
        if let Some(t) = read(&self.timeout) {
            cmd = cmd.timeout(t);
        }
        match self.runner.run(cmd).await {
            Ok(out) => Ok(crate::lockspace::parse_started(&out.stdout_lossy())),
            Err(e) => Err(LvmError::LockManager(format!(
                "lvmlockd does not answer: {e}"
            ))),
        }
    }

    /// The sanlock host id that holds (or last held) the lock of a shared-VG LV, read from
    /// its lease on disk; `None` when that cannot be told (not sanlock, sanlock missing).
    pub async fn lock_holder(&self, lv: &crate::Lv) -> Option<u64> {
        let resource = crate::lockspace::sanlock_resource(&lv.vg, &lv.uuid, &lv.lock_args)?;
        let cmd = self
            .programs
            .command(Program::Sanlock)
            .ok()?
            .args(args::sanlock_read_leader(&resource));
        let out = self.runner.run(cmd).await.ok()?;
        crate::lockspace::parse_leader_owner(&out.stdout_lossy())
    }

    pub async fn activate_lv(&self, vg: &str, lv: &str, mode: Activation) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        let argv = args::lvchange_activate(vg, lv, mode, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await.map(drop)
    }

    pub async fn deactivate_lv(&self, vg: &str, lv: &str) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        let argv = args::lvchange_deactivate(vg, lv, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await.map(drop)
    }

    /// Reloads an active LV's size from metadata (after another host extended it).
    pub async fn refresh_lv(&self, vg: &str, lv: &str) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        let argv = args::lvchange_refresh(vg, lv, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await.map(drop)
    }

    /// Adds tags; adding a tag the LV already has is not an error in lvm.
    pub async fn add_lv_tags(&self, vg: &str, lv: &str, tags: &[String]) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        check_tags(tags)?;
        if tags.is_empty() {
            return Ok(());
        }
        let argv = args::lvchange_add_tags(vg, lv, tags, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await.map(drop)
    }

    /// Deletes tags; deleting a tag the LV does not have is not an error in lvm.
    pub async fn del_lv_tags(&self, vg: &str, lv: &str, tags: &[String]) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        check_tags(tags)?;
        if tags.is_empty() {
            return Ok(());
        }
        let argv = args::lvchange_del_tags(vg, lv, tags, &self.options(false).await);
        self.run(argv, Some(vg), Some(lv)).await.map(drop)
    }

    /// Removes `tag` from `vg/lv`, batched with concurrent callers removing the same tag in
    /// the same VG (one metadata commit for all of them; see batch.rs). The batch waits for
    /// more LVs (a few seconds at most) while `hold(number queued)` says more are coming.
    pub async fn del_lv_tag_batched(
        &self,
        vg: &str,
        lv: &str,
        tag: &str,
        hold: impl Fn(usize) -> bool,
    ) -> Result<(), LvmError> {
        check_names(vg, lv)?;
        check_tags(&[tag.to_string()])?;
        self.untags
            .run(
                vg,
                tag,
                lv,
                hold,
                |lvs| async move {
                    let argv =
                        args::lvchange_del_tag_many(vg, &lvs, tag, &self.options(false).await);
                    self.run(argv, Some(vg), None).await.map(drop)
                },
                |lv| async move { self.del_lv_tags(vg, &lv, &[tag.to_string()]).await },
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vglet_runner::{FakeRunner, Reply};

    const VERSION: &str = include_str!("../tests/fixtures/lvm_version_2.03.16.txt");
    const ONE_VG: &str = include_str!("../tests/fixtures/fullreport_one_vg.json");
    const OLD_VERSION: &str = "  LVM version:     2.03.11(2) (2021-01-08)\n";

    const FIELDS: &str = "--reportformat json --units b --nosuffix \
        --configreport vg -o vg_name,vg_uuid,vg_attr,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,pv_count,vg_missing_pv_count,lv_count,vg_tags,vg_lock_type,vg_systemid \
        --configreport pv -o pv_name,vg_name,pv_uuid,pv_attr,pv_size,pv_free,pv_tags \
        --configreport lv -o vg_name,lv_name,lv_uuid,lv_attr,lv_size,lv_active,lv_tags,lv_path,lv_dm_path,lv_layout,lv_role,pool_lv,origin,data_percent,metadata_percent,copy_percent,lv_health_status,lv_lock_args,cache_total_blocks,cache_used_blocks,cache_dirty_blocks,cache_read_hits,cache_read_misses,cache_write_hits,cache_write_misses,writecache_total_blocks,writecache_free_blocks,writecache_writeback_blocks,writecache_error \
        --configreport pvseg -o pvseg_start \
        --configreport seg -o lv_uuid,seg_start,segtype";

    /// An Lvm over a fake that answers `lvm version` like 2.03.16 and everything else
    /// with `reply`.
    fn fake_with_version(
        version: &'static str,
        reply: impl Fn(&[String]) -> Reply + Send + Sync + 'static,
    ) -> (FakeRunner, Lvm) {
        let runner = FakeRunner::with(move |c| {
            let argv = c.arg_strings();
            if argv.first().map(String::as_str) == Some("version") {
                Reply::ok(version)
            } else {
                reply(&argv)
            }
        });
        let lvm = Lvm::with_binary(Arc::new(runner.clone()), PathBuf::from("/sbin/lvm"));
        (runner, lvm)
    }

    fn fake(reply: impl Fn(&[String]) -> Reply + Send + Sync + 'static) -> (FakeRunner, Lvm) {
        fake_with_version(VERSION, reply)
    }

    fn reports(argv: &[String]) -> Reply {
        if argv.first().map(String::as_str) == Some("fullreport") {
            Reply::ok(ONE_VG)
        } else {
            Reply::ok("")
        }
    }

    fn lvm_warn(msg: &str) -> String {
        format!(
            "  WARNING: Activation disabled. No device-mapper interaction will be attempted.\n  {msg}\n"
        )
    }

    #[tokio::test]
    async fn every_call_runs_lvm_with_fd_warnings_suppressed() {
        let (runner, lvm) = fake(reports);
        lvm.report(Some("vgletx")).await.unwrap();
        let calls = runner.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].program, "/sbin/lvm");
        assert!(
            calls[0]
                .env
                .contains(&("LVM_SUPPRESS_FD_WARNINGS".into(), "1".into()))
        );
        assert_eq!(calls[0].timeout, vglet_runner::Command::new("x").timeout);
        assert_eq!(
            runner.call_lines(),
            vec![format!("lvm fullreport {FIELDS} vgletx")]
        );
    }

    #[tokio::test]
    async fn new_runs_the_resolved_lvm_and_refuses_without_one() {
        let programs = Programs::default().with(Program::Lvm, "/opt/lvm2/lvm");
        let lvm = Lvm::new(Arc::new(FakeRunner::new()), programs).unwrap();
        assert_eq!(lvm.binary(), Path::new("/opt/lvm2/lvm"));
        let e = Lvm::new(Arc::new(FakeRunner::new()), Programs::default()).unwrap_err();
        assert_eq!(e.program, Program::Lvm);
    }

    /// An absent lvmlockctl is the lock manager's trouble, said as such, and nothing runs.
    #[tokio::test]
    async fn without_lvmlockctl_lockspaces_are_a_lock_manager_error() {
        let runner = FakeRunner::new();
        let programs = Programs::all_in("/sbin").without(Program::Lvmlockctl);
        let lvm = Lvm::new(Arc::new(runner.clone()), programs).unwrap();
        let e = lvm.started_lockspaces().await.unwrap_err();
        assert!(
            matches!(&e, LvmError::LockManager(m) if m.contains("lvmlockctl is not available")),
            "{e}"
        );
        assert!(runner.calls().is_empty());
    }

    #[tokio::test]
    async fn device_scope_is_gated_on_the_version_and_asked_once() {
        let (runner, lvm) = fake(reports);
        lvm.set_device_scope(vec![
            "/dev/loop0".into(),
            " ".into(),
            "a,b".into(),
            "/dev/loop1".into(),
        ]);
        assert_eq!(lvm.device_scope(), vec!["/dev/loop0", "/dev/loop1"]);
        lvm.report(None).await.unwrap();
        lvm.remove_lv("vgletx", "other").await.unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm version".to_string(),
                format!("lvm fullreport --devices /dev/loop0,/dev/loop1 {FIELDS}"),
                "lvm lvremove --devices /dev/loop0,/dev/loop1 -y vgletx/other".to_string(),
            ]
        );
        lvm.set_device_scope(Vec::new());
        lvm.remove_lv("vgletx", "other").await.unwrap();
        assert_eq!(
            runner.call_lines().last().unwrap(),
            "lvm lvremove -y vgletx/other"
        );
    }

    #[tokio::test]
    async fn device_scope_is_dropped_on_old_lvm() {
        let (runner, lvm) = fake_with_version(OLD_VERSION, reports);
        lvm.set_device_scope(vec!["/dev/sdb".into()]);
        lvm.report(Some("vgletx")).await.unwrap();
        let req = LvCreate {
            vg: "vg0".into(),
            name: "lv0".into(),
            size: 4 << 20,
            tags: vec![],
            activate: false,
            pvs: vec![],
        };
        lvm.create_lv(&req).await.unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm version".to_string(),
                format!("lvm fullreport {FIELDS} vgletx"),
                "lvm lvcreate -y --wipesignatures y -Z n -an -n lv0 -L 4194304b vg0".to_string(),
            ]
        );
    }

    #[tokio::test]
    async fn unknown_version_drops_gated_options_but_still_runs() {
        let runner = FakeRunner::with(|c| match c.arg_strings()[0].as_str() {
            "version" => Reply::fail(3, "  broken\n"),
            _ => Reply::ok(ONE_VG),
        });
        let lvm = Lvm::with_binary(Arc::new(runner.clone()), "/sbin/lvm".into());
        lvm.set_device_scope(vec!["/dev/sdb".into()]);
        lvm.report(Some("vgletx")).await.unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm version".to_string(),
                format!("lvm fullreport {FIELDS} vgletx")
            ]
        );
    }

    #[tokio::test]
    async fn version_is_parsed_and_cached() {
        let (runner, lvm) = fake(reports);
        assert_eq!(lvm.version().await.unwrap(), LvmVersion::new(2, 3, 16));
        assert_eq!(lvm.version().await.unwrap(), LvmVersion::new(2, 3, 16));
        assert_eq!(runner.call_lines(), vec!["lvm version"]);

        let (_, lvm) = fake_with_version("garbage\n", reports);
        assert!(matches!(lvm.version().await, Err(LvmError::Parse(_))));
    }

    #[tokio::test]
    async fn config_and_timeout_apply_to_every_command() {
        let (runner, lvm) = fake(reports);
        lvm.set_config(Some("global { activation = 0 }".into()));
        lvm.set_timeout(Duration::from_secs(5));
        lvm.deactivate_lv("vgletx", "other").await.unwrap();
        let call = &runner.calls()[0];
        assert_eq!(
            call.arg_strings(),
            vec![
                "lvchange",
                "--config",
                "global { activation = 0 }",
                "-an",
                "vgletx/other"
            ]
        );
        assert_eq!(call.timeout, Duration::from_secs(5));
    }

    #[tokio::test]
    async fn vg_lvs_and_lv_read_one_report() {
        let (runner, lvm) = fake(reports);
        let vg = lvm.vg("vgletx").await.unwrap();
        assert_eq!(vg.extent_size, 4 << 20);
        let lvs = lvm.lvs("vgletx").await.unwrap();
        assert_eq!(lvs.len(), 3);
        let lv = lvm.lv("vgletx", "csi-pvc-1").await.unwrap().unwrap();
        assert_eq!(lv.size, 20 << 20);
        assert_eq!(lvm.lv("vgletx", "nope").await.unwrap(), None);
        assert_eq!(runner.calls().len(), 4);
        assert!(
            runner
                .call_lines()
                .iter()
                .all(|l| *l == format!("lvm fullreport {FIELDS} vgletx"))
        );
    }

    #[tokio::test]
    async fn missing_vg_is_vg_not_found() {
        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                "  Volume group \"nosuchvg\" not found\n  Cannot process volume group nosuchvg\n",
            )
        });
        assert!(
            matches!(lvm.vg("nosuchvg").await, Err(LvmError::VgNotFound(v)) if v == "nosuchvg")
        );
        assert!(matches!(
            lvm.lvs("nosuchvg").await,
            Err(LvmError::VgNotFound(_))
        ));
        assert!(matches!(
            lvm.lv("nosuchvg", "x").await,
            Err(LvmError::VgNotFound(_))
        ));

        // A report that succeeds without the VG (it vanished between lookups).
        let (_, lvm) = fake(|_| Reply::ok("{\"report\": []}"));
        assert!(matches!(lvm.vg("vg0").await, Err(LvmError::VgNotFound(v)) if v == "vg0"));
        assert!(matches!(lvm.lvs("vg0").await, Err(LvmError::VgNotFound(_))));
    }

    #[tokio::test]
    async fn bad_json_is_a_parse_error() {
        let (_, lvm) = fake(|_| Reply::ok("{\"report\": [{\"vg\": [{\"vg_size\": \"x\"}]}]}"));
        assert!(matches!(lvm.report(None).await, Err(LvmError::Parse(_))));
    }

    #[tokio::test]
    async fn untrusted_names_never_reach_an_argv() {
        let (runner, lvm) = fake(reports);
        for (vg, lv) in [
            ("vg0", "../x"),
            ("vg0", "a b"),
            ("vg/0", "lv"),
            ("vg0", ""),
            ("", "lv"),
            ("vg0", "-rf"),
            ("vg0", "x;reboot"),
            ("vg0", "snapshot0"),
            ("vg0", "lv_tmeta"),
        ] {
            assert!(
                matches!(lvm.lv(vg, lv).await, Err(LvmError::InvalidArgument(_))),
                "{vg}/{lv}"
            );
            assert!(matches!(
                lvm.remove_lv(vg, lv).await,
                Err(LvmError::InvalidArgument(_))
            ));
            assert!(matches!(
                lvm.extend_lv(vg, lv, 1, &[]).await,
                Err(LvmError::InvalidArgument(_))
            ));
            assert!(matches!(
                lvm.activate_lv(vg, lv, Activation::Local).await,
                Err(LvmError::InvalidArgument(_))
            ));
            assert!(matches!(
                lvm.deactivate_lv(vg, lv).await,
                Err(LvmError::InvalidArgument(_))
            ));
            assert!(matches!(
                lvm.refresh_lv(vg, lv).await,
                Err(LvmError::InvalidArgument(_))
            ));
            assert!(matches!(
                lvm.add_lv_tags(vg, lv, &["a".into()]).await,
                Err(LvmError::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            lvm.report(Some("a b")).await,
            Err(LvmError::InvalidArgument(_))
        ));
        assert!(matches!(
            lvm.add_lv_tags("vg0", "lv0", &["a b".into()]).await,
            Err(LvmError::InvalidArgument(_))
        ));
        assert!(matches!(
            lvm.del_lv_tags("vg0", "lv0", &["".into()]).await,
            Err(LvmError::InvalidArgument(_))
        ));
        assert!(runner.calls().is_empty(), "{:?}", runner.call_lines());
    }

    fn create_req(activate: bool) -> LvCreate {
        LvCreate {
            vg: "vgletx".into(),
            name: "csi-pvc-2".into(),
            size: 10 << 20,
            tags: crate::tags::VolumeTags {
                owner: "lvm.vglet.io".into(),
                name: "pvc 2".into(),
                size: 10 << 20,
                fs: "xfs".into(),
            }
            .to_tags(),
            activate,
            pvs: vec![],
        }
    }

    #[tokio::test]
    async fn create_active_lv() {
        let (runner, lvm) = fake(reports);
        lvm.create_lv(&create_req(true)).await.unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm lvcreate -y --wipesignatures y -Z y -n csi-pvc-2 -L 10485760b \
                 --addtag vglet.owner=lvm.vglet.io --addtag vglet.name=pvc&202 \
                 --addtag vglet.size=10485760 --addtag vglet.fs=xfs vgletx"
            ]
        );
    }

    #[tokio::test]
    async fn create_inactive_lv_in_scope() {
        let (runner, lvm) = fake(reports);
        lvm.set_device_scope(vec!["/dev/loop0".into()]);
        lvm.create_lv(&create_req(false)).await.unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm version",
                "lvm lvcreate --devices /dev/loop0 -y --wipesignatures y -Z n -an \
                 --setautoactivation n -n csi-pvc-2 -L 10485760b \
                 --addtag vglet.owner=lvm.vglet.io --addtag vglet.name=pvc&202 \
                 --addtag vglet.size=10485760 --addtag vglet.fs=xfs vgletx"
            ]
        );
    }

    #[tokio::test]
    async fn create_refuses_bad_requests_without_running_lvm() {
        let (runner, lvm) = fake(reports);
        let mut r = create_req(true);
        r.size = 0;
        assert!(matches!(
            lvm.create_lv(&r).await,
            Err(LvmError::InvalidArgument(_))
        ));
        let mut r = create_req(true);
        r.tags.push("has space".into());
        assert!(matches!(
            lvm.create_lv(&r).await,
            Err(LvmError::InvalidArgument(_))
        ));
        let mut r = create_req(true);
        r.name = "x_rimage".into();
        assert!(matches!(
            lvm.create_lv(&r).await,
            Err(LvmError::InvalidArgument(_))
        ));
        let mut r = create_req(true);
        r.name = "a-".repeat(60);
        assert!(matches!(
            lvm.create_lv(&r).await,
            Err(LvmError::InvalidArgument(_))
        ));
        assert!(runner.calls().is_empty());
    }

    #[tokio::test]
    async fn create_failures_are_typed() {
        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                lvm_warn("Logical Volume \"csi-pvc-2\" already exists in volume group \"vgletx\""),
            )
        });
        assert!(matches!(
            lvm.create_lv(&create_req(true)).await,
            Err(LvmError::AlreadyExists(n)) if n == "vgletx/csi-pvc-2"
        ));
        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                lvm_warn(
                    "Volume group \"vgletx\" has insufficient free space (43 extents): 256 required.",
                ),
            )
        });
        assert!(matches!(
            lvm.create_lv(&create_req(true)).await,
            Err(LvmError::InsufficientSpace {
                needed: Some(256),
                free: Some(43),
                ..
            })
        ));
        let (_, lvm) = fake(|_| Reply::Timeout);
        assert!(matches!(
            lvm.create_lv(&create_req(true)).await,
            Err(LvmError::Timeout(_))
        ));
    }

    #[tokio::test]
    async fn remove_missing_lv_is_lv_not_found() {
        let (runner, lvm) =
            fake(|_| Reply::fail(5, lvm_warn("Failed to find logical volume \"vgletx/nope\"")));
        let e = lvm.remove_lv("vgletx", "nope").await.unwrap_err();
        assert!(
            matches!(&e, LvmError::LvNotFound(n) if n == "vgletx/nope"),
            "{e:?}"
        );
        assert_eq!(runner.call_lines(), vec!["lvm lvremove -y vgletx/nope"]);
    }

    #[tokio::test]
    async fn extend_is_idempotent() {
        let (runner, lvm) = fake(reports);
        lvm.extend_lv("vgletx", "csi-pvc-1", 24 << 20, &[])
            .await
            .unwrap();
        assert_eq!(
            runner.call_lines(),
            vec!["lvm lvextend -L 25165824b vgletx/csi-pvc-1"]
        );

        for msg in [
            "New size (5 extents) matches existing size (5 extents).",
            "New size given (1 extents) not larger than existing size (5 extents)",
        ] {
            let (_, lvm) = fake(move |_| Reply::fail(5, lvm_warn(msg)));
            lvm.extend_lv("vgletx", "csi-pvc-1", 4 << 20, &[])
                .await
                .unwrap();
        }

        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                lvm_warn("Insufficient free space: 252 extents needed, but only 42 available"),
            )
        });
        assert!(matches!(
            lvm.extend_lv("vgletx", "csi-pvc-1", 1 << 30, &[]).await,
            Err(LvmError::InsufficientSpace { vg, needed: Some(252), free: Some(42), .. }) if vg == "vgletx"
        ));
        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                lvm_warn("Logical volume nope not found in volume group vgletx."),
            )
        });
        assert!(matches!(
            lvm.extend_lv("vgletx", "nope", 1 << 30, &[]).await,
            Err(LvmError::LvNotFound(n)) if n == "vgletx/nope"
        ));
    }

    #[tokio::test]
    async fn activation_argvs() {
        let (runner, lvm) = fake(reports);
        lvm.activate_lv("vg0", "lv0", Activation::Local)
            .await
            .unwrap();
        lvm.activate_lv("vg0", "lv0", Activation::Exclusive)
            .await
            .unwrap();
        lvm.activate_lv("vg0", "lv0", Activation::Shared)
            .await
            .unwrap();
        lvm.deactivate_lv("vg0", "lv0").await.unwrap();
        lvm.refresh_lv("vg0", "lv0").await.unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm lvchange -ay vg0/lv0",
                "lvm lvchange -aey vg0/lv0",
                "lvm lvchange -asy vg0/lv0",
                "lvm lvchange -an vg0/lv0",
                "lvm lvchange --refresh vg0/lv0",
            ]
        );
    }

    #[tokio::test]
    async fn activation_held_elsewhere_is_locked() {
        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                "  LV locked by other host: vg0/lv0\n  Failed to lock logical volume vg0/lv0.\n",
            )
        });
        assert!(matches!(
            lvm.activate_lv("vg0", "lv0", Activation::Exclusive).await,
            Err(LvmError::Locked(_))
        ));
        let (_, lvm) = fake(|_| {
            Reply::fail(
                5,
                "  Global lock failed: check that global lockspace is started\n",
            )
        });
        assert!(matches!(
            lvm.activate_lv("vg0", "lv0", Activation::Shared).await,
            Err(LvmError::LockManager(_))
        ));
    }

    #[tokio::test]
    async fn tag_argvs() {
        let (runner, lvm) = fake(reports);
        let tags = vec!["vglet.size=1".to_string(), "vglet.fs=ext4".to_string()];
        lvm.add_lv_tags("vg0", "lv0", &tags).await.unwrap();
        lvm.del_lv_tags("vg0", "lv0", &tags).await.unwrap();
        lvm.add_lv_tags("vg0", "lv0", &[]).await.unwrap();
        lvm.del_lv_tags("vg0", "lv0", &[]).await.unwrap();
        assert_eq!(
            runner.call_lines(),
            vec![
                "lvm lvchange --addtag vglet.size=1 --addtag vglet.fs=ext4 vg0/lv0",
                "lvm lvchange --deltag vglet.size=1 --deltag vglet.fs=ext4 vg0/lv0",
            ]
        );
    }
}
