//! Failures and the exit codes scripts assert on (documented in `csictl --help`).

use tonic::Code;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Client-side failure: bad input that clap could not catch, I/O, output.
pub const EXIT_CLIENT: u8 = 1;
/// The endpoint could not be reached.
pub const EXIT_CONNECT: u8 = 3;
/// `identity probe`: the plugin answered ready=false.
pub const EXIT_NOT_READY: u8 = 4;
/// `controller validate`: the plugin did not confirm the capabilities.
pub const EXIT_NOT_CONFIRMED: u8 = 5;
/// A gRPC status `N` exits with `GRPC_EXIT_BASE + N`.
pub const GRPC_EXIT_BASE: u8 = 10;

#[derive(Debug)]
pub enum Failure {
    /// Input rejected before anything was sent.
    Usage(String),
    /// No connection to the plugin.
    Connect { endpoint: String, message: String },
    /// The plugin (or the transport under an RPC) answered with a non-OK status.
    Rpc(tonic::Status),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_CLIENT,
            Failure::Connect { .. } => EXIT_CONNECT,
            Failure::Rpc(status) => grpc_exit_code(status.code()),
        }
    }

    /// The `code` of the JSON error object: the gRPC code name, or a csictl-specific name.
    pub fn code_name(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "CLIENT_ERROR",
            Failure::Connect { .. } => "CONNECT_FAILED",
            Failure::Rpc(status) => grpc_code_name(status.code()),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Usage(m) => m.clone(),
            Failure::Connect { endpoint, message } => {
                format!("cannot connect to {endpoint}: {message}")
            }
            Failure::Rpc(status) => status.message().to_string(),
        }
    }

    /// The line printed to stderr in text mode.
    pub fn text(&self) -> String {
        match self {
            Failure::Rpc(_) => format!("error: {}: {}", self.code_name(), self.message()),
            _ => format!("error: {}", self.message()),
        }
    }

    /// The object printed to stdout in JSON mode.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code_name(), "message": self.message() } })
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Failure::Rpc(status)
    }
}

pub fn grpc_exit_code(code: Code) -> u8 {
    GRPC_EXIT_BASE + code as u8
}

/// The canonical upper-case name of a gRPC code, as the CSI spec writes it.
pub fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `err` and its sources, `: `-joined (tonic's transport error alone says only "transport error").
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_distinct_exit_codes() {
        assert_eq!(grpc_exit_code(Code::Cancelled), 11);
        assert_eq!(grpc_exit_code(Code::InvalidArgument), 13);
        assert_eq!(grpc_exit_code(Code::DeadlineExceeded), 14);
        assert_eq!(grpc_exit_code(Code::NotFound), 15);
        assert_eq!(grpc_exit_code(Code::AlreadyExists), 16);
        assert_eq!(grpc_exit_code(Code::ResourceExhausted), 18);
        assert_eq!(grpc_exit_code(Code::FailedPrecondition), 19);
        assert_eq!(grpc_exit_code(Code::Aborted), 20);
        assert_eq!(grpc_exit_code(Code::OutOfRange), 21);
        assert_eq!(grpc_exit_code(Code::Unimplemented), 22);
        assert_eq!(grpc_exit_code(Code::Unavailable), 24);
        assert_eq!(grpc_exit_code(Code::Unauthenticated), 26);
        let mut seen: Vec<u8> = (1..=16)
            .map(|n| grpc_exit_code(Code::from_i32(n)))
            .collect();
        seen.extend([
            EXIT_OK,
            EXIT_CLIENT,
            2,
            EXIT_CONNECT,
            EXIT_NOT_READY,
            EXIT_NOT_CONFIRMED,
        ]);
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n, "exit codes collide");
    }

    #[test]
    fn failure_rendering() {
        let f = Failure::from(tonic::Status::not_found("volume vg0/x does not exist"));
        assert_eq!(f.exit_code(), 15);
        assert_eq!(f.text(), "error: NOT_FOUND: volume vg0/x does not exist");
        assert_eq!(
            f.json(),
            serde_json::json!({"error": {"code": "NOT_FOUND", "message": "volume vg0/x does not exist"}})
        );
        let c = Failure::Connect {
            endpoint: "unix:///x".into(),
            message: "No such file".into(),
        };
        assert_eq!(c.exit_code(), EXIT_CONNECT);
        assert_eq!(c.text(), "error: cannot connect to unix:///x: No such file");
        assert_eq!(c.json()["error"]["code"], "CONNECT_FAILED");
        assert_eq!(Failure::Usage("x".into()).exit_code(), EXIT_CLIENT);
    }
}
