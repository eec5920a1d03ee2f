//! Size caps on the string maps of CSI requests (secrets, parameters, volume_context,
//! publish_context, mutable_parameters).
//!
//! The CSI spec ("Size Limits") says a `map<string, string>` SHALL NOT exceed 4 KiB, for
//! messages of COs and plugins alike. The driver copies these maps into its state file,
//! its responses and its volume context, so an oversized one is refused up front with
//! INVALID_ARGUMENT naming the field, before anything is looked up or changed. The message
//! gives sizes only, never a key or a value: a secret's key can be as telling as its value.

use std::collections::HashMap;

use vglet_csi_proto::v1::*;

use crate::rules::error::VolumeError;

/// Keys plus values of one map, in bytes (CSI spec, "Size Limits").
pub const MAX_MAP_BYTES: usize = 4096;
/// Entries of one map. The byte cap already bounds it; this one keeps a map of thousands of
/// empty keys, each its own allocation, out as well.
pub const MAX_MAP_ENTRIES: usize = 128;

/// Refuses a map over [`MAX_MAP_ENTRIES`] entries or [`MAX_MAP_BYTES`] bytes.
pub fn check_map(field: &str, map: &HashMap<String, String>) -> Result<(), VolumeError> {
    if map.len() > MAX_MAP_ENTRIES {
        return Err(VolumeError::invalid(
            field,
            format!(
                "{} entries; at most {MAX_MAP_ENTRIES} are accepted",
                map.len()
            ),
        ));
    }
    let bytes: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_MAP_BYTES {
        return Err(VolumeError::invalid(
            field,
            format!("{bytes} bytes of keys and values; the CSI limit for a map is {MAX_MAP_BYTES}"),
        ));
    }
    Ok(())
}

/// A request's string maps, by field name.
pub trait RequestMaps {
    fn maps(&self) -> Vec<(&'static str, &HashMap<String, String>)>;
}

/// Checks every map of `req`, see [`check_map`].
pub fn check(req: &impl RequestMaps) -> Result<(), VolumeError> {
    req.maps()
        .into_iter()
        .try_for_each(|(field, map)| check_map(field, map))
}

// The RPCs the driver does not implement (ControllerPublish/Unpublish, GetSnapshot)
// answer UNIMPLEMENTED whatever they carry, so they are not listed.
macro_rules! request_maps {
    ($($req:ty => [$($field:ident),+];)+) => {$(
        impl RequestMaps for $req {
            fn maps(&self) -> Vec<(&'static str, &HashMap<String, String>)> {
                vec![$((stringify!($field), &self.$field)),+]
            }
        }
    )+};
}

request_maps! {
    CreateVolumeRequest => [parameters, secrets, mutable_parameters];
    DeleteVolumeRequest => [secrets];
    ValidateVolumeCapabilitiesRequest => [volume_context, parameters, secrets, mutable_parameters];
    GetCapacityRequest => [parameters];
    CreateSnapshotRequest => [secrets, parameters];
    DeleteSnapshotRequest => [secrets];
    ListSnapshotsRequest => [secrets];
    ControllerExpandVolumeRequest => [secrets];
    ControllerModifyVolumeRequest => [secrets, mutable_parameters];
    NodeStageVolumeRequest => [publish_context, secrets, volume_context];
    NodePublishVolumeRequest => [publish_context, secrets, volume_context];
    NodeExpandVolumeRequest => [secrets];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::volume_status;

    fn map(n: usize, key_len: usize, val_len: usize) -> HashMap<String, String> {
        (0..n)
            .map(|i| {
                let k = format!("{i:0>key_len$}");
                (k, "v".repeat(val_len))
            })
            .collect()
    }

    #[test]
    fn at_the_limits_is_accepted() {
        assert!(check_map("parameters", &HashMap::new()).is_ok());
        // 128 entries of 16 + 16 bytes = 4096 bytes: exactly both limits.
        assert!(check_map("parameters", &map(128, 16, 16)).is_ok());
        assert!(check_map("secrets", &map(1, 96, 4000)).is_ok());
    }

    #[test]
    fn over_the_limits_is_invalid_argument_naming_the_field() {
        let e = check_map("volume_context", &map(129, 4, 0))
            .map_err(volume_status)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().starts_with("volume_context: 129 entries"),
            "{}",
            e.message()
        );
        let e = check_map("publish_context", &map(1, 97, 4000))
            .map_err(volume_status)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().starts_with("publish_context: 4097 bytes"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn the_message_never_carries_a_key_or_value() {
        let secrets = HashMap::from([("password-KEYSECRET".to_string(), "VALSECRET".repeat(500))]);
        let e = check_map("secrets", &secrets)
            .map_err(volume_status)
            .unwrap_err();
        assert!(!e.message().contains("KEYSECRET"), "{}", e.message());
        assert!(!e.message().contains("VALSECRET"), "{}", e.message());
    }

    #[test]
    fn every_map_of_a_request_is_checked() {
        let big = map(1, 1, 5000);
        let req = |f: &dyn Fn(&mut CreateVolumeRequest)| {
            let mut r = CreateVolumeRequest {
                name: "pvc-1".into(),
                ..Default::default()
            };
            f(&mut r);
            check(&r)
        };
        assert!(req(&|_| {}).is_ok());
        for (field, set) in [
            (
                "parameters",
                &(|r: &mut CreateVolumeRequest| r.parameters = map(1, 1, 5000))
                    as &dyn Fn(&mut CreateVolumeRequest),
            ),
            ("secrets", &|r: &mut CreateVolumeRequest| {
                r.secrets = map(1, 1, 5000)
            }),
            ("mutable_parameters", &|r: &mut CreateVolumeRequest| {
                r.mutable_parameters = map(1, 1, 5000)
            }),
        ] {
            let e = req(set).map_err(volume_status).unwrap_err();
            assert!(e.message().starts_with(field), "{field}: {}", e.message());
        }
        let stage = NodeStageVolumeRequest {
            publish_context: big.clone(),
            ..Default::default()
        };
        assert!(
            check(&stage)
                .map_err(volume_status)
                .unwrap_err()
                .message()
                .starts_with("publish_context")
        );
        let publish = NodePublishVolumeRequest {
            volume_context: big,
            ..Default::default()
        };
        assert!(
            check(&publish)
                .map_err(volume_status)
                .unwrap_err()
                .message()
                .starts_with("volume_context")
        );
    }
}
