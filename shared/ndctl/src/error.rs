use vglet_runner::RunError;

/// What went wrong talking to ndctl, classified from its stderr so callers can give the
/// operator a message that says what to do rather than ndctl's errno text.
#[derive(Debug, thiserror::Error)]
pub enum NdctlError {
    #[error("ndctl is not installed or cannot be started ({0}); install the ndctl package")]
    NotInstalled(String),

    /// The region has no label index: it holds one namespace spanning all of it.
    #[error(
        "{region} has no namespace labels (label-less): it cannot be divided into namespaces; \
         write label index blocks first (pmem-ns-init --init-labels, destroys the label-less \
         namespace): {message}"
    )]
    LabelLess { region: String, message: String },

    #[error("{region} has no room for a namespace of {size} bytes: {message}")]
    NoSpace {
        region: String,
        size: u64,
        message: String,
    },

    /// fsdax needs the namespace's physical start aligned to 16 MiB; platform firmware (or
    /// a hypervisor placing NVDIMMs back to back) decides where a region starts.
    #[error(
        "{region}: the kernel cannot map an fsdax namespace there because its physical start \
         is not aligned to 16 MiB (a platform memory-map problem, not a size problem); \
         use sector mode for this region or fix the NVDIMM placement: {message}"
    )]
    Misaligned { region: String, message: String },

    /// The size is not a multiple of the region's alignment: a bug in the caller's rounding.
    #[error("{region}: size {size} is not a multiple of the region alignment: {message}")]
    SizeMisaligned {
        region: String,
        size: u64,
        message: String,
    },

    #[error("ndctl timed out: {0}")]
    Timeout(String),

    #[error("{0}")]
    Command(#[source] RunError),

    #[error("cannot read ndctl's output: {0}")]
    Parse(String),
}

impl NdctlError {
    /// Classifies a failed `create-namespace` on `region` of `size` bytes.
    pub fn from_create(err: RunError, region: &str, size: u64) -> NdctlError {
        let stderr = err.stderr();
        let message = first_error_line(stderr);
        let region = region.to_string();
        if stderr.contains("label-less") || stderr.contains("Legacy") {
            NdctlError::LabelLess { region, message }
        } else if stderr.contains("misaligned to") {
            NdctlError::Misaligned { region, message }
        } else if stderr.contains("align setting is") && stderr.contains("is misaligned") {
            NdctlError::SizeMisaligned {
                region,
                size,
                message,
            }
        } else if stderr.contains("No space left") || stderr.contains("exceeds available") {
            NdctlError::NoSpace {
                region,
                size,
                message,
            }
        } else {
            NdctlError::from_run(err)
        }
    }

    /// Any other failed command.
    pub fn from_run(err: RunError) -> NdctlError {
        match err {
            RunError::Spawn { program, source } => {
                NdctlError::NotInstalled(format!("{program}: {source}"))
            }
            RunError::Timeout { .. } => NdctlError::Timeout(err.to_string()),
            other => NdctlError::Command(other),
        }
    }
}

/// ndctl prints "  Error: <why>" lines before the generic "failed to ...: <errno>" line;
/// the first one says the most.
fn first_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        // Harmless noise on machines without a TPM or firmware blob.
        .filter(|l| !l.contains("TPM handle") && !l.contains("nvdimm-master"))
        .collect();
    lines
        .iter()
        .find(|l| l.starts_with("Error:"))
        .or(lines.last())
        .map(|l| l.trim_start_matches("Error:").trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(stderr_fixture: &str) -> RunError {
        let path = format!(
            "{}/tests/fixtures/{stderr_fixture}",
            env!("CARGO_MANIFEST_DIR")
        );
        RunError::Failed {
            argv: "ndctl create-namespace".into(),
            code: Some(237),
            stdout: String::new(),
            stderr: std::fs::read_to_string(path).unwrap(),
        }
    }

    #[test]
    fn classifies_real_ndctl_errors() {
        let e = NdctlError::from_create(failed("err-labelless.txt"), "region0", 1 << 28);
        match &e {
            NdctlError::LabelLess { region, message } => {
                assert_eq!(region, "region0");
                assert_eq!(
                    message,
                    "Legacy / label-less namespaces do not support sub-dividing a region"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("--init-labels"));
        assert!(matches!(
            NdctlError::from_create(failed("err-misaligned.txt"), "region1", 1 << 28),
            NdctlError::Misaligned { .. }
        ));
        assert!(matches!(
            NdctlError::from_create(failed("err-size-misaligned.txt"), "region1", 1 << 20),
            NdctlError::SizeMisaligned { size: 1048576, .. }
        ));
        let e = NdctlError::from_create(failed("err-nospace.txt"), "region0", 64 << 20);
        match e {
            NdctlError::NoSpace { message, .. } => {
                assert_eq!(
                    message,
                    "failed to create namespace: No space left on device"
                )
            }
            other => panic!("{other:?}"),
        }
        let other = RunError::Failed {
            argv: "ndctl x".into(),
            code: Some(1),
            stdout: String::new(),
            stderr: "something else".into(),
        };
        assert!(matches!(
            NdctlError::from_create(other, "region0", 1),
            NdctlError::Command(_)
        ));
        let spawn = RunError::Spawn {
            program: "ndctl".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(matches!(
            NdctlError::from_run(spawn),
            NdctlError::NotInstalled(_)
        ));
    }
}
