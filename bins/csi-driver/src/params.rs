//! StorageClass parameters accepted by CreateVolume and GetCapacity. Unknown keys are
//! rejected: a typo must never silently give a different volume than the one asked for.

use std::collections::HashMap;

use tonic::Status;

use crate::status::invalid;

pub const VOLUME_GROUP: &str = "volumeGroup";
/// Keys the external-provisioner adds itself (`--extra-create-metadata`) or reserves.
const CO_PREFIX: &str = "csi.storage.k8s.io/";

pub const KNOWN: &[&str] = &[VOLUME_GROUP];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub volume_group: Option<String>,
}

pub fn parse(field: &str, raw: &HashMap<String, String>) -> Result<Params, Status> {
    let mut p = Params::default();
    let mut keys: Vec<&String> = raw.keys().collect();
    keys.sort();
    for key in keys {
        let value = &raw[key];
        match key.as_str() {
            VOLUME_GROUP => {
                vglet_lvm::naming::validate_vg_name(value)
                    .map_err(|e| invalid(&format!("{field}.{VOLUME_GROUP}"), e))?;
                p.volume_group = Some(value.clone());
            }
            k if k.starts_with(CO_PREFIX) => {}
            other => {
                return Err(invalid(
                    field,
                    format!(
                        "unknown parameter {other:?}; valid parameters are: {}",
                        KNOWN.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_known_and_co_keys() {
        let p = parse(
            "parameters",
            &map(&[
                ("volumeGroup", "vg0"),
                ("csi.storage.k8s.io/pvc/name", "data"),
            ]),
        )
        .unwrap();
        assert_eq!(p.volume_group.as_deref(), Some("vg0"));
    }

    #[test]
    fn rejects_typos_listing_valid_keys() {
        let e = parse("parameters", &map(&[("volumegroup", "vg0")])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("volumeGroup"), "{}", e.message());
    }

    #[test]
    fn rejects_bad_vg_name() {
        assert!(parse("parameters", &map(&[("volumeGroup", "../etc")])).is_err());
    }
}
