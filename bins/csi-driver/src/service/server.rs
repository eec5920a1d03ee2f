//! The gRPC server on a unix socket.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use thiserror::Error;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tower::ServiceExt;
use vglet_csi_proto::v1::controller_server::ControllerServer;
use vglet_csi_proto::v1::identity_server::IdentityServer;
use vglet_csi_proto::v1::node_server::NodeServer;

use crate::config::Mode;
use crate::driver::Driver;
use crate::metrics::Metrics;
use crate::service::controller::ControllerService;
use crate::service::identity::IdentityService;
use crate::service::node::NodeService;
use crate::service::rpc_layer::RpcLayer;
use crate::service::startup::StartupHandle;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("endpoint: {0}")]
    Endpoint(String),
    #[error("socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("another process is already serving on {0}")]
    InUse(PathBuf),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds the socket with mode 0660. A stale socket (left by a crash) is replaced, but only
/// if nothing answers on it and it really is a socket.
pub fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    let sock_err = |source| ServeError::Socket {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(sock_err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::InUse(path.to_path_buf()));
            }
            tracing::info!(socket = %path.display(), "replacing stale socket");
            std::fs::remove_file(path).map_err(sock_err)?;
        }
        Ok(_) => return Err(ServeError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(sock_err(e)),
    }
    // The umask makes the socket 0660 from its first instant; chmod afterwards only
    // confirms it (a window with a wider mode would let any local user talk to us).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(sock_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(sock_err)?;
    Ok(listener)
}

/// Serves until `shutdown` resolves, then removes the socket.
pub async fn serve(
    driver: Arc<Driver>,
    listener: UnixListener,
    path: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with_metrics(driver, Arc::new(Metrics::new()), listener, path, shutdown).await
}

/// [`serve`], recording every RPC (span, log line, metrics) into `metrics`.
pub async fn serve_with_metrics(
    driver: Arc<Driver>,
    metrics: Arc<Metrics>,
    listener: UnixListener,
    path: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (name, mode) = (driver.cfg.driver_name.clone(), driver.cfg.mode);
    let startup = StartupHandle::started(driver);
    serve_starting(name, mode, startup, metrics, listener, path, shutdown).await
}

/// Serves while the driver may still be starting: Identity at once, Controller and Node
/// once `startup` completes.
///
/// Calls to Controller and Node before that wait for start-up rather than fail with
/// UNAVAILABLE. The sidecars (provisioner, attacher, resizer, snapshotter) Probe until
/// ready before they send anything else, so they never wait here; kubelet, however, calls
/// NodeGetInfo as soon as node-driver-registrar, which asks only GetPluginInfo, announces
/// the socket, and a failed NodeGetInfo fails the plugin's registration (the registrar
/// exits and is restarted). Waiting costs such a caller the rest of start-up, bounded by
/// `--command-timeout` per lvm command and by the caller's own deadline; and a failed
/// start-up ends the process, so no call waits on a driver that will never be ready.
pub async fn serve_starting(
    driver_name: String,
    mode: Mode,
    startup: StartupHandle,
    metrics: Arc<Metrics>,
    listener: UnixListener,
    path: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let identity = IdentityServer::new(IdentityService {
        driver_name,
        mode,
        startup: startup.clone(),
    });
    let controller = mode.controller().then(|| AfterStartup {
        startup: startup.clone(),
        make: |driver| ControllerServer::new(ControllerService { driver }),
    });
    let node = mode.node().then(|| AfterStartup {
        startup: startup.clone(),
        make: |driver| NodeServer::new(NodeService { driver }),
    });
    tracing::info!(socket = %path.display(), mode = mode.as_str(), "serving CSI");
    // Every connection's request headers pass the authority fix (see crate::service::authority).
    let incoming = tokio_stream::StreamExt::map(UnixListenerStream::new(listener), |conn| {
        conn.map(crate::service::authority::AnyAuthority::new)
    });
    let result = tonic::transport::Server::builder()
        .layer(RpcLayer::new(metrics))
        .add_service(identity)
        .add_optional_service(controller)
        .add_optional_service(node)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(&path);
    result.map_err(ServeError::from)
}

/// A gRPC service that exists only once start-up is complete: each call waits for the
/// driver, then goes to the service made from it.
#[derive(Debug)]
struct AfterStartup<S> {
    startup: StartupHandle,
    make: fn(Arc<Driver>) -> S,
}

impl<S> Clone for AfterStartup<S> {
    fn clone(&self) -> Self {
        AfterStartup {
            startup: self.startup.clone(),
            make: self.make,
        }
    }
}

impl<S: NamedService> NamedService for AfterStartup<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for AfterStartup<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let startup = self.startup.clone();
        let make = self.make;
        Box::pin(async move {
            match startup.wait().await {
                Ok(driver) => make(driver).oneshot(req).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn socket_is_0660_and_stale_socket_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csi.sock");
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        // While someone listens, a second bind must refuse.
        assert!(matches!(bind(&path), Err(ServeError::InUse(_))));
        drop(l);
        // Now the file is a stale socket: replaced.
        assert!(bind(&path).is_ok());
    }

    #[test]
    fn refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csi.sock");
        std::fs::write(&path, b"data").unwrap();
        assert!(matches!(bind(&path), Err(ServeError::NotASocket(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
