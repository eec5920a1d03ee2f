//! The JSON result on stdout, the contract scripts and the next stage read.

use serde::Serialize;

use crate::plan::{Outcome, Plan};
use crate::request::Request;

/// The result document on stdout (schema: docs/schemas/vg-init-result.schema.json).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Result {
    pub vg: String,
    pub action: Action,
    pub added: Vec<String>,
    pub wiped: Vec<String>,
    /// The VG's tags after the run (planned tags in a dry run).
    pub tags: Vec<String>,
    /// Its PVs after the run (lvm's names).
    pub pvs: Vec<String>,
    /// Those of its PVs tagged vglet.fast after the run: the fast tier volume caches go on
    /// (in a dry run: the --fast-device paths).
    pub fast_pvs: Vec<String>,
    pub shared: bool,
    pub lock_type: Option<String>,
    pub system_id: Option<String>,
    pub thin_pool: Option<String>,
    pub dry_run: bool,
    /// What was (or, in a dry run, would be) done, in order.
    pub plan: Vec<String>,
    /// Dry run only: the exact argv of each command a real run would execute, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_run: Option<Vec<Vec<String>>>,
}

/// What the run did to the VG; a dry run says what it would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub enum Action {
    #[serde(rename = "created")]
    Created,
    #[serde(rename = "extended")]
    Extended,
    #[serde(rename = "updated")]
    Updated,
    #[serde(rename = "unchanged")]
    Unchanged,
    #[serde(rename = "would create")]
    WouldCreate,
    #[serde(rename = "would extend")]
    WouldExtend,
    #[serde(rename = "would update")]
    WouldUpdate,
}

impl Action {
    fn of(outcome: Outcome, dry_run: bool) -> Action {
        match (outcome, dry_run) {
            (Outcome::Unchanged, _) => Action::Unchanged,
            (Outcome::Created, false) => Action::Created,
            (Outcome::Extended, false) => Action::Extended,
            (Outcome::Updated, false) => Action::Updated,
            (Outcome::Created, true) => Action::WouldCreate,
            (Outcome::Extended, true) => Action::WouldExtend,
            (Outcome::Updated, true) => Action::WouldUpdate,
        }
    }
}

/// The document on stdout when vg-init fails (schema: docs/schemas/vg-init-failure.schema.json).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Failure<'a> {
    pub vg: &'a str,
    /// `refused`, `failed` or `usage`.
    pub action: &'a str,
    pub error: String,
}

impl Result {
    pub fn new(req: &Request, plan: &Plan) -> Result {
        Result {
            vg: req.vg.clone(),
            action: Action::of(plan.outcome, req.dry_run),
            added: plan.added.clone(),
            wiped: plan.wiped.clone(),
            tags: req.tags.clone(),
            pvs: Vec::new(),
            fast_pvs: req.fast_devices.clone(),
            shared: req.lock_type.is_some(),
            lock_type: req.lock_type.map(|l| l.to_string()),
            system_id: None,
            thin_pool: req.thin_pool.as_ref().map(|p| p.name.clone()),
            dry_run: req.dry_run,
            plan: plan.actions.iter().map(|a| a.to_string()).collect(),
            would_run: None,
        }
    }
}
