//! The records the registry hands out, as typed structs read from rows by column name: a
//! model version, a run, a model's summary, an alias move, an approval request, an audit
//! event and the audit head, a deployment, a webhook delivery, and a version's lineage.
//! Each record's SELECT list is written once, here, and read back by the same names; every
//! record serialises (serde) to the JSON that webhooks carry.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

use crate::error::Result;
use crate::store::{Row, Tx, Value};

/// One row with the names of its columns: values are read by name, never by position.
pub(crate) struct Named<'r> {
    columns: &'static [&'static str],
    row: &'r Row,
}

impl<'r> Named<'r> {
    pub(crate) fn new(columns: &'static [&'static str], row: &'r Row) -> Self {
        Named { columns, row }
    }

    fn value(&self, name: &str) -> &'r Value {
        static NULL: Value = Value::Null;
        debug_assert!(
            self.columns.contains(&name),
            "column '{name}' is not in the SELECT list {:?}",
            self.columns
        );
        self.columns
            .iter()
            .position(|c| *c == name)
            .and_then(|i| self.row.get(i))
            .unwrap_or(&NULL)
    }

    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.value(name).as_str().map(str::to_string)
    }

    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        self.value(name).as_i64()
    }

    pub(crate) fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.value(name).as_bytes().map(<[u8]>::to_vec)
    }

    pub(crate) fn float(&self, name: &str) -> Option<f64> {
        self.value(name).as_f64()
    }

    pub(crate) fn flag(&self, name: &str) -> Option<bool> {
        self.value(name).as_i64().map(|v| v != 0)
    }

    /// A column holding JSON text, parsed (null when absent or not JSON).
    pub(crate) fn json(&self, name: &str) -> Json {
        self.value(name)
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Json::Null)
    }
}

/// The column list of `columns`, for a SELECT (`prefix` is the table's alias, or "").
pub(crate) fn select(columns: &[&str], prefix: &str) -> String {
    columns
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The version a version was derived from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parent {
    pub model: String,
    pub version: i64,
    pub uri: String,
}

/// One model version, with its tags, metrics and the aliases pointing at it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Version {
    pub model: String,
    pub version: i64,
    pub uri: String,
    pub sha256: Option<String>,
    pub size: Option<i64>,
    pub signature: Json,
    pub description: Option<String>,
    pub run_id: Option<String>,
    /// The training dataset's fingerprint.
    pub dataset: Option<String>,
    pub parent: Option<Parent>,
    pub status: Option<String>,
    pub created_at: Option<i64>,
    pub created_by: Option<String>,
    /// The stored input example (JSON text).
    pub input_example: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub aliases: Vec<String>,
}

impl Version {
    /// The columns of `versions` a version record is read from.
    pub(crate) const COLUMNS: &'static [&'static str] = &[
        "model",
        "version",
        "sha256",
        "size",
        "signature",
        "description",
        "run_id",
        "dataset",
        "parent_model",
        "parent_version",
        "status",
        "created_at",
        "created_by",
        "input_example",
    ];

    /// The record of `row` (selected with [`Version::COLUMNS`]), with its tags, metrics and
    /// aliases read in the same transaction.
    pub(crate) fn read(tx: &mut dyn Tx, row: &Row) -> Result<Version> {
        let r = Named::new(Self::COLUMNS, row);
        let model = r.text("model").unwrap_or_default();
        let version = r.int("version").unwrap_or(0);
        let key = [model.clone().into(), Value::Int(version)];
        let of_version = "WHERE model = ? AND version = ? ORDER BY";
        let tags = read_all(
            tx,
            &["key", "value"],
            &format!("version_tags {of_version} key"),
            &key,
            |t| {
                (
                    t.text("key").unwrap_or_default(),
                    t.text("value").unwrap_or_default(),
                )
            },
        )?
        .into_iter()
        .collect();
        let metrics = read_all(
            tx,
            &["key", "value"],
            &format!("version_metrics {of_version} key"),
            &key,
            |m| {
                (
                    m.text("key").unwrap_or_default(),
                    m.float("value").unwrap_or(f64::NAN),
                )
            },
        )?
        .into_iter()
        .collect();
        let aliases = read_all(
            tx,
            &["alias"],
            &format!("aliases {of_version} alias"),
            &key,
            |a| a.text("alias").unwrap_or_default(),
        )?;
        let parent = match (r.text("parent_model"), r.int("parent_version")) {
            (Some(m), Some(v)) => Some(Parent {
                uri: version_uri(&m, v),
                model: m,
                version: v,
            }),
            _ => None,
        };
        Ok(Version {
            uri: version_uri(&model, version),
            sha256: r.text("sha256"),
            size: r.int("size"),
            signature: r.json("signature"),
            description: r.text("description"),
            run_id: r.text("run_id"),
            dataset: r.text("dataset"),
            parent,
            status: r.text("status"),
            created_at: r.int("created_at"),
            created_by: r.text("created_by"),
            input_example: r.text("input_example"),
            tags,
            metrics,
            aliases,
            model,
            version,
        })
    }
}

/// A record as JSON, the body webhooks carry.
pub trait ToJson: Serialize {
    fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

impl ToJson for Version {}
impl ToJson for Approval {}
impl ToJson for CheckRecord {}

/// A deployment spec as stored, with the current alias table of its model: what a server
/// polls to follow alias moves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    pub name: String,
    pub model: String,
    /// The spec, as the server's `DeploymentSpec` reads it.
    pub spec: Json,
    /// Bumped by every change of the spec.
    pub generation: i64,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
    pub aliases: BTreeMap<String, i64>,
}

impl Deployment {
    pub(crate) const COLUMNS: &'static [&'static str] = &[
        "name",
        "model",
        "spec",
        "generation",
        "updated_at",
        "updated_by",
    ];

    pub(crate) fn read(tx: &mut dyn Tx, row: &Row) -> Result<Deployment> {
        let r = Named::new(Self::COLUMNS, row);
        let model = r.text("model").unwrap_or_default();
        let aliases = aliases_of(tx, &model)?;
        Ok(Deployment {
            name: r.text("name").unwrap_or_default(),
            spec: r.json("spec"),
            generation: r.int("generation").unwrap_or(0),
            updated_at: r.int("updated_at"),
            updated_by: r.text("updated_by"),
            aliases,
            model,
        })
    }
}

/// `SELECT <columns of T> FROM <from>`, then each row read as a `T`.
pub(crate) fn read_all<T>(
    tx: &mut dyn Tx,
    columns: &'static [&'static str],
    from: &str,
    params: &[Value],
    read: impl Fn(Named<'_>) -> T,
) -> Result<Vec<T>> {
    let sql = format!("SELECT {} FROM {from}", select(columns, ""));
    Ok(tx
        .query(&sql, params)?
        .iter()
        .map(|row| read(Named::new(columns, row)))
        .collect())
}

/// The URI of version `version` of `model`.
pub(crate) fn version_uri(model: &str, version: i64) -> String {
    format!("models:/{model}/{version}")
}

/// One value of a run's metric, at its step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricPoint {
    pub value: f64,
    pub step: i64,
    pub at: i64,
}

/// Where a run's code came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCode {
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub path: Option<String>,
}

/// A training run: where it ran, its params, the latest value and the history of each metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: String,
    pub name: String,
    pub experiment: String,
    pub status: String,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub actor: String,
    pub code: RunCode,
    pub environment: Json,
    pub params: BTreeMap<String, String>,
    /// The latest value of each metric.
    pub metrics: BTreeMap<String, f64>,
    pub metric_history: BTreeMap<String, Vec<MetricPoint>>,
}

impl Run {
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "experiment",
        "status",
        "started_at",
        "ended_at",
        "actor",
        "git_commit",
        "git_dirty",
        "code_path",
        "environment",
    ];

    /// The run `id`, or None when there is no such run.
    pub(crate) fn read(tx: &mut dyn Tx, id: &str) -> Result<Option<Run>> {
        let Some(row) = tx
            .query(
                &format!(
                    "SELECT {} FROM runs WHERE id = ?",
                    select(Self::COLUMNS, "")
                ),
                &[id.into()],
            )?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let r = Named::new(Self::COLUMNS, &row);
        let params = read_all(
            tx,
            &["key", "value"],
            "params WHERE run_id = ? ORDER BY key",
            &[id.into()],
            |p| {
                (
                    p.text("key").unwrap_or_default(),
                    p.text("value").unwrap_or_default(),
                )
            },
        )?
        .into_iter()
        .collect();
        let mut metric_history: BTreeMap<String, Vec<MetricPoint>> = BTreeMap::new();
        for (key, point) in read_all(
            tx,
            &["key", "value", "step", "at"],
            "metrics WHERE run_id = ? ORDER BY key, step, at",
            &[id.into()],
            |m| {
                let point = MetricPoint {
                    value: m.float("value").unwrap_or(f64::NAN),
                    step: m.int("step").unwrap_or(0),
                    at: m.int("at").unwrap_or(0),
                };
                (m.text("key").unwrap_or_default(), point)
            },
        )? {
            metric_history.entry(key).or_default().push(point);
        }
        let metrics = metric_history
            .iter()
            .filter_map(|(k, points)| Some((k.clone(), points.last()?.value)))
            .collect();
        Ok(Some(Run {
            id: r.text("id").unwrap_or_default(),
            name: r.text("name").unwrap_or_default(),
            experiment: r.text("experiment").unwrap_or_default(),
            status: r.text("status").unwrap_or_default(),
            started_at: r.int("started_at"),
            ended_at: r.int("ended_at"),
            actor: r.text("actor").unwrap_or_default(),
            code: RunCode {
                git_commit: r.text("git_commit"),
                git_dirty: r.flag("git_dirty"),
                path: r.text("code_path"),
            },
            environment: r.json("environment"),
            params,
            metrics,
            metric_history,
        }))
    }
}

/// A model with its newest version number and its current aliases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub description: Option<String>,
    pub created_at: Option<i64>,
    pub created_by: Option<String>,
    pub latest_version: Option<i64>,
    pub aliases: BTreeMap<String, i64>,
}

impl ModelSummary {
    pub(crate) fn read_all(tx: &mut dyn Tx) -> Result<Vec<ModelSummary>> {
        let models = read_all(
            tx,
            &[
                "name",
                "description",
                "created_at",
                "created_by",
                "last_version",
            ],
            "models ORDER BY name",
            &[],
            |r| ModelSummary {
                name: r.text("name").unwrap_or_default(),
                description: r.text("description"),
                created_at: r.int("created_at"),
                created_by: r.text("created_by"),
                latest_version: r.int("last_version"),
                aliases: BTreeMap::new(),
            },
        )?;
        models
            .into_iter()
            .map(|mut m| {
                m.aliases = aliases_of(tx, &m.name)?;
                Ok(m)
            })
            .collect()
    }
}

/// The current alias table of `model`: alias → version.
pub(crate) fn aliases_of(tx: &mut dyn Tx, model: &str) -> Result<BTreeMap<String, i64>> {
    Ok(read_all(
        tx,
        &["alias", "version"],
        "aliases WHERE model = ?",
        &[model.into()],
        |a| {
            (
                a.text("alias").unwrap_or_default(),
                a.int("version").unwrap_or(0),
            )
        },
    )?
    .into_iter()
    .collect())
}

/// One move of an alias: to `version` (None when it was deleted) from `previous`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliasMove {
    pub model: String,
    pub alias: String,
    pub version: Option<i64>,
    pub previous: Option<i64>,
    pub at: Option<i64>,
    pub actor: String,
    /// The approval that allowed the move, for a guarded alias.
    pub approval_id: Option<i64>,
}

impl AliasMove {
    /// Every move of `alias` of `model`, oldest first.
    pub(crate) fn history(tx: &mut dyn Tx, model: &str, alias: &str) -> Result<Vec<AliasMove>> {
        read_all(
            tx,
            &["version", "previous", "at", "actor", "approval_id"],
            "alias_history WHERE model = ? AND alias = ? ORDER BY at, id",
            &[model.into(), alias.into()],
            |r| AliasMove {
                model: model.to_string(),
                alias: alias.to_string(),
                version: r.int("version"),
                previous: r.int("previous"),
                at: r.int("at"),
                actor: r.text("actor").unwrap_or_default(),
                approval_id: r.int("approval_id"),
            },
        )
    }
}

/// A request to move a guarded alias, and its decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub id: i64,
    pub model: String,
    pub alias: String,
    pub version: i64,
    pub requested_by: String,
    pub requested_at: Option<i64>,
    pub reason: String,
    /// pending, approved, rejected, or used (the alias moved with it).
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
    /// What the request offered as evidence (JSON), if anything.
    pub evidence: Option<Json>,
    /// The newest check of each suite recorded on the version, as they stand when read.
    pub checks: Vec<CheckRecord>,
}

impl Approval {
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "model",
        "alias",
        "version",
        "requested_by",
        "requested_at",
        "reason",
        "status",
        "decided_by",
        "decided_at",
        "decision_reason",
        "evidence",
    ];

    /// The requests `FROM approvals <rest>` selects.
    pub(crate) fn read_where(
        tx: &mut dyn Tx,
        rest: &str,
        params: &[Value],
    ) -> Result<Vec<Approval>> {
        read_all(
            tx,
            Self::COLUMNS,
            &format!("approvals {rest}"),
            params,
            |r| Approval {
                id: r.int("id").unwrap_or(0),
                model: r.text("model").unwrap_or_default(),
                alias: r.text("alias").unwrap_or_default(),
                version: r.int("version").unwrap_or(0),
                requested_by: r.text("requested_by").unwrap_or_default(),
                requested_at: r.int("requested_at"),
                reason: r.text("reason").unwrap_or_default(),
                status: r.text("status").unwrap_or_default(),
                decided_by: r.text("decided_by"),
                decided_at: r.int("decided_at"),
                decision_reason: r.text("decision_reason"),
                evidence: Some(r.json("evidence")).filter(|e| !e.is_null()),
                checks: Vec::new(),
            },
        )
    }
}

/// A suite of model checks run against a version, and what each check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRecord {
    pub id: i64,
    pub model: String,
    pub version: i64,
    /// The suite's name (a TOML suite's `name`, else its file name).
    pub suite: String,
    /// Whether every check of the suite passed.
    pub passed: bool,
    /// What the checks found: `{"checks": [{"name", "check", "passed", "summary", ...}], ...}`.
    pub results: Json,
    pub recorded_at: Option<i64>,
    pub recorded_by: String,
}

impl CheckRecord {
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "model",
        "version",
        "suite",
        "passed",
        "results",
        "recorded_at",
        "recorded_by",
    ];

    /// The records `FROM version_checks <rest>` selects.
    pub(crate) fn read_where(
        tx: &mut dyn Tx,
        rest: &str,
        params: &[Value],
    ) -> Result<Vec<CheckRecord>> {
        read_all(
            tx,
            Self::COLUMNS,
            &format!("version_checks {rest}"),
            params,
            |r| CheckRecord {
                id: r.int("id").unwrap_or(0),
                model: r.text("model").unwrap_or_default(),
                version: r.int("version").unwrap_or(0),
                suite: r.text("suite").unwrap_or_default(),
                passed: r.int("passed").unwrap_or(0) != 0,
                results: r.json("results"),
                recorded_at: r.int("recorded_at"),
                recorded_by: r.text("recorded_by").unwrap_or_default(),
            },
        )
    }

    /// The names of the checks that failed.
    pub fn failed(&self) -> Vec<String> {
        self.results["checks"]
            .as_array()
            .map(|checks| {
                checks
                    .iter()
                    .filter(|c| c["passed"] == Json::Bool(false))
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One event of the hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: Option<i64>,
    pub actor: String,
    pub action: String,
    pub model: Option<String>,
    pub details: Json,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    pub(crate) const COLUMNS: &'static [&'static str] = &[
        "seq",
        "at",
        "actor",
        "action",
        "model",
        "details",
        "prev_hash",
        "hash",
    ];

    /// The events `FROM audit <rest>` selects, in that order.
    pub(crate) fn read_where(
        tx: &mut dyn Tx,
        rest: &str,
        params: &[Value],
    ) -> Result<Vec<AuditEvent>> {
        read_all(tx, Self::COLUMNS, &format!("audit {rest}"), params, |r| {
            AuditEvent {
                seq: r.int("seq").unwrap_or(0),
                at: r.int("at"),
                actor: r.text("actor").unwrap_or_default(),
                action: r.text("action").unwrap_or_default(),
                model: r.text("model"),
                details: r.json("details"),
                prev_hash: r.text("prev_hash").unwrap_or_default(),
                hash: r.text("hash").unwrap_or_default(),
            }
        })
    }
}

/// The newest audit event's sequence number and hash (an anchor to keep elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
    pub at: Option<i64>,
}

/// One attempt to deliver a webhook event that ended (delivered, or given up).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event: String,
    /// The delivery's id, sent as X-Pilothouse-Delivery.
    pub delivery: String,
    pub attempts: i64,
    pub status_code: Option<i64>,
    pub ok: bool,
    pub error: Option<String>,
    pub at: Option<i64>,
}

impl Delivery {
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "webhook_id",
        "event",
        "delivery",
        "attempts",
        "status_code",
        "ok",
        "error",
        "at",
    ];

    /// The ended deliveries of the webhooks of `model`, oldest first.
    pub(crate) fn of_model(tx: &mut dyn Tx, model: &str) -> Result<Vec<Delivery>> {
        Self::read_where(
            tx,
            "WHERE webhook_id IN (SELECT id FROM webhooks WHERE model = ?) ORDER BY id",
            &[model.into()],
        )
    }

    /// The ended deliveries of one webhook (an alert channel's), oldest first.
    pub(crate) fn of_webhook(tx: &mut dyn Tx, webhook_id: i64) -> Result<Vec<Delivery>> {
        Self::read_where(
            tx,
            "WHERE webhook_id = ? ORDER BY id",
            &[Value::Int(webhook_id)],
        )
    }

    fn read_where(tx: &mut dyn Tx, rest: &str, params: &[Value]) -> Result<Vec<Delivery>> {
        read_all(
            tx,
            Self::COLUMNS,
            &format!("deliveries {rest}"),
            params,
            |r| Delivery {
                id: r.int("id").unwrap_or(0),
                webhook_id: r.int("webhook_id").unwrap_or(0),
                event: r.text("event").unwrap_or_default(),
                delivery: r.text("delivery").unwrap_or_default(),
                attempts: r.int("attempts").unwrap_or(0),
                status_code: r.int("status_code"),
                ok: r.flag("ok").unwrap_or(false),
                error: r.text("error"),
                at: r.int("at"),
            },
        )
    }
}

/// A training dataset as the registry knows it, with the versions trained on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetInfo {
    pub fingerprint: String,
    pub schema: Json,
    pub rows: Option<i64>,
    pub has_profile: bool,
    pub created_at: Option<i64>,
    /// URIs of every version trained on this dataset.
    pub versions: Vec<String>,
}

impl DatasetInfo {
    pub(crate) fn read(tx: &mut dyn Tx, fingerprint: &str) -> Result<Option<DatasetInfo>> {
        let versions = read_all(
            tx,
            &["model", "version"],
            "versions WHERE dataset = ? ORDER BY model, version",
            &[fingerprint.into()],
            |r| {
                version_uri(
                    &r.text("model").unwrap_or_default(),
                    r.int("version").unwrap_or(0),
                )
            },
        )?;
        Ok(read_all(
            tx,
            &["fingerprint", "schema", "row_count", "has_profile", "created_at"],
            "(SELECT fingerprint, schema, row_count, CASE WHEN profile IS NULL THEN 0 ELSE 1 END AS has_profile, created_at FROM datasets WHERE fingerprint = ?) d",
            &[fingerprint.into()],
            |r| DatasetInfo {
                fingerprint: r.text("fingerprint").unwrap_or_default(),
                schema: r.json("schema"),
                rows: r.int("row_count"),
                has_profile: r.flag("has_profile").unwrap_or(false),
                created_at: r.int("created_at"),
                versions: versions.clone(),
            },
        )?
        .pop())
    }
}

/// Where a version came from (its run, dataset and parent chain, nearest first) and where
/// it went (versions retrained from it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lineage {
    pub version: Version,
    pub run: Option<Run>,
    pub dataset: Option<DatasetInfo>,
    pub parents: Vec<Version>,
    /// URIs of the versions whose parent this version is.
    pub children: Vec<String>,
}

/// The URIs of the versions whose parent is `model`/`version`.
pub(crate) fn children_of(tx: &mut dyn Tx, model: &str, version: i64) -> Result<Vec<String>> {
    read_all(
        tx,
        &["model", "version"],
        "versions WHERE parent_model = ? AND parent_version = ? ORDER BY model, version",
        &[model.into(), Value::Int(version)],
        |r| {
            version_uri(
                &r.text("model").unwrap_or_default(),
                r.int("version").unwrap_or(0),
            )
        },
    )
}

/// The reference profiles `set_reference` stores (profile bytes, as the drift crate writes
/// them; None keeps what is stored for that side).
#[derive(Debug, Clone, Default)]
pub struct NewReference {
    pub inputs: Option<Vec<u8>>,
    pub outputs: Option<Vec<u8>>,
    /// Rows the reference was profiled from.
    pub rows: i64,
}

/// A version's reference: the profile of its training inputs and of the model's outputs
/// on them.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub model: String,
    pub version: i64,
    pub inputs: Option<Vec<u8>>,
    pub outputs: Option<Vec<u8>>,
    pub rows: i64,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
}

impl Reference {
    pub(crate) fn read(tx: &mut dyn Tx, model: &str, version: i64) -> Result<Option<Reference>> {
        Ok(read_all(
            tx,
            &["inputs", "outputs", "row_count", "updated_at", "updated_by"],
            "version_references WHERE model = ? AND version = ?",
            &[model.into(), Value::Int(version)],
            |r| Reference {
                model: model.to_string(),
                version,
                inputs: r.bytes("inputs"),
                outputs: r.bytes("outputs"),
                rows: r.int("row_count").unwrap_or(0),
                updated_at: r.int("updated_at"),
                updated_by: r.text("updated_by"),
            },
        )?
        .pop())
    }
}

/// One closed monitoring window of one replica: profile bytes of its inputs and outputs,
/// and its health and quality as JSON text (the monitor crate's types).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MonitorWindow {
    pub deployment: String,
    pub model: String,
    pub version: i64,
    pub route: String,
    /// Which server process closed it.
    pub replica: String,
    pub length_us: i64,
    pub start_us: i64,
    pub requests: i64,
    pub inputs: Option<Vec<u8>>,
    pub outputs: Option<Vec<u8>>,
    pub health: String,
    pub quality: String,
    /// When it was written (set by the registry; ignored when storing).
    pub stored_at: i64,
}

/// Which windows to read.
#[derive(Debug, Clone, Default)]
pub struct WindowQuery {
    pub deployment: String,
    pub length_us: i64,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// Only this version's windows.
    pub version: Option<i64>,
    /// Leave the profile bytes out (for health and quality only).
    pub without_profiles: bool,
}

/// The drift of one bucket of windows (a version's inputs or outputs over
/// `[start_us, start_us + length_us)`), as the monitor computed it: `result` is its JSON,
/// `basis` names what it was computed from (the windows, the reference and the options), so
/// that a reader knows whether it still holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DriftResult {
    pub deployment: String,
    pub version: i64,
    /// "inputs" or "outputs".
    pub side: String,
    pub length_us: i64,
    pub start_us: i64,
    pub basis: String,
    pub result: String,
}

impl DriftResult {
    pub(crate) fn read(
        tx: &mut dyn Tx,
        deployment: &str,
        side: &str,
        length_us: i64,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<DriftResult>> {
        read_all(
            tx,
            &[
                "deployment",
                "version",
                "side",
                "length_us",
                "start_us",
                "basis",
                "result",
            ],
            "monitor_drift WHERE deployment = ? AND side = ? AND length_us = ? AND start_us >= ? AND start_us < ? ORDER BY start_us, version",
            &[
                deployment.into(),
                side.into(),
                Value::Int(length_us),
                Value::Int(since_us.unwrap_or(i64::MIN)),
                Value::Int(until_us.unwrap_or(i64::MAX)),
            ],
            |r| DriftResult {
                deployment: r.text("deployment").unwrap_or_default(),
                version: r.int("version").unwrap_or(0),
                side: r.text("side").unwrap_or_default(),
                length_us: r.int("length_us").unwrap_or(0),
                start_us: r.int("start_us").unwrap_or(0),
                basis: r.text("basis").unwrap_or_default(),
                result: r.text("result").unwrap_or_default(),
            },
        )
    }
}

impl MonitorWindow {
    const COLUMNS: &'static [&'static str] = &[
        "deployment",
        "model",
        "version",
        "route",
        "replica",
        "length_us",
        "start_us",
        "requests",
        "inputs",
        "outputs",
        "health",
        "quality",
        "stored_at",
    ];
    const WITHOUT_PROFILES: &'static [&'static str] = &[
        "deployment",
        "model",
        "version",
        "route",
        "replica",
        "length_us",
        "start_us",
        "requests",
        "health",
        "quality",
        "stored_at",
    ];

    pub(crate) fn read(tx: &mut dyn Tx, q: &WindowQuery) -> Result<Vec<MonitorWindow>> {
        let mut filter = String::from("monitor_windows WHERE deployment = ? AND length_us = ?");
        let mut params: Vec<Value> = vec![q.deployment.clone().into(), Value::Int(q.length_us)];
        if let Some(since) = q.since_us {
            filter.push_str(" AND start_us >= ?");
            params.push(Value::Int(since));
        }
        if let Some(until) = q.until_us {
            filter.push_str(" AND start_us < ?");
            params.push(Value::Int(until));
        }
        if let Some(version) = q.version {
            filter.push_str(" AND version = ?");
            params.push(Value::Int(version));
        }
        filter.push_str(" ORDER BY start_us, version, route, replica");
        let profiles = !q.without_profiles;
        // without profiles, their bytes are not even read from the database
        let columns = if profiles {
            Self::COLUMNS
        } else {
            Self::WITHOUT_PROFILES
        };
        read_all(tx, columns, &filter, &params, |r| MonitorWindow {
            deployment: r.text("deployment").unwrap_or_default(),
            model: r.text("model").unwrap_or_default(),
            version: r.int("version").unwrap_or(0),
            route: r.text("route").unwrap_or_default(),
            replica: r.text("replica").unwrap_or_default(),
            length_us: r.int("length_us").unwrap_or(0),
            start_us: r.int("start_us").unwrap_or(0),
            requests: r.int("requests").unwrap_or(0),
            inputs: profiles.then(|| r.bytes("inputs")).flatten(),
            outputs: profiles.then(|| r.bytes("outputs")).flatten(),
            health: r.text("health").unwrap_or_default(),
            quality: r.text("quality").unwrap_or_default(),
            stored_at: r.int("stored_at").unwrap_or(0),
        })
    }
}
