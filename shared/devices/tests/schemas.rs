//! The committed JSON schemas of the inventory and PMEM namespace documents are what the
//! types produce (VGLET_UPDATE_SCHEMAS=1 rewrites them).

use vglet_devices::inventory::{Inventory, PmemNamespaces};

fn check(file: &str, schema: schemars::Schema) {
    let json = serde_json::to_string_pretty(&schema).unwrap();
    vglet_common::schema_file::assert_committed(env!("CARGO_MANIFEST_DIR"), file, &json);
}

#[test]
fn inventory_schema_is_committed() {
    check("inventory.schema.json", schemars::schema_for!(Inventory));
}

#[test]
fn pmem_namespaces_schema_is_committed() {
    check(
        "pmem-namespaces.schema.json",
        schemars::schema_for!(PmemNamespaces),
    );
}
