//! Committed JSON schemas (docs/schemas/) kept equal to what the types produce: a test
//! generates each schema and calls [`check`], which fails on any difference, or rewrites the
//! file when `VGLET_UPDATE_SCHEMAS=1` is set.

use std::path::Path;

/// Compares the committed file at `path` with `generated` (pretty JSON). `Err` says what
/// differs and how to update it.
pub fn check(path: &Path, generated: &str) -> Result<(), String> {
    let generated = format!("{}\n", generated.trim_end());
    if std::env::var_os("VGLET_UPDATE_SCHEMAS").is_some_and(|v| v == "1") {
        std::fs::write(path, &generated).map_err(|e| format!("writing {}: {e}", path.display()))?;
        return Ok(());
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed == generated {
        return Ok(());
    }
    let line = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
    Err(format!(
        "{} differs from what the types produce (first at line {}); if the change is meant, \
         rewrite it with VGLET_UPDATE_SCHEMAS=1 cargo test, and commit it",
        path.display(),
        line + 1
    ))
}

/// For a crate's schema test: [`check`] of `docs/schemas/<file>` in the workspace whose crate
/// sits at `manifest_dir` (two levels down: `bins/x`, `shared/x`); panics with the message.
pub fn assert_committed(manifest_dir: &str, file: &str, generated: &str) {
    let path = Path::new(manifest_dir)
        .join("../../docs/schemas")
        .join(file);
    if let Err(e) = check(&path, generated) {
        panic!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_fails_and_equality_passes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.schema.json");
        std::fs::write(&p, "{\n  \"a\": 1\n}\n").unwrap();
        assert!(check(&p, "{\n  \"a\": 1\n}").is_ok());
        let e = check(&p, "{\n  \"a\": 2\n}").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("VGLET_UPDATE_SCHEMAS=1"),
            "{e}"
        );
        assert!(check(&dir.path().join("missing.json"), "{}").is_err());
    }
}
