//! CSI v1.12 protocol: prost messages and tonic client/server stubs.
//!
//! Everything lives in [`v1`] (proto package `csi.v1`):
//! - messages, e.g. [`v1::CreateVolumeRequest`], nested types in snake_case modules such as
//!   [`v1::volume_capability::AccessMode`];
//! - clients: [`v1::identity_client::IdentityClient`], [`v1::controller_client::ControllerClient`],
//!   [`v1::node_client::NodeClient`], [`v1::group_controller_client::GroupControllerClient`],
//!   [`v1::snapshot_metadata_client::SnapshotMetadataClient`];
//! - servers: the traits [`v1::identity_server::Identity`], [`v1::controller_server::Controller`],
//!   [`v1::node_server::Node`], ... wrapped by [`v1::identity_server::IdentityServer`] and friends.
//!
//! Well-known types (`BoolValue`, `Int64Value`, `Timestamp`) are [`prost_types`], re-exported here.

pub use prost_types;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("csi.v1");
}

/// A gRPC channel to a CSI endpoint on a unix socket, the transport kubelet and the
/// sidecars use; `timeout` bounds the connection attempt.
pub async fn connect_unix(
    path: &std::path::Path,
    timeout: std::time::Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    // The URI is required by the API but unused: the connector below ignores it.
    tonic::transport::Endpoint::try_from("http://[::]:50051")?
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

/// Encoded `FileDescriptorSet` of `csi.proto` and its imports, e.g. for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/csi_descriptor.bin"));

#[cfg(test)]
mod tests {
    use super::v1::*;
    use prost::Message;
    use std::collections::HashMap;

    fn kv(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn mode(m: volume_capability::access_mode::Mode) -> Option<volume_capability::AccessMode> {
        Some(volume_capability::AccessMode { mode: m as i32 })
    }

    #[test]
    fn capacity_range_wire_bytes() {
        let cr = CapacityRange {
            required_bytes: 1,
            limit_bytes: 2,
        };
        // field 1 varint (0x08) = 1, field 2 varint (0x10) = 2
        assert_eq!(cr.encode_to_vec(), [0x08, 0x01, 0x10, 0x02]);
        // 1 GiB = 2^30 as a varint: 80 80 80 80 04
        let cr = CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        };
        assert_eq!(cr.encode_to_vec(), [0x08, 0x80, 0x80, 0x80, 0x80, 0x04]);
    }

    #[test]
    fn create_volume_request_round_trip() {
        use volume_capability::access_mode::Mode;
        let req = CreateVolumeRequest {
            name: "pvc-1234".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 2 << 30,
            }),
            volume_capabilities: vec![
                VolumeCapability {
                    access_type: Some(volume_capability::AccessType::Mount(
                        volume_capability::MountVolume {
                            fs_type: "xfs".into(),
                            mount_flags: vec!["noatime".into()],
                            volume_mount_group: String::new(),
                        },
                    )),
                    access_mode: mode(Mode::SingleNodeWriter),
                },
                VolumeCapability {
                    access_type: Some(volume_capability::AccessType::Block(
                        volume_capability::BlockVolume {},
                    )),
                    access_mode: mode(Mode::SingleNodeMultiWriter),
                },
            ],
            parameters: kv(&[("vg", "vg0"), ("type", "linear")]),
            secrets: kv(&[("password", "hunter2")]),
            accessibility_requirements: Some(TopologyRequirement {
                requisite: vec![Topology {
                    segments: kv(&[("node", "n1")]),
                }],
                preferred: vec![],
            }),
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        let back = CreateVolumeRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, req);
        assert_eq!(
            back.volume_capabilities[1].access_mode.unwrap().mode(),
            Mode::SingleNodeMultiWriter
        );
        assert_eq!(back.secrets["password"], "hunter2");
    }

    #[test]
    fn field_numbers_on_the_wire() {
        // tag byte = field_number << 3 | wire_type (0 varint, 2 length-delimited)
        let stage = NodeStageVolumeRequest {
            volume_capability: Some(VolumeCapability::default()),
            ..Default::default()
        };
        assert_eq!(stage.encode_to_vec(), [4 << 3 | 2, 0]);
        let stage = NodeStageVolumeRequest {
            staging_target_path: "s".into(),
            ..Default::default()
        };
        assert_eq!(stage.encode_to_vec(), [3 << 3 | 2, 1, b's']);

        let publish = NodePublishVolumeRequest {
            target_path: "t".into(),
            volume_capability: Some(VolumeCapability::default()),
            readonly: true,
            ..Default::default()
        };
        assert_eq!(
            publish.encode_to_vec(),
            [4 << 3 | 2, 1, b't', 5 << 3 | 2, 0, 6 << 3, 1]
        );

        let cap = VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(Default::default())),
            access_mode: mode(volume_capability::access_mode::Mode::MultiNodeMultiWriter),
        };
        assert_eq!(
            cap.encode_to_vec(),
            [2 << 3 | 2, 0, 3 << 3 | 2, 2, 1 << 3, 5]
        );

        let create = CreateVolumeRequest {
            mutable_parameters: kv(&[("k", "v")]),
            ..Default::default()
        };
        assert_eq!(
            create.encode_to_vec(),
            [8 << 3 | 2, 6, 0x0a, 1, b'k', 0x12, 1, b'v']
        );

        let expand = NodeExpandVolumeRequest {
            secrets: kv(&[("k", "v")]),
            ..Default::default()
        };
        assert_eq!(expand.encode_to_vec()[0], 6 << 3 | 2);

        let rpc = ControllerServiceCapability {
            r#type: Some(controller_service_capability::Type::Rpc(
                controller_service_capability::Rpc {
                    r#type: controller_service_capability::rpc::Type::GetSnapshot as i32,
                },
            )),
        };
        assert_eq!(rpc.encode_to_vec(), [1 << 3 | 2, 2, 1 << 3, 15]);

        let stats = NodeGetVolumeStatsResponse {
            volume_condition: Some(VolumeCondition {
                abnormal: true,
                message: String::new(),
            }),
            ..Default::default()
        };
        assert_eq!(stats.encode_to_vec(), [2 << 3 | 2, 2, 1 << 3, 1]);

        let info = NodeGetInfoResponse {
            max_volumes_per_node: 3,
            ..Default::default()
        };
        assert_eq!(info.encode_to_vec(), [2 << 3, 3]);
    }

    #[test]
    fn enum_values() {
        use controller_service_capability::rpc::Type as C;
        use node_service_capability::rpc::Type as N;
        use plugin_capability::service::Type as P;
        use volume_capability::access_mode::Mode;
        assert_eq!(Mode::SingleNodeSingleWriter as i32, 6);
        assert_eq!(Mode::SingleNodeMultiWriter as i32, 7);
        assert_eq!(C::ModifyVolume as i32, 14);
        assert_eq!(N::VolumeMountGroup as i32, 6);
        assert_eq!(P::SnapshotMetadataService as i32, 4);
        assert_eq!(BlockMetadataType::VariableLength as i32, 2);
        assert_eq!(
            Mode::MultiNodeMultiWriter.as_str_name(),
            "MULTI_NODE_MULTI_WRITER"
        );
    }

    #[test]
    fn descriptor_has_all_services() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let csi = fds.file.iter().find(|f| f.package() == "csi.v1").unwrap();
        let services: Vec<(&str, usize)> = csi
            .service
            .iter()
            .map(|s| (s.name(), s.method.len()))
            .collect();
        assert_eq!(
            services,
            [
                ("Identity", 3),
                ("Controller", 15),
                ("GroupController", 4),
                ("SnapshotMetadata", 2),
                ("Node", 8)
            ]
        );
        // SnapshotMetadata streams its answers.
        let sm = csi
            .service
            .iter()
            .find(|s| s.name() == "SnapshotMetadata")
            .unwrap();
        assert!(
            sm.method
                .iter()
                .all(|m| m.server_streaming() && !m.client_streaming())
        );
    }
}
