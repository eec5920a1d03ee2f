//! One function per subcommand: build the request, call the RPC, turn the answer into a
//! [`Report`].

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tonic::transport::Channel;
use vglet_csi_proto::v1::{
    self, controller_client::ControllerClient, identity_client::IdentityClient,
    node_client::NodeClient, volume_capability,
};

use crate::cli::{
    AccessMode, CapabilityArgs, Command, ControllerCommand, CreateArgs, IdentityCommand,
    NodeCommand,
};
use crate::error::{EXIT_NOT_CONFIRMED, EXIT_NOT_READY, Failure};
use crate::output::{self, Report};

/// Upper bound on pages followed by `controller list --all`, against a plugin that never stops
/// handing out tokens.
const MAX_PAGES: usize = 100_000;

/// The connection and the per-RPC deadline.
pub struct Ctx {
    pub channel: Channel,
    pub timeout: Duration,
}

impl Ctx {
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        // Tells the plugin the deadline (grpc-timeout header); `call` enforces it locally too.
        r.set_timeout(self.timeout);
        r
    }

    /// Runs one RPC with the deadline and unwraps the response.
    async fn call<T, F>(&self, rpc: F) -> Result<T, Failure>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = tokio::time::Instant::now();
        let deadline_exceeded = || {
            Failure::Rpc(tonic::Status::deadline_exceeded(format!(
                "no answer within {:?} (see --timeout)",
                self.timeout
            )))
        };
        match tokio::time::timeout(self.timeout, rpc).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            // A tonic server enforces the grpc-timeout header by answering CANCELLED; scripts
            // should see the same code whichever side noticed the deadline first.
            Ok(Err(status))
                if status.code() == tonic::Code::Cancelled && start.elapsed() >= self.timeout =>
            {
                Err(deadline_exceeded())
            }
            Ok(Err(status)) => Err(Failure::Rpc(status)),
            Err(_) => Err(deadline_exceeded()),
        }
    }

    fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel.clone())
    }

    fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel.clone())
    }

    fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }
}

/// Checks a command's input before connecting, so a typo never needs a live plugin.
pub fn validate(cmd: &Command) -> Result<(), Failure> {
    let maps: Vec<(&[(String, String)], &str)> = match cmd {
        Command::Controller(ControllerCommand::Create(c)) => {
            vec![(&c.params, "--param"), (&c.secrets.secrets, "--secret")]
        }
        Command::Controller(ControllerCommand::Capacity { params, .. }) => {
            vec![(params, "--param")]
        }
        Command::Controller(ControllerCommand::Validate {
            volume_context,
            params,
            secrets,
            ..
        }) => vec![
            (volume_context, "--volume-context"),
            (params, "--param"),
            (&secrets.secrets, "--secret"),
        ],
        Command::Node(NodeCommand::Stage {
            contexts, secrets, ..
        })
        | Command::Node(NodeCommand::Publish {
            contexts, secrets, ..
        }) => vec![
            (&contexts.publish_context, "--publish-context"),
            (&contexts.volume_context, "--volume-context"),
            (&secrets.secrets, "--secret"),
        ],
        _ => vec![],
    };
    for (pairs, flag) in maps {
        to_map(pairs, flag)?;
    }
    if let Command::Controller(ControllerCommand::Create(c)) = cmd {
        for t in c.requisite_topology.iter().chain(&c.preferred_topology) {
            topology(t, "--requisite-topology/--preferred-topology")?;
        }
        capacity_range(c.size, c.limit)?;
    }
    if let Command::Controller(ControllerCommand::Expand { size, limit, .. })
    | Command::Node(NodeCommand::Expand { size, limit, .. }) = cmd
    {
        capacity_range(*size, *limit)?;
    }
    Ok(())
}

pub async fn execute(cmd: Command, ctx: &Ctx) -> Result<Report, Failure> {
    match cmd {
        Command::Identity(c) => identity(c, ctx).await,
        Command::Controller(c) => controller(c, ctx).await,
        Command::Node(c) => node(c, ctx).await,
    }
}

async fn identity(cmd: IdentityCommand, ctx: &Ctx) -> Result<Report, Failure> {
    let mut client = ctx.identity();
    match cmd {
        IdentityCommand::Info => {
            let info = ctx
                .call(client.get_plugin_info(ctx.request(v1::GetPluginInfoRequest {})))
                .await?;
            let caps = ctx
                .call(
                    client
                        .get_plugin_capabilities(ctx.request(v1::GetPluginCapabilitiesRequest {})),
                )
                .await?;
            Ok(Report::new(&output::PluginInfo::from_proto(info, caps)))
        }
        IdentityCommand::Probe => {
            let resp = ctx
                .call(client.probe(ctx.request(v1::ProbeRequest {})))
                .await?;
            let probe = output::Probe {
                ready: resp.ready.unwrap_or(true),
            };
            let exit = if probe.ready {
                crate::error::EXIT_OK
            } else {
                EXIT_NOT_READY
            };
            Ok(Report::with_exit(&probe, exit))
        }
    }
}

async fn controller(cmd: ControllerCommand, ctx: &Ctx) -> Result<Report, Failure> {
    let mut client = ctx.controller();
    match cmd {
        ControllerCommand::Create(args) => {
            let req = create_request(&args)?;
            let resp = ctx.call(client.create_volume(ctx.request(req))).await?;
            Ok(Report::new(&output::Volume::from_proto(
                resp.volume.unwrap_or_default(),
            )))
        }
        ControllerCommand::Delete { volume_id, secrets } => {
            let req = v1::DeleteVolumeRequest {
                volume_id: volume_id.clone(),
                secrets: to_map(&secrets.secrets, "--secret")?,
            };
            ctx.call(client.delete_volume(ctx.request(req))).await?;
            Ok(Report::new(&output::Done {
                volume_id,
                result: "deleted",
            }))
        }
        ControllerCommand::List {
            max_entries,
            starting_token,
            all,
        } => {
            let mut token = starting_token.unwrap_or_default();
            let mut entries = Vec::new();
            for _ in 0..MAX_PAGES {
                let req = v1::ListVolumesRequest {
                    max_entries,
                    starting_token: token.clone(),
                };
                let resp = ctx.call(client.list_volumes(ctx.request(req))).await?;
                entries.extend(resp.entries.into_iter().map(|e| {
                    let (published, condition) = match e.status {
                        Some(s) => (s.published_node_ids, s.volume_condition),
                        None => (Vec::new(), None),
                    };
                    output::VolumeWithStatus::new(e.volume, published, condition)
                }));
                let repeated = !resp.next_token.is_empty() && resp.next_token == token;
                token = resp.next_token;
                if !all || token.is_empty() {
                    return Ok(Report::new(&output::VolumeList {
                        entries,
                        next_token: token,
                    }));
                }
                if repeated {
                    return Err(Failure::Usage(format!(
                        "the plugin returned next_token {token:?} again; stopping --all"
                    )));
                }
            }
            Err(Failure::Usage(format!(
                "more than {MAX_PAGES} pages; stopping --all"
            )))
        }
        ControllerCommand::Orphans { known_volumes } => {
            let known = read_known_volumes(&known_volumes)?;
            let mut listed = Vec::new();
            let mut token = String::new();
            for _ in 0..MAX_PAGES {
                let req = v1::ListVolumesRequest {
                    max_entries: 0,
                    starting_token: token.clone(),
                };
                let resp = ctx.call(client.list_volumes(ctx.request(req))).await?;
                listed.extend(resp.entries.into_iter().filter_map(|e| e.volume));
                if resp.next_token.is_empty() {
                    return Ok(Report::new(&output::orphans(listed, &known)));
                }
                if resp.next_token == token {
                    return Err(Failure::Usage(format!(
                        "the plugin returned next_token {token:?} again; stopping"
                    )));
                }
                token = resp.next_token;
            }
            Err(Failure::Usage(format!(
                "more than {MAX_PAGES} pages; stopping"
            )))
        }
        ControllerCommand::Capacity {
            params,
            topology: segs,
            capability,
        } => {
            let flat: Vec<(String, String)> = segs.into_iter().flatten().collect();
            let req = v1::GetCapacityRequest {
                volume_capabilities: optional_capability(&capability).into_iter().collect(),
                parameters: to_map(&params, "--param")?,
                accessible_topology: if flat.is_empty() {
                    None
                } else {
                    Some(topology(&flat, "--topology")?)
                },
            };
            let resp = ctx.call(client.get_capacity(ctx.request(req))).await?;
            Ok(Report::new(&output::Capacity {
                available_capacity: resp.available_capacity,
                maximum_volume_size: resp.maximum_volume_size,
                minimum_volume_size: resp.minimum_volume_size,
            }))
        }
        ControllerCommand::Expand {
            volume_id,
            size,
            limit,
            capability,
            secrets,
        } => {
            let req = v1::ControllerExpandVolumeRequest {
                volume_id: volume_id.clone(),
                capacity_range: Some(capacity_range(size, limit)?),
                secrets: to_map(&secrets.secrets, "--secret")?,
                volume_capability: optional_capability(&capability),
            };
            let resp = ctx
                .call(client.controller_expand_volume(ctx.request(req)))
                .await?;
            Ok(Report::new(&output::Expanded {
                volume_id,
                capacity_bytes: resp.capacity_bytes,
                node_expansion_required: Some(resp.node_expansion_required),
            }))
        }
        ControllerCommand::Get { volume_id } => {
            let req = v1::ControllerGetVolumeRequest { volume_id };
            let resp = ctx
                .call(client.controller_get_volume(ctx.request(req)))
                .await?;
            let (published, condition) = match resp.status {
                Some(s) => (s.published_node_ids, s.volume_condition),
                None => (Vec::new(), None),
            };
            Ok(Report::new(&output::VolumeWithStatus::new(
                resp.volume,
                published,
                condition,
            )))
        }
        ControllerCommand::Validate {
            volume_id,
            capability,
            volume_context,
            params,
            secrets,
        } => {
            let req = v1::ValidateVolumeCapabilitiesRequest {
                volume_id: volume_id.clone(),
                volume_context: to_map(&volume_context, "--volume-context")?,
                volume_capabilities: vec![build_capability(&capability)],
                parameters: to_map(&params, "--param")?,
                secrets: to_map(&secrets.secrets, "--secret")?,
                mutable_parameters: HashMap::new(),
            };
            let resp = ctx
                .call(client.validate_volume_capabilities(ctx.request(req)))
                .await?;
            let v = output::Validation {
                volume_id,
                confirmed: resp.confirmed.is_some(),
                message: resp.message,
            };
            let exit = if v.confirmed {
                crate::error::EXIT_OK
            } else {
                EXIT_NOT_CONFIRMED
            };
            Ok(Report::with_exit(&v, exit))
        }
        ControllerCommand::Caps => {
            let resp = ctx
                .call(client.controller_get_capabilities(
                    ctx.request(v1::ControllerGetCapabilitiesRequest {}),
                ))
                .await?;
            Ok(Report::new(&output::Capabilities::controller(resp)))
        }
    }
}

async fn node(cmd: NodeCommand, ctx: &Ctx) -> Result<Report, Failure> {
    let mut client = ctx.node();
    match cmd {
        NodeCommand::Stage {
            volume_id,
            staging_path,
            capability,
            contexts,
            secrets,
        } => {
            let req = v1::NodeStageVolumeRequest {
                volume_id: volume_id.clone(),
                publish_context: to_map(&contexts.publish_context, "--publish-context")?,
                staging_target_path: staging_path,
                volume_capability: Some(build_capability(&capability)),
                secrets: to_map(&secrets.secrets, "--secret")?,
                volume_context: to_map(&contexts.volume_context, "--volume-context")?,
            };
            ctx.call(client.node_stage_volume(ctx.request(req))).await?;
            Ok(Report::new(&output::Done {
                volume_id,
                result: "staged",
            }))
        }
        NodeCommand::Unstage {
            volume_id,
            staging_path,
        } => {
            let req = v1::NodeUnstageVolumeRequest {
                volume_id: volume_id.clone(),
                staging_target_path: staging_path,
            };
            ctx.call(client.node_unstage_volume(ctx.request(req)))
                .await?;
            Ok(Report::new(&output::Done {
                volume_id,
                result: "unstaged",
            }))
        }
        NodeCommand::Publish {
            volume_id,
            staging_path,
            target_path,
            readonly,
            capability,
            contexts,
            secrets,
        } => {
            let req = v1::NodePublishVolumeRequest {
                volume_id: volume_id.clone(),
                publish_context: to_map(&contexts.publish_context, "--publish-context")?,
                staging_target_path: staging_path,
                target_path,
                volume_capability: Some(build_capability(&capability)),
                readonly,
                secrets: to_map(&secrets.secrets, "--secret")?,
                volume_context: to_map(&contexts.volume_context, "--volume-context")?,
            };
            ctx.call(client.node_publish_volume(ctx.request(req)))
                .await?;
            Ok(Report::new(&output::Done {
                volume_id,
                result: "published",
            }))
        }
        NodeCommand::Unpublish {
            volume_id,
            target_path,
        } => {
            let req = v1::NodeUnpublishVolumeRequest {
                volume_id: volume_id.clone(),
                target_path,
            };
            ctx.call(client.node_unpublish_volume(ctx.request(req)))
                .await?;
            Ok(Report::new(&output::Done {
                volume_id,
                result: "unpublished",
            }))
        }
        NodeCommand::Expand {
            volume_id,
            volume_path,
            size,
            limit,
            staging_path,
            capability,
            secrets,
        } => {
            let req = v1::NodeExpandVolumeRequest {
                volume_id: volume_id.clone(),
                volume_path,
                capacity_range: Some(capacity_range(size, limit)?),
                staging_target_path: staging_path.unwrap_or_default(),
                volume_capability: optional_capability(&capability),
                secrets: to_map(&secrets.secrets, "--secret")?,
            };
            let resp = ctx
                .call(client.node_expand_volume(ctx.request(req)))
                .await?;
            Ok(Report::new(&output::Expanded {
                volume_id,
                capacity_bytes: resp.capacity_bytes,
                node_expansion_required: None,
            }))
        }
        NodeCommand::Stats {
            volume_id,
            volume_path,
            staging_path,
        } => {
            let req = v1::NodeGetVolumeStatsRequest {
                volume_id: volume_id.clone(),
                volume_path,
                staging_target_path: staging_path.unwrap_or_default(),
            };
            let resp = ctx
                .call(client.node_get_volume_stats(ctx.request(req)))
                .await?;
            Ok(Report::new(&output::Stats::from_proto(volume_id, resp)))
        }
        NodeCommand::Info => {
            let resp = ctx
                .call(client.node_get_info(ctx.request(v1::NodeGetInfoRequest {})))
                .await?;
            Ok(Report::new(&output::NodeInfo::from_proto(resp)))
        }
        NodeCommand::Caps => {
            let resp = ctx
                .call(client.node_get_capabilities(ctx.request(v1::NodeGetCapabilitiesRequest {})))
                .await?;
            Ok(Report::new(&output::Capabilities::node(resp)))
        }
    }
}

/// The CreateVolume request for `controller create`.
/// The volume ids of `--known-volumes`: one per line, `#` comments and blank lines skipped.
pub fn read_known_volumes(source: &str) -> Result<std::collections::BTreeSet<String>, Failure> {
    use std::io::Read;
    let mut text = String::new();
    let read = if source == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(source).map(|t| text = t)
    };
    read.map_err(|e| Failure::Usage(format!("--known-volumes {source}: {e}")))?;
    Ok(parse_known_volumes(&text))
}

pub fn parse_known_volumes(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

pub fn create_request(args: &CreateArgs) -> Result<v1::CreateVolumeRequest, Failure> {
    use v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
    let topologies =
        |list: &[Vec<(String, String)>], flag: &str| -> Result<Vec<v1::Topology>, Failure> {
            list.iter().map(|t| topology(t, flag)).collect()
        };
    let requisite = topologies(&args.requisite_topology, "--requisite-topology")?;
    let preferred = topologies(&args.preferred_topology, "--preferred-topology")?;
    let source = match (&args.from_snapshot, &args.from_volume) {
        (Some(s), _) => Some(Type::Snapshot(SnapshotSource {
            snapshot_id: s.clone(),
        })),
        (None, Some(v)) => Some(Type::Volume(VolumeSource {
            volume_id: v.clone(),
        })),
        (None, None) => None,
    };
    Ok(v1::CreateVolumeRequest {
        name: args.name.clone(),
        capacity_range: Some(capacity_range(args.size, args.limit)?),
        volume_capabilities: vec![build_capability(&args.capability)],
        parameters: to_map(&args.params, "--param")?,
        secrets: to_map(&args.secrets.secrets, "--secret")?,
        volume_content_source: source.map(|t| v1::VolumeContentSource { r#type: Some(t) }),
        accessibility_requirements: if requisite.is_empty() && preferred.is_empty() {
            None
        } else {
            Some(v1::TopologyRequirement {
                requisite,
                preferred,
            })
        },
        mutable_parameters: HashMap::new(),
    })
}

/// One `VolumeCapability` from the shared flags: block or mount (the default), and an access
/// mode (default SINGLE_NODE_WRITER, what most COs send for ReadWriteOnce).
pub fn build_capability(args: &CapabilityArgs) -> v1::VolumeCapability {
    use volume_capability::{AccessType, BlockVolume, MountVolume};
    let access_type = if args.block {
        AccessType::Block(BlockVolume {})
    } else {
        AccessType::Mount(MountVolume {
            fs_type: args.fs_type.clone().unwrap_or_default(),
            mount_flags: args.mount_flags.clone(),
            volume_mount_group: String::new(),
        })
    };
    let mode = args.mode.unwrap_or(AccessMode::SingleNodeWriter);
    v1::VolumeCapability {
        access_type: Some(access_type),
        access_mode: Some(volume_capability::AccessMode {
            mode: access_mode(mode) as i32,
        }),
    }
}

/// The capability for RPCs where it is optional: sent only when a capability flag was given.
pub fn optional_capability(args: &CapabilityArgs) -> Option<v1::VolumeCapability> {
    args.is_set().then(|| build_capability(args))
}

pub fn access_mode(m: AccessMode) -> volume_capability::access_mode::Mode {
    use volume_capability::access_mode::Mode;
    match m {
        AccessMode::SingleNodeWriter => Mode::SingleNodeWriter,
        AccessMode::SingleNodeReaderOnly => Mode::SingleNodeReaderOnly,
        AccessMode::SingleNodeSingleWriter => Mode::SingleNodeSingleWriter,
        AccessMode::SingleNodeMultiWriter => Mode::SingleNodeMultiWriter,
        AccessMode::MultiNodeReaderOnly => Mode::MultiNodeReaderOnly,
        AccessMode::MultiNodeSingleWriter => Mode::MultiNodeSingleWriter,
        AccessMode::MultiNodeMultiWriter => Mode::MultiNodeMultiWriter,
    }
}

/// `--size`/`--limit` as a CapacityRange; a limit below the size can never be satisfied.
pub fn capacity_range(size: i64, limit: Option<i64>) -> Result<v1::CapacityRange, Failure> {
    let limit = limit.unwrap_or(0);
    if limit != 0 && limit < size {
        return Err(Failure::Usage(format!(
            "--limit ({limit} bytes) is below --size ({size} bytes)"
        )));
    }
    Ok(v1::CapacityRange {
        required_bytes: size,
        limit_bytes: limit,
    })
}

/// `k=v` pairs as a map; a key given twice is a mistake, not "last one wins".
pub fn to_map(pairs: &[(String, String)], flag: &str) -> Result<HashMap<String, String>, Failure> {
    let mut m = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if m.insert(k.clone(), v.clone()).is_some() {
            return Err(Failure::Usage(format!(
                "{flag}: key {k:?} given more than once"
            )));
        }
    }
    Ok(m)
}

fn topology(segments: &[(String, String)], flag: &str) -> Result<v1::Topology, Failure> {
    Ok(v1::Topology {
        segments: to_map(segments, flag)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;
    use volume_capability::access_mode::Mode;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn default_capability_is_a_single_node_writer_mount() {
        let cap = build_capability(&CapabilityArgs::default());
        let Some(volume_capability::AccessType::Mount(m)) = &cap.access_type else {
            panic!("{cap:?}")
        };
        assert_eq!(m.fs_type, "");
        assert!(m.mount_flags.is_empty());
        assert_eq!(cap.access_mode.unwrap().mode(), Mode::SingleNodeWriter);
        assert_eq!(optional_capability(&CapabilityArgs::default()), None);
    }

    #[test]
    fn mount_and_block_capabilities() {
        let args = CapabilityArgs {
            fs_type: Some("xfs".into()),
            mount_flags: vec!["noatime".into(), "nodiscard".into()],
            mode: Some(AccessMode::MultiNodeReaderOnly),
            ..Default::default()
        };
        let cap = build_capability(&args);
        let Some(volume_capability::AccessType::Mount(m)) = &cap.access_type else {
            panic!("{cap:?}")
        };
        assert_eq!(m.fs_type, "xfs");
        assert_eq!(m.mount_flags, ["noatime", "nodiscard"]);
        assert_eq!(cap.access_mode.unwrap().mode(), Mode::MultiNodeReaderOnly);

        let block = CapabilityArgs {
            block: true,
            mode: Some(AccessMode::SingleNodeMultiWriter),
            ..Default::default()
        };
        let cap = optional_capability(&block).unwrap();
        assert!(matches!(
            cap.access_type,
            Some(volume_capability::AccessType::Block(_))
        ));
        assert_eq!(cap.access_mode.unwrap().mode(), Mode::SingleNodeMultiWriter);
    }

    #[test]
    fn every_mode_maps_to_its_csi_name() {
        use clap::ValueEnum;
        for m in AccessMode::value_variants() {
            let flag = m.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(
                access_mode(*m).as_str_name(),
                flag.replace('-', "_").to_uppercase()
            );
        }
    }

    #[test]
    fn create_request_from_flags() {
        let cli = Cli::try_parse_from([
            "csictl",
            "controller",
            "create",
            "pvc-1",
            "--size",
            "1Gi",
            "--limit",
            "2Gi",
            "--param",
            "vg=vg0",
            "--secret",
            "pw=x",
            "--block",
            "--requisite-topology",
            "zone=a,node=n1",
            "--requisite-topology",
            "node=n2",
            "--from-snapshot",
            "snap-1",
        ])
        .unwrap();
        let Command::Controller(ControllerCommand::Create(args)) = cli.command else {
            panic!()
        };
        let req = create_request(&args).unwrap();
        assert_eq!(req.name, "pvc-1");
        assert_eq!(
            req.capacity_range,
            Some(v1::CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 2 << 30
            })
        );
        assert_eq!(req.parameters["vg"], "vg0");
        assert_eq!(req.secrets["pw"], "x");
        assert!(matches!(
            req.volume_capabilities[0].access_type,
            Some(volume_capability::AccessType::Block(_))
        ));
        let topo = req.accessibility_requirements.unwrap();
        assert_eq!(topo.requisite.len(), 2);
        assert_eq!(topo.requisite[0].segments.len(), 2);
        assert_eq!(topo.requisite[1].segments["node"], "n2");
        assert!(topo.preferred.is_empty());
        assert!(matches!(
            req.volume_content_source.unwrap().r#type,
            Some(v1::volume_content_source::Type::Snapshot(s)) if s.snapshot_id == "snap-1"
        ));
    }

    #[test]
    fn known_volume_lists() {
        let k = parse_known_volumes("vg0/a\n\n  vg0/b  \n# comment\nvg0/a\n");
        assert_eq!(k.into_iter().collect::<Vec<_>>(), vec!["vg0/a", "vg0/b"]);
    }

    #[test]
    fn input_checks() {
        assert!(to_map(&[kv("a", "1"), kv("a", "2")], "--param").is_err());
        assert_eq!(
            to_map(&[kv("a", "1"), kv("b", "")], "--param")
                .unwrap()
                .len(),
            2
        );
        assert!(capacity_range(2, Some(1)).is_err());
        assert_eq!(
            capacity_range(2, None).unwrap(),
            v1::CapacityRange {
                required_bytes: 2,
                limit_bytes: 0
            }
        );

        let cli = Cli::try_parse_from([
            "csictl",
            "controller",
            "create",
            "x",
            "--size",
            "2G",
            "--limit",
            "1G",
        ])
        .unwrap();
        assert_eq!(
            validate(&cli.command).unwrap_err().exit_code(),
            crate::error::EXIT_CLIENT
        );
        let cli = Cli::try_parse_from([
            "csictl",
            "node",
            "stage",
            "v",
            "--staging-path",
            "/s",
            "--volume-context",
            "a=1",
            "--volume-context",
            "a=2",
        ])
        .unwrap();
        assert!(validate(&cli.command).is_err());
        let cli = Cli::try_parse_from(["csictl", "controller", "list"]).unwrap();
        assert!(validate(&cli.command).is_ok());
    }
}
