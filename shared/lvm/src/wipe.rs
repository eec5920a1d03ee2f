//! Signatures on block devices, through `wipefs` (libblkid underneath, like `blkid -p`, but
//! listing every signature with its offset instead of the first one only). vg-init uses it
//! to refuse devices that hold anything and, with `--wipe`, to say exactly what it destroys.

use serde_json::Value;
use vglet_runner::{Program, Programs, Runner};

use crate::errors::LvmError;

/// One signature `wipefs` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// e.g. `ext4`, `LVM2_member`, `gpt`, `PMBR`.
    pub kind: String,
    /// Byte offset as wipefs prints it, e.g. `0x438`.
    pub offset: String,
    pub uuid: Option<String>,
    pub label: Option<String>,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at offset {}", self.kind, self.offset)?;
        if let Some(u) = &self.uuid {
            write!(f, " (UUID {u})")?;
        }
        if let Some(l) = &self.label {
            write!(f, " (label {l:?})")?;
        }
        Ok(())
    }
}

/// `wipefs --no-act --json DEV`.
pub fn list_argv(device: &str) -> Vec<String> {
    vec!["--no-act".into(), "--json".into(), device.to_string()]
}

/// `wipefs --all DEV`: erases every signature's magic bytes (not the data behind them).
pub fn wipe_argv(device: &str) -> Vec<String> {
    vec!["--all".into(), device.to_string()]
}

/// Parses `wipefs --json` (util-linux 2.38): `{"signatures": [{"device", "offset", "type",
/// "uuid", "label"}]}`. Empty output also means none (older wipefs print nothing then).
pub fn parse_signatures(stdout: &str) -> Result<Vec<Signature>, String> {
    if stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(stdout).map_err(|e| format!("wipefs JSON: {e}"))?;
    let list = v
        .get("signatures")
        .and_then(Value::as_array)
        .ok_or("wipefs JSON has no \"signatures\" array")?;
    let text = |s: &Value, k: &str| {
        s.get(k)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    list.iter()
        .map(|s| {
            Ok(Signature {
                kind: text(s, "type").ok_or("wipefs signature without a type")?,
                offset: text(s, "offset").unwrap_or_default(),
                uuid: text(s, "uuid"),
                label: text(s, "label"),
            })
        })
        .collect()
}

/// Every signature on `device`; empty for a blank device. `programs` is the binary's
/// resolved set ([`crate::Lvm::programs`]), wipefs among them.
pub async fn signatures(
    runner: &dyn Runner,
    programs: &Programs,
    device: &str,
) -> Result<Vec<Signature>, LvmError> {
    let cmd = programs.command(Program::Wipefs)?.args(list_argv(device));
    let out = runner.run(cmd).await.map_err(LvmError::Command)?;
    parse_signatures(&out.stdout_lossy()).map_err(LvmError::Parse)
}

pub async fn wipe_all(
    runner: &dyn Runner,
    programs: &Programs,
    device: &str,
) -> Result<(), LvmError> {
    let cmd = programs.command(Program::Wipefs)?.args(wipe_argv(device));
    runner.run(cmd).await.map_err(LvmError::Command)?;
    tracing::info!(%device, "signatures wiped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vglet_runner::{FakeRunner, Reply};

    /// Verbatim from wipefs 2.38 in the test guest, after mkfs.ext4.
    const EXT4: &str = "{\n   \"signatures\": [\n      {\n         \"device\": \"vdb\",\n         \"offset\": \"0x438\",\n         \"type\": \"ext4\",\n         \"uuid\": \"0a85fdad-17f4-4b52-8189-d94dbf61eb99\",\n         \"label\": null\n      }\n   ]\n}\n";
    const BLANK: &str = "{\n   \"signatures\": [\n\n   ]\n}\n";

    #[test]
    fn parses_real_output() {
        let s = parse_signatures(EXT4).unwrap();
        assert_eq!(
            s,
            vec![Signature {
                kind: "ext4".into(),
                offset: "0x438".into(),
                uuid: Some("0a85fdad-17f4-4b52-8189-d94dbf61eb99".into()),
                label: None,
            }]
        );
        assert_eq!(
            s[0].to_string(),
            "ext4 at offset 0x438 (UUID 0a85fdad-17f4-4b52-8189-d94dbf61eb99)"
        );
        assert!(parse_signatures(BLANK).unwrap().is_empty());
        assert!(parse_signatures("").unwrap().is_empty());
        assert!(parse_signatures("{}").is_err());
        assert!(parse_signatures("{\"signatures\": [{\"offset\": \"0x0\"}]}").is_err());
    }

    #[tokio::test]
    async fn runs_wipefs() {
        let f = FakeRunner::with(|c| {
            if c.arg_strings().contains(&"--no-act".to_string()) {
                Reply::ok(EXT4)
            } else {
                Reply::ok("")
            }
        });
        let programs = Programs::all_in("/usr/sbin");
        assert_eq!(
            signatures(&f, &programs, "/dev/vdb").await.unwrap().len(),
            1
        );
        wipe_all(&f, &programs, "/dev/vdb").await.unwrap();
        assert_eq!(
            f.call_lines(),
            vec!["wipefs --no-act --json /dev/vdb", "wipefs --all /dev/vdb"]
        );
        assert_eq!(f.calls()[0].program, "/usr/sbin/wipefs");
        let f = FakeRunner::with(|_| {
            Reply::fail(
                1,
                "wipefs: error: /dev/nope: probing initialization failed: No such file or directory",
            )
        });
        assert!(matches!(
            signatures(&f, &programs, "/dev/nope").await,
            Err(LvmError::Command(_))
        ));
        // Without wipefs nothing runs and the error names it.
        let none = FakeRunner::new();
        let e = wipe_all(&none, &Programs::default(), "/dev/vdb")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("wipefs is not available"), "{e}");
        assert!(none.calls().is_empty());
    }
}
