//! Endpoint parsing and the gRPC channel.

use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Where the plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    /// `host:port`, plain-text HTTP/2.
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix://{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Accepts `unix:///abs/path`, `unix:/abs/path`, `unix:relative/path`, a bare path, and
/// `tcp://host:port` (what CSI sidecars and gocsi's `csc` accept).
pub fn parse_endpoint(s: &str) -> Result<Target, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("the endpoint is empty".into());
    }
    if let Some(rest) = s.strip_prefix("unix://") {
        // `unix:///run/x.sock` has an empty authority; `unix://run/x.sock` is a common typo for
        // a relative path and is taken as such.
        return non_empty_path(rest, s);
    }
    if let Some(rest) = s.strip_prefix("unix:") {
        return non_empty_path(rest, s);
    }
    if let Some(rest) = s.strip_prefix("tcp://") {
        if rest.is_empty() || !rest.contains(':') {
            return Err(format!("{s:?}: expected tcp://host:port"));
        }
        return Ok(Target::Tcp(rest.to_string()));
    }
    if s.contains("://") {
        return Err(format!(
            "{s:?}: unsupported scheme; use unix:///path, a path, or tcp://host:port"
        ));
    }
    Ok(Target::Unix(PathBuf::from(s)))
}

fn non_empty_path(path: &str, whole: &str) -> Result<Target, String> {
    if path.is_empty() {
        Err(format!("{whole:?}: no socket path"))
    } else {
        Ok(Target::Unix(PathBuf::from(path)))
    }
}

/// Opens a channel; `timeout` bounds the connection attempt.
pub async fn connect(
    target: &Target,
    timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    match target {
        Target::Tcp(addr) => {
            Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(timeout)
                .connect()
                .await
        }
        Target::Unix(path) => vglet_csi_proto::connect_unix(path, timeout).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let unix = |p: &str| Ok(Target::Unix(PathBuf::from(p)));
        assert_eq!(
            parse_endpoint("unix:///run/vglet/csi.sock"),
            unix("/run/vglet/csi.sock")
        );
        assert_eq!(parse_endpoint("unix:/run/csi.sock"), unix("/run/csi.sock"));
        assert_eq!(parse_endpoint("unix://csi.sock"), unix("csi.sock"));
        assert_eq!(
            parse_endpoint("/var/lib/kubelet/plugins/x/csi.sock"),
            unix("/var/lib/kubelet/plugins/x/csi.sock")
        );
        assert_eq!(parse_endpoint("./csi.sock"), unix("./csi.sock"));
        assert_eq!(
            parse_endpoint("tcp://127.0.0.1:10000"),
            Ok(Target::Tcp("127.0.0.1:10000".into()))
        );
        assert!(parse_endpoint("").is_err());
        assert!(parse_endpoint("unix://").is_err());
        assert!(parse_endpoint("tcp://localhost").is_err());
        assert!(parse_endpoint("http://localhost:1").is_err());
        assert_eq!(
            parse_endpoint("unix:///a.sock").unwrap().to_string(),
            "unix:///a.sock"
        );
    }

    #[tokio::test]
    async fn connecting_to_a_missing_socket_fails() {
        let dir = std::env::temp_dir().join("csictl-no-such-dir/csi.sock");
        let err = connect(&Target::Unix(dir), Duration::from_secs(1)).await;
        assert!(err.is_err());
    }
}
