//! The layer map of `src/lib.rs` (and docs/architecture.md), checked: no module imports
//! from a layer above its own. Reads the sources; test modules are left out, since a test
//! may drive a lower layer through the services.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer (a directory or a top-level file of `src/`) and the layers it may import.
const MAY_IMPORT: &[(&str, &[&str])] = &[
    ("rules", &[]),
    ("config", &[]),
    ("inflight", &[]),
    ("host_needs", &["config"]),
    ("status", &["rules"]),
    ("node_state", &["rules"]),
    (
        "driver",
        &["config", "inflight", "node_state", "rules", "status"],
    ),
    ("metrics", &["driver", "rules", "config"]),
    (
        "ops",
        &[
            "driver",
            "node_state",
            "rules",
            "status",
            "config",
            "inflight",
        ],
    ),
    (
        "provision",
        &[
            "driver",
            "node_state",
            "ops",
            "rules",
            "status",
            "config",
            "inflight",
        ],
    ),
    (
        "service",
        &[
            "driver",
            "node_state",
            "ops",
            "provision",
            "rules",
            "status",
            "config",
            "inflight",
            "host_needs",
            "metrics",
        ],
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::<layer>` paths the non-test, non-comment code of `text` names.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap();
    let mut found = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            assert!(
                !rest.starts_with('{'),
                "one path per import, so this check can read it: {line}"
            );
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules: BTreeMap<&str, &[&str]> = MAY_IMPORT.iter().copied().collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let layer = match rel.components().count() {
            1 => rel.file_stem().unwrap().to_str().unwrap().to_string(),
            _ => rel.iter().next().unwrap().to_str().unwrap().to_string(),
        };
        if matches!(layer.as_str(), "lib" | "main") || rel.ends_with("tests.rs") {
            continue;
        }
        let Some(allowed) = rules.get(layer.as_str()) else {
            wrong.push(format!(
                "{}: layer {layer} is not in the map",
                rel.display()
            ));
            continue;
        };
        checked += 1;
        for used in imports(&std::fs::read_to_string(f).unwrap()) {
            // `crate::Config` and the like: lib.rs's own items.
            let is_lib_item = used.starts_with(|c: char| c.is_ascii_uppercase());
            if used != layer && !is_lib_item && !allowed.contains(&used.as_str()) {
                wrong.push(format!("{}: imports crate::{used}", rel.display()));
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} files checked: the walk is wrong"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layer map:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_an_import() {
    let text = "use crate::service::node::X;\n// use crate::ops::y;\n#[cfg(test)]\nuse crate::provision::z;\n";
    assert_eq!(imports(text), BTreeSet::from(["service".to_string()]));
}
