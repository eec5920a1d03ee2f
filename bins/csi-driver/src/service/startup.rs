//! The driver's start-up as something the gRPC server can answer about while it runs.
//!
//! Start-up reads LVM (version, one report) and on a controller removes LVs left by an
//! interrupted CreateVolume; under emulation that is most of a second. The socket is served
//! from the first instant instead: Identity answers at once (Probe with `ready: false`
//! until start-up is complete, as the CSI spec's `ready` field foresees), and Controller and
//! Node calls wait for start-up to end (see [`crate::service::server`] for why waiting, not
//! UNAVAILABLE).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;
use tonic::Status;

use crate::driver::Driver;

#[derive(Debug, Clone)]
enum State {
    Starting,
    Ready(Arc<Driver>),
    /// Start-up failed; the process is on its way out with this error.
    Failed(String),
}

/// Held by whoever runs start-up: says once how it ended.
#[derive(Debug)]
pub struct Startup {
    tx: watch::Sender<State>,
}

/// What the RPC handlers see of start-up.
#[derive(Debug, Clone)]
pub struct StartupHandle {
    rx: watch::Receiver<State>,
    waiting: Arc<AtomicUsize>,
}

impl Startup {
    pub fn new() -> (Startup, StartupHandle) {
        let (tx, rx) = watch::channel(State::Starting);
        (
            Startup { tx },
            StartupHandle {
                rx,
                waiting: Arc::default(),
            },
        )
    }

    pub fn ready(self, driver: Arc<Driver>) {
        self.tx.send_replace(State::Ready(driver));
    }

    pub fn failed(self, error: &anyhow::Error) {
        self.tx.send_replace(State::Failed(format!("{error:#}")));
    }
}

impl StartupHandle {
    /// A handle whose start-up is already done: for serving a driver built beforehand.
    pub fn started(driver: Arc<Driver>) -> StartupHandle {
        let (startup, handle) = Startup::new();
        startup.ready(driver);
        handle
    }

    /// The driver, once start-up is complete.
    pub fn driver(&self) -> Option<Arc<Driver>> {
        match &*self.rx.borrow() {
            State::Ready(d) => Some(d.clone()),
            _ => None,
        }
    }

    /// Calls waiting in [`Self::wait`] right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The driver once start-up is complete; UNAVAILABLE if it failed (the process exits).
    pub async fn wait(&self) -> Result<Arc<Driver>, Status> {
        if let Some(d) = self.driver() {
            return Ok(d);
        }
        let _count = WaitCount::enter(&self.waiting);
        tracing::debug!("waiting for start-up to complete");
        let mut rx = self.rx.clone();
        let state = rx
            .wait_for(|s| !matches!(s, State::Starting))
            .await
            .map(|s| s.clone());
        match state {
            Ok(State::Ready(d)) => Ok(d),
            Ok(State::Failed(e)) => Err(Status::unavailable(format!(
                "csi-driver start-up failed, the process is exiting: {e}"
            ))),
            // The sender is gone without a verdict: start-up was abandoned (shutdown).
            Ok(State::Starting) | Err(_) => Err(Status::unavailable(
                "csi-driver is shutting down before its start-up completed",
            )),
        }
    }
}

/// Counts a caller out again even when its RPC is cancelled while it waits.
struct WaitCount<'a>(&'a AtomicUsize);

impl<'a> WaitCount<'a> {
    fn enter(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        WaitCount(n)
    }
}

impl Drop for WaitCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use vglet_csi_proto::v1::controller_client::ControllerClient;
    use vglet_csi_proto::v1::identity_client::IdentityClient;
    use vglet_csi_proto::v1::*;
    use vglet_runner::{FakeRunner, Reply};

    use super::*;
    use crate::metrics::Metrics;

    const REPORT: &str = r#"{"report":[{"vg":[{"vg_name":"vg0","vg_size":"1073741824","vg_free":"4194304","vg_extent_size":"4194304"}],"pv":[],"lv":[]}]}"#;

    fn config(dir: &Path) -> crate::Config {
        crate::test_config(dir, &[])
    }

    fn lvm_answers() -> FakeRunner {
        FakeRunner::with(|c| match c.arg_strings().first().map(String::as_str) {
            Some("version") => Reply::ok("  LVM version:     2.03.16(2) (2022-05-18)\n"),
            Some("fullreport") => Reply::ok(REPORT),
            _ => Reply::fail(5, "unexpected"),
        })
    }

    async fn connect(sock: &Path) -> tonic::transport::Channel {
        vglet_csi_proto::connect_unix(sock, Duration::from_secs(10))
            .await
            .unwrap()
    }

    /// Identity answers while start-up runs (Probe not ready); a Controller call made
    /// meanwhile waits and is answered once start-up completes.
    #[tokio::test]
    async fn identity_first_then_the_rest_after_startup() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let sock = dir.path().join("csi.sock");
        let driver = Arc::new(
            crate::build_driver_with(cfg, Arc::new(lvm_answers()))
                .await
                .unwrap(),
        );
        let (startup, handle) = Startup::new();
        let listener = crate::service::server::bind(&sock).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::service::server::serve_starting(
            "lvm.vglet.io".into(),
            crate::Mode::All,
            handle.clone(),
            Arc::new(Metrics::new()),
            listener,
            sock.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        let ch = connect(&sock).await;
        let mut id = IdentityClient::new(ch.clone());
        let probe = id.probe(ProbeRequest {}).await.unwrap().into_inner();
        assert_eq!(probe.ready, Some(false));
        let info = id
            .get_plugin_info(GetPluginInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, "lvm.vglet.io");
        let caps = id
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(caps.capabilities.len(), 3);

        let mut ctl = ControllerClient::new(ch.clone());
        let early = tokio::spawn(async move {
            ctl.controller_get_capabilities(ControllerGetCapabilitiesRequest {})
                .await
        });
        while handle.waiting() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!early.is_finished(), "answered before start-up completed");
        startup.ready(driver);
        let caps = early.await.unwrap().unwrap().into_inner();
        assert!(!caps.capabilities.is_empty());
        assert_eq!(handle.waiting(), 0);
        let probe = id.probe(ProbeRequest {}).await.unwrap().into_inner();
        assert_eq!(probe.ready, Some(true));
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    /// Calls waiting when start-up fails are told why instead of hanging.
    #[tokio::test]
    async fn waiting_calls_learn_of_a_failed_startup() {
        let (startup, handle) = Startup::new();
        let waiter = {
            let h = handle.clone();
            tokio::spawn(async move { h.wait().await })
        };
        while handle.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        startup.failed(&anyhow::anyhow!("lvm does not answer"));
        let e = waiter.await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(e.message().contains("lvm does not answer"), "{e:?}");
        assert!(handle.driver().is_none());
    }

    /// Probe is not ready, with the reason, on a kernel without device-mapper (this host's
    /// development kernel has none); with it, the same driver is ready. The expectation is
    /// read from the kernel independently of the driver: /sys/class/misc/device-mapper.
    #[tokio::test]
    async fn probe_is_not_ready_without_device_mapper() {
        use vglet_csi_proto::v1::identity_server::Identity;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.no_device_mapper_check = false;
        let driver = Arc::new(
            crate::build_driver_with(cfg, Arc::new(lvm_answers()))
                .await
                .unwrap(),
        );
        let id = crate::service::identity::IdentityService {
            driver_name: "lvm.vglet.io".into(),
            mode: crate::Mode::All,
            startup: StartupHandle::started(driver),
        };
        let probe = id.probe(tonic::Request::new(ProbeRequest {})).await;
        if Path::new("/sys/class/misc/device-mapper").exists() {
            assert_eq!(probe.unwrap().into_inner().ready, Some(true));
        } else {
            let e = probe.expect_err("ready without device-mapper");
            assert_eq!(e.code(), tonic::Code::FailedPrecondition);
            assert!(
                e.message().contains("no device-mapper") && e.message().contains("modprobe dm_mod"),
                "{e:?}"
            );
        }
    }

    /// run_with: the socket answers, Probe becomes ready, a shutdown ends it cleanly and
    /// removes the socket.
    #[tokio::test]
    async fn run_serves_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("csi.sock");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(crate::run_with(
            config(dir.path()),
            Arc::new(lvm_answers()),
            Arc::new(Metrics::new()),
            async {
                let _ = stopped.await;
            },
        ));
        while !sock.exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut id = IdentityClient::new(connect(&sock).await);
        while id.probe(ProbeRequest {}).await.unwrap().into_inner().ready != Some(true) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop.send(());
        run.await.unwrap().unwrap();
        assert!(!sock.exists(), "socket left behind");
    }

    /// A start-up that fails still fails the process, loudly, and leaves no socket.
    #[tokio::test]
    async fn failed_startup_is_an_error_and_leaves_no_socket() {
        let dir = tempfile::tempdir().unwrap();
        let runner = FakeRunner::with(|_| Reply::fail(5, "lvm: not working"));
        let e = crate::run_with(
            config(dir.path()),
            Arc::new(runner),
            Arc::new(Metrics::new()),
            std::future::pending(),
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("lvm does not answer"), "{e:#}");
        assert!(!dir.path().join("csi.sock").exists(), "socket left behind");
    }
}
