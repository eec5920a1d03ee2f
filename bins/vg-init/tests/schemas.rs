//! The committed JSON schemas of vg-init's result and failure documents are what the types
//! produce (VGLET_UPDATE_SCHEMAS=1 rewrites them).

use vg_init::output::{Failure, Result};

fn check(file: &str, schema: schemars::Schema) {
    let json = serde_json::to_string_pretty(&schema).unwrap();
    vglet_common::schema_file::assert_committed(env!("CARGO_MANIFEST_DIR"), file, &json);
}

#[test]
fn result_schema_is_committed() {
    check("vg-init-result.schema.json", schemars::schema_for!(Result));
}

#[test]
fn failure_schema_is_committed() {
    check(
        "vg-init-failure.schema.json",
        schemars::schema_for!(Failure<'static>),
    );
}
