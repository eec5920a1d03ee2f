//! Runs the real `csictl` binary against an in-process fake Identity service on a unix socket.

use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use vglet_csi_proto::v1::{self, identity_server};

/// How the fake answers Probe.
#[derive(Clone, Copy)]
enum ProbeAnswer {
    Ready,
    NotReady,
    Fail(tonic::Code),
    Hang,
}

struct FakeIdentity {
    probe: ProbeAnswer,
}

#[tonic::async_trait]
impl identity_server::Identity for FakeIdentity {
    async fn get_plugin_info(
        &self,
        _: Request<v1::GetPluginInfoRequest>,
    ) -> Result<Response<v1::GetPluginInfoResponse>, Status> {
        Ok(Response::new(v1::GetPluginInfoResponse {
            name: "fake.csi.vglet.io".into(),
            vendor_version: "9.9.9".into(),
            manifest: [("url".to_string(), "https://example.invalid".to_string())].into(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<v1::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<v1::GetPluginCapabilitiesResponse>, Status> {
        use v1::plugin_capability::{Service, Type, service};
        let cap = |t: service::Type| v1::PluginCapability {
            r#type: Some(Type::Service(Service { r#type: t as i32 })),
        };
        Ok(Response::new(v1::GetPluginCapabilitiesResponse {
            capabilities: vec![
                cap(service::Type::ControllerService),
                cap(service::Type::VolumeAccessibilityConstraints),
            ],
        }))
    }

    async fn probe(
        &self,
        _: Request<v1::ProbeRequest>,
    ) -> Result<Response<v1::ProbeResponse>, Status> {
        match self.probe {
            ProbeAnswer::Ready => Ok(Response::new(v1::ProbeResponse { ready: None })),
            // prost maps google.protobuf.BoolValue to Option<bool>.
            ProbeAnswer::NotReady => Ok(Response::new(v1::ProbeResponse { ready: Some(false) })),
            ProbeAnswer::Fail(code) => Err(Status::new(code, "volume group vg0 is not there yet")),
            ProbeAnswer::Hang => {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                Err(Status::internal("woke up"))
            }
        }
    }
}

/// Serves the fake on `<dir>/csi.sock` until the test's runtime ends.
async fn serve(dir: &Path, probe: ProbeAnswer) -> PathBuf {
    let sock = dir.join("csi.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(identity_server::IdentityServer::new(FakeIdentity { probe }))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    sock
}

async fn csictl(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_csictl"))
        .args(args)
        .env_remove("CSI_ENDPOINT")
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_info_json() {
    let dir = tempfile::tempdir().unwrap();
    let sock = serve(dir.path(), ProbeAnswer::Ready).await;
    let endpoint = format!("unix://{}", sock.display());

    let out = csictl(&["identity", "info", "--json", "--endpoint", &endpoint]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["name"], "fake.csi.vglet.io");
    assert_eq!(v["vendor_version"], "9.9.9");
    assert_eq!(v["manifest"]["url"], "https://example.invalid");
    assert_eq!(
        v["capabilities"],
        serde_json::json!([
            "service:CONTROLLER_SERVICE",
            "service:VOLUME_ACCESSIBILITY_CONSTRAINTS"
        ])
    );

    // Text mode, bare path, global flag before the subcommand.
    let out = csictl(&["--endpoint", sock.to_str().unwrap(), "identity", "info"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).contains("fake.csi.vglet.io"),
        "{}",
        stdout(&out)
    );

    let out = csictl(&["identity", "probe", "-e", &endpoint]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "ready\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_failed_precondition_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let sock = serve(
        dir.path(),
        ProbeAnswer::Fail(tonic::Code::FailedPrecondition),
    )
    .await;
    let endpoint = format!("unix://{}", sock.display());

    let out = csictl(&["identity", "probe", "--endpoint", &endpoint]).await;
    assert_eq!(out.status.code(), Some(19), "stderr: {}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: FAILED_PRECONDITION: volume group vg0 is not there yet\n"
    );
    assert!(stdout(&out).is_empty());

    let out = csictl(&["identity", "probe", "--json", "--endpoint", &endpoint]).await;
    assert_eq!(out.status.code(), Some(19));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"error": {"code": "FAILED_PRECONDITION", "message": "volume group vg0 is not there yet"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_not_ready_and_unreachable_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let sock = serve(dir.path(), ProbeAnswer::NotReady).await;

    let out = csictl(&[
        "identity",
        "probe",
        "--json",
        "--endpoint",
        sock.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(4), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "{\"ready\":false}\n");

    // Nothing listens here.
    let missing = dir.path().join("nobody.sock");
    let out = csictl(&[
        "identity",
        "info",
        "--timeout",
        "5s",
        "--endpoint",
        missing.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: cannot connect to unix://"),
        "{}",
        stderr(&out)
    );

    // The fake has no Controller service: the plugin's UNIMPLEMENTED comes through as 22.
    let out = csictl(&["controller", "caps", "--endpoint", sock.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(22), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: UNIMPLEMENTED"),
        "{}",
        stderr(&out)
    );

    // Bad input is rejected before connecting.
    let out = csictl(&[
        "controller",
        "create",
        "x",
        "--size",
        "2G",
        "--limit",
        "1G",
        "-e",
        "/nonexistent",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let out = csictl(&["controller", "create", "x", "--size", "lots"]).await;
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_deadline_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let sock = serve(dir.path(), ProbeAnswer::Hang).await;

    let started = std::time::Instant::now();
    let out = csictl(&[
        "identity",
        "probe",
        "--timeout",
        "300ms",
        "--endpoint",
        sock.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(14), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: DEADLINE_EXCEEDED: "),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
