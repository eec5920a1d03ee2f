//! A tower layer around the gRPC server: per RPC one span (`rpc{method=...}`, the parent of
//! the handler's own span, which carries the volume id), one log line (method, code, ms)
//! and the RPC metrics.
//!
//! It sees only the HTTP/2 envelope (path and status headers), never a request or response
//! body, so no secret, volume context or publish context can reach a log line from here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::metrics::Metrics;

/// Label for paths that are not a CSI method: a client must not be able to mint an
/// unbounded number of metric series.
pub const UNKNOWN_METHOD: &str = "unknown";

#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: Arc<Metrics>,
}

impl RpcLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RpcLayer { metrics }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// `/csi.v1.Controller/CreateVolume` to `CreateVolume`; anything else to
/// [`UNKNOWN_METHOD`].
pub fn method_name(path: &str) -> &str {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return UNKNOWN_METHOD;
    };
    let plausible = service.starts_with("csi.v1.")
        && !method.is_empty()
        && method.len() <= 64
        && method.chars().all(|c| c.is_ascii_alphanumeric());
    if plausible { method } else { UNKNOWN_METHOD }
}

/// The CSI spec's names of gRPC codes (`OK`, `INVALID_ARGUMENT`, ...), as used in metrics.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A unary handler that fails answers "trailers-only": the status is in the response
/// headers. A success carries `grpc-status: 0` in the trailers, after the body, which a
/// layer does not wait for; no status header therefore means OK.
fn response_code(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from)
        .unwrap_or(tonic::Code::Ok)
}

/// Calls polled every few seconds by kubelet and sidecars: logged at debug when they
/// succeed, so that the log shows the calls that change something.
fn is_routine(method: &str) -> bool {
    matches!(
        method,
        "Probe"
            | "GetPluginInfo"
            | "GetPluginCapabilities"
            | "ControllerGetCapabilities"
            | "NodeGetCapabilities"
            | "NodeGetInfo"
            | "NodeGetVolumeStats"
            | "GetCapacity"
            | "ListVolumes"
            | "ControllerGetVolume"
    )
}

/// Codes that say the driver or the host is in trouble, not the request.
fn is_server_fault(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Internal | Unavailable | DataLoss
    )
}

/// Records one RPC exactly once: when its response headers are out, or, if the client gave
/// up first and the future was dropped, as CANCELLED.
struct Finish {
    metrics: Arc<Metrics>,
    method: String,
    start: Instant,
    span: tracing::Span,
    done: bool,
}

impl Finish {
    fn record(&mut self, code: tonic::Code) {
        self.done = true;
        let elapsed = self.start.elapsed();
        self.metrics
            .observe_rpc(&self.method, code_name(code), elapsed);
        let _e = self.span.enter();
        log_rpc(&self.method, code, elapsed);
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.done {
            self.record(tonic::Code::Cancelled);
        }
    }
}

fn log_rpc(method: &str, code: tonic::Code, elapsed: Duration) {
    let ms = elapsed.as_millis() as u64;
    let name = code_name(code);
    if code == tonic::Code::Ok && is_routine(method) {
        tracing::debug!(method, code = name, ms, "rpc");
    } else if is_server_fault(code) {
        tracing::warn!(method, code = name, ms, "rpc");
    } else {
        tracing::info!(method, code = name, ms, "rpc");
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let method = method_name(req.uri().path()).to_string();
        let span = tracing::info_span!("rpc", method = %method);
        let mut finish = Finish {
            metrics: self.metrics.clone(),
            method,
            start: Instant::now(),
            span: span.clone(),
            done: false,
        };
        let fut = {
            let _e = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                let result = fut.await;
                let code = match &result {
                    Ok(resp) => response_code(resp.headers()),
                    Err(_) => tonic::Code::Unknown,
                };
                finish.record(code);
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_bounded() {
        assert_eq!(
            method_name("/csi.v1.Controller/CreateVolume"),
            "CreateVolume"
        );
        assert_eq!(method_name("/csi.v1.Identity/Probe"), "Probe");
        for bad in [
            "",
            "/",
            "/x/CreateVolume",
            "/csi.v1.Node/",
            "/csi.v1.Node/a/b",
            "/csi.v1.Node/evil\"label",
            &format!("/csi.v1.Node/{}", "a".repeat(100)),
        ] {
            assert_eq!(method_name(bad), UNKNOWN_METHOD, "{bad:?}");
        }
    }

    #[test]
    fn codes_from_headers() {
        let names: std::collections::HashSet<&str> =
            (0..=16).map(|i| code_name(tonic::Code::from(i))).collect();
        assert_eq!(names.len(), 17);
        let mut h = http::HeaderMap::new();
        assert_eq!(response_code(&h), tonic::Code::Ok);
        h.insert("grpc-status", "8".parse().unwrap());
        assert_eq!(response_code(&h), tonic::Code::ResourceExhausted);
    }

    /// Secrets travel in request bodies; the only way they could reach a log is a handler or
    /// a library logging a request. Drive real RPCs carrying secrets through the real server
    /// with every log level on and look for the secret in everything that was logged.
    #[tokio::test]
    async fn secrets_never_reach_the_log() {
        use std::collections::HashMap;
        use std::io::Write;
        use std::sync::Mutex;
        use vglet_csi_proto::v1::controller_client::ControllerClient;
        use vglet_csi_proto::v1::node_client::NodeClient;
        use vglet_csi_proto::v1::volume_capability::{AccessMode, AccessType, MountVolume};
        use vglet_csi_proto::v1::*;
        use vglet_runner::{FakeRunner, Reply};

        const SECRET: &str = "TOPSECRET-0c7a1f";

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // tracing caches each callsite's interest process-wide. With one dispatcher
        // registered, a callsite is judged by the default of the thread that first hits it,
        // and a parallel test's thread (no subscriber) caches the rpc line as never enabled.
        // A second, always-interested dispatcher alive for the test makes every
        // registration ask all dispatchers; the rebuild repairs callsites cached before.
        let _anchor = tracing::Dispatch::new(tracing_subscriber::registry());
        tracing::callsite::rebuild_interest_cache();

        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("csi.sock");
        let config = crate::test_config(dir.path(), &[]);
        // A VG with one extent free: CreateVolume fails before any lvcreate.
        let runner = FakeRunner::with(|c| match c.arg_strings().first().map(String::as_str) {
            Some("version") => Reply::ok("  LVM version:     2.03.16(2) (2022-05-18)\n"),
            Some("fullreport") => Reply::ok(
                r#"{"report":[{"vg":[{"vg_name":"vg0","vg_size":"1073741824","vg_free":"4194304","vg_extent_size":"4194304"}],"pv":[],"lv":[]}]}"#,
            ),
            _ => Reply::fail(5, "unexpected"),
        });
        let driver = Arc::new(
            crate::build_driver_with(config, Arc::new(runner))
                .await
                .unwrap(),
        );
        let metrics = Arc::new(Metrics::new());
        let listener = crate::service::server::bind(&sock).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::service::server::serve_with_metrics(
            driver,
            metrics.clone(),
            listener,
            sock.clone(),
            async {
                let _ = stopped.await;
            },
        ));

        let path = sock.clone();
        let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap();
        let secrets = HashMap::from([
            ("password".to_string(), SECRET.to_string()),
            (SECRET.to_string(), SECRET.to_string()),
        ]);
        let cap = VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode {
                mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
        };
        let mut ctl = ControllerClient::new(channel.clone());
        let e = ctl
            .create_volume(CreateVolumeRequest {
                name: "pvc-1".into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 64 << 20,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![cap.clone()],
                secrets: secrets.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
        ctl.delete_volume(DeleteVolumeRequest {
            volume_id: "vg0/csi-pvc-1".into(),
            secrets: secrets.clone(),
        })
        .await
        .unwrap();
        // Refused for size: the error names the field, not what is in it.
        let mut oversized = secrets.clone();
        oversized.insert("blob".into(), SECRET.repeat(300));
        let e = ctl
            .delete_volume(DeleteVolumeRequest {
                volume_id: "vg0/csi-pvc-1".into(),
                secrets: oversized,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with("secrets: "), "{e:?}");
        assert!(!e.message().contains(SECRET), "{e:?}");
        let mut node = NodeClient::new(channel);
        let e = node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: "vg0/csi-pvc-1".into(),
                staging_target_path: dir.path().join("staging").display().to_string(),
                volume_capability: Some(cap),
                secrets: secrets.clone(),
                publish_context: HashMap::from([("k".to_string(), SECRET.to_string())]),
                volume_context: HashMap::from([("k".to_string(), SECRET.to_string())]),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();

        let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!log.contains(SECRET), "a secret was logged:\n{log}");
        // The log is not simply empty: each RPC left its line, inside its span.
        for (method, code) in [
            ("CreateVolume", "RESOURCE_EXHAUSTED"),
            ("DeleteVolume", "OK"),
            ("DeleteVolume", "INVALID_ARGUMENT"),
            ("NodeStageVolume", "NOT_FOUND"),
        ] {
            assert!(
                log.lines()
                    .any(|l| l.contains(&format!("rpc{{method={method}}}"))
                        && l.contains(&format!("code=\"{code}\""))),
                "no rpc line for {method} {code}:\n{log}"
            );
        }
        let text = metrics.encode();
        assert!(
            text.contains(
                "vglet_rpc_requests_total{method=\"CreateVolume\",code=\"RESOURCE_EXHAUSTED\"} 1"
            ),
            "{text}"
        );
    }
}
