//! The registry: runs, model versions, aliases, approvals, deployments, lineage and the audit
//! log, over any `Store`. This file owns the `Registry` handle (opening, transactions), the
//! `models:/` URIs and the inputs of `log_model`; each concern's operations are in the file
//! named after it. Every mutation and its audit event commit in one transaction; webhooks go
//! out after the commit, from a background thread, and never fail the call.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::artifacts::ArtifactStore;
use crate::audit;
use crate::backends;
use crate::error::{RegistryError, Result};
use crate::names;
use crate::query;
use crate::records::{
    self, AliasMove, Approval, AuditEvent, AuditHead, DatasetInfo, Delivery, Deployment,
    DriftResult, Lineage, ModelSummary, MonitorWindow, NewReference, Reference, Run, ToJson,
    Version, WindowQuery,
};
use crate::store::{query_one, Row, Store, Tx, Value};
use crate::webhooks::{Event, Webhooks};

mod alerts;
mod aliases;
mod approvals;
mod audit_log;
mod channels;
mod checks;
mod deployments;
mod feedback;
mod hooks;
mod lineage;
mod monitoring;
mod predictions;
mod runs;
mod versions;

pub use crate::now_micros;
pub use alerts::{Alert, AlertRule, AlertStep, NewAlertRule, Silence, ACTIONS, SEVERITIES};
pub use channels::{Channel, NewChannel, CHANNEL_KINDS};
pub use checks::ANY_SUITE;
pub use feedback::{Feedback, FeedbackCounts, NewFeedback, Target};
pub use predictions::{Labelled, Prediction};

/// A reference to one version: `models:/name/3`, `models:/name@alias`, `models:/name/latest`.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionRef {
    Number(i64),
    Alias(String),
    Latest,
}

/// Parses a `models:/` URI into the model name and the version reference.
pub fn parse_uri(uri: &str) -> Result<(String, VersionRef)> {
    let bad = |why: &str| RegistryError::invalid("model URI", uri, why);
    let rest = uri.strip_prefix("models:/").ok_or_else(|| {
        bad("model URIs look like models:/name/3, models:/name@alias or models:/name/latest")
    })?;
    let rest = rest.trim_start_matches('/');
    if let Some((name, alias)) = rest.split_once('@') {
        names::model(name)?;
        names::alias(alias).or_else(|_| names::key("alias", alias))?;
        return Ok((name.to_string(), VersionRef::Alias(alias.to_string())));
    }
    let (name, version) = rest.split_once('/').ok_or_else(|| {
        bad("name a version: models:/name/3, models:/name@alias or models:/name/latest")
    })?;
    names::model(name)?;
    let reference = match version {
        "latest" => VersionRef::Latest,
        v => VersionRef::Number(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("the version must be a positive number, 'latest' or @alias"))?,
        ),
    };
    Ok((name.to_string(), reference))
}

/// What `log_model` stores.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    pub model: String,
    pub data: Vec<u8>,
    pub signature: Json,
    pub run_id: Option<String>,
    pub dataset: Option<Dataset>,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub parent: Option<(String, i64)>,
    pub input_example: Option<String>,
}

/// A training dataset's fingerprint and what is known about it.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub fingerprint: String,
    pub schema: Json,
    pub rows: i64,
    pub profile: Option<Vec<u8>>,
}

/// What a new run records about where it ran.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub name: String,
    pub experiment: String,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub code_path: Option<String>,
    pub environment: Json,
}

/// The columns of a version record, for `SELECT ... FROM versions v`.
fn version_columns() -> String {
    records::select(Version::COLUMNS, "v.")
}

pub struct Registry {
    store: Arc<dyn Store>,
    artifacts: ArtifactStore,
    hooks: Webhooks,
}

impl Registry {
    /// Opens (and migrates) the registry at `uri`; see `backends::open` for the forms.
    pub fn open(uri: &str, default_artifacts: &Path) -> Result<Self> {
        let location = backends::open(uri, default_artifacts)?;
        let store: Arc<dyn Store> = Arc::from(location.store);
        let artifacts = ArtifactStore::new(location.artifacts);
        artifacts.clean_stale();
        Ok(Registry {
            hooks: Webhooks::start(store.clone()),
            store,
            artifacts,
        })
    }

    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    pub fn uri(&self) -> &str {
        self.store.display_uri()
    }

    pub fn artifact_root(&self) -> &Path {
        self.artifacts.root()
    }

    pub(super) fn write<T>(&self, mut work: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.store.transaction(&mut |tx| {
            out = Some(work(tx)?);
            Ok(())
        })?;
        Ok(out.expect("set on success"))
    }

    pub(super) fn read<T>(&self, mut work: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.store.read(&mut |tx| {
            out = Some(work(tx)?);
            Ok(())
        })?;
        Ok(out.expect("set on success"))
    }
}
