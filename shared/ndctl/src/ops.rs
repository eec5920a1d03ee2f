use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vglet_runner::{Command, Runner};

use crate::NdctlError;
use crate::args::{self, CreateNamespace};
use crate::json::{Namespace, Region, parse_namespace, parse_regions};

/// Creating a namespace writes labels and, for fsdax, initialises the page map (seconds per
/// hundred GiB on real hardware); listing is quick.
const CREATE_TIMEOUT: Duration = Duration::from_secs(600);
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// The ndctl operations vglet uses, through the shared runner.
#[derive(Debug, Clone)]
pub struct Ndctl {
    runner: Arc<dyn Runner>,
    binary: PathBuf,
}

impl Ndctl {
    /// Runs the ndctl the binary resolved at start.
    pub fn new(
        runner: Arc<dyn Runner>,
        programs: &vglet_runner::Programs,
    ) -> Result<Ndctl, vglet_runner::ProgramMissing> {
        let binary = programs.path(vglet_runner::Program::Ndctl)?.to_path_buf();
        Ok(Ndctl::with_binary(runner, binary))
    }

    pub fn with_binary(runner: Arc<dyn Runner>, binary: PathBuf) -> Ndctl {
        Ndctl { runner, binary }
    }

    fn cmd(&self, argv: Vec<String>, timeout: Duration) -> Command {
        Command::new(&self.binary).args(argv).timeout(timeout)
    }

    async fn run(&self, argv: Vec<String>, timeout: Duration) -> Result<String, NdctlError> {
        let out = self
            .runner
            .run(self.cmd(argv, timeout))
            .await
            .map_err(NdctlError::from_run)?;
        Ok(out.stdout_lossy())
    }

    /// Every region with its namespaces (disabled ones included), sorted by number.
    pub async fn regions(&self) -> Result<Vec<Region>, NdctlError> {
        parse_regions(&self.run(args::list_regions(), LIST_TIMEOUT).await?)
    }

    /// Every region with its DIMM mappings (no namespaces).
    pub async fn region_mappings(&self) -> Result<Vec<Region>, NdctlError> {
        parse_regions(&self.run(args::list_region_mappings(), LIST_TIMEOUT).await?)
    }

    pub async fn create_namespace(&self, req: &CreateNamespace) -> Result<Namespace, NdctlError> {
        let out = self
            .runner
            .run(self.cmd(args::create_namespace(req), CREATE_TIMEOUT))
            .await
            .map_err(|e| NdctlError::from_create(e, &req.region, req.size))?;
        parse_namespace(&out.stdout_lossy())
    }

    pub async fn disable_namespace(&self, dev: &str) -> Result<(), NdctlError> {
        self.run(args::disable_namespace(dev), LIST_TIMEOUT)
            .await
            .map(drop)
    }

    /// Writes label index blocks on the DIMMs of `region` (which must span exactly those
    /// DIMMs): disable the region, init-labels, enable it again. The region is re-enabled
    /// even when init-labels fails, so a failure never leaves it offline.
    pub async fn init_labels(&self, region: &str, dimms: &[String]) -> Result<(), NdctlError> {
        self.run(args::disable_region(region), LIST_TIMEOUT).await?;
        let init = self.run(args::init_labels(dimms), LIST_TIMEOUT).await;
        let enable = self.run(args::enable_region(region), LIST_TIMEOUT).await;
        init?;
        enable.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vglet_runner::{FakeRunner, Reply};

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn ndctl(fake: &FakeRunner) -> Ndctl {
        Ndctl::with_binary(Arc::new(fake.clone()), "/usr/bin/ndctl".into())
    }

    #[tokio::test]
    async fn lists_and_creates() {
        let list = fixture("list-labelled-empty.json");
        let created = fixture("create-sector.json");
        let fake = FakeRunner::with(move |c| match c.arg_strings()[0].as_str() {
            "list" => Reply::ok(list.clone()),
            "create-namespace" => Reply::ok(created.clone()),
            _ => Reply::fail(1, "unexpected"),
        });
        let n = ndctl(&fake);
        assert_eq!(n.regions().await.unwrap().len(), 2);
        let req = CreateNamespace {
            region: "region0".into(),
            mode: crate::PmemMode::Sector,
            name: "vglet-sector-region0".into(),
            size: 288 << 20,
            align: None,
        };
        let ns = n.create_namespace(&req).await.unwrap();
        assert_eq!(ns.name.as_deref(), Some("vglet-sector-region0"));
        assert_eq!(
            fake.call_lines(),
            [
                "ndctl list --regions --namespaces --idle",
                "ndctl create-namespace --mode sector --name vglet-sector-region0 --size 301989888 --region region0",
            ]
        );
        let timeouts: Vec<_> = fake.calls().iter().map(|c| c.timeout).collect();
        assert_eq!(timeouts, [LIST_TIMEOUT, CREATE_TIMEOUT]);
    }

    #[tokio::test]
    async fn create_failures_are_classified() {
        let stderr = fixture("err-nospace.txt");
        let fake = FakeRunner::with(move |_| Reply::fail(237, stderr.clone()));
        let req = CreateNamespace {
            region: "region0".into(),
            mode: crate::PmemMode::Fsdax,
            name: "x".into(),
            size: 16 << 20,
            align: None,
        };
        assert!(matches!(
            ndctl(&fake).create_namespace(&req).await,
            Err(NdctlError::NoSpace { size: 16777216, .. })
        ));
    }

    #[tokio::test]
    async fn init_labels_re_enables_the_region_even_on_failure() {
        let fake = FakeRunner::with(|c| {
            if c.arg_strings()[0] == "init-labels" {
                Reply::fail(1, "nmem0: regions active, abort")
            } else {
                Reply::ok("")
            }
        });
        let err = ndctl(&fake)
            .init_labels("region0", &["nmem0".into()])
            .await
            .unwrap_err();
        assert!(matches!(err, NdctlError::Command(_)));
        assert_eq!(
            fake.call_lines(),
            [
                "ndctl disable-region region0",
                "ndctl init-labels nmem0",
                "ndctl enable-region region0",
            ]
        );
    }
}
