//! The records the registry hands out, as typed structs read from rows by column name: a
//! model version and a deployment so far (the rest still travel as JSON; see the shape issue).
//! Each record's SELECT list is written once, here, and read back by the same names.

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
        let tags = tx
            .query(
                "SELECT key, value FROM version_tags WHERE model = ? AND version = ? ORDER BY key",
                &key,
            )?
            .into_iter()
            .map(|t| {
                let t = Named::new(&["key", "value"], &t);
                (
                    t.text("key").unwrap_or_default(),
                    t.text("value").unwrap_or_default(),
                )
            })
            .collect();
        let metrics = tx
            .query(
                "SELECT key, value FROM version_metrics WHERE model = ? AND version = ? ORDER BY key",
                &key,
            )?
            .into_iter()
            .map(|m| {
                let value = m.get(1).and_then(Value::as_f64).unwrap_or(f64::NAN);
                (Named::new(&["key"], &m).text("key").unwrap_or_default(), value)
            })
            .collect();
        let aliases = tx
            .query(
                "SELECT alias FROM aliases WHERE model = ? AND version = ? ORDER BY alias",
                &key,
            )?
            .iter()
            .filter_map(|a| Named::new(&["alias"], a).text("alias"))
            .collect();
        let parent = match (r.text("parent_model"), r.int("parent_version")) {
            (Some(m), Some(v)) => Some(Parent {
                uri: format!("models:/{m}/{v}"),
                model: m,
                version: v,
            }),
            _ => None,
        };
        Ok(Version {
            uri: format!("models:/{model}/{version}"),
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

    /// The record as JSON (what webhooks and lineage carry).
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

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
        let aliases = tx
            .query(
                "SELECT alias, version FROM aliases WHERE model = ?",
                &[model.clone().into()],
            )?
            .iter()
            .map(|a| {
                let a = Named::new(&["alias", "version"], a);
                (
                    a.text("alias").unwrap_or_default(),
                    a.int("version").unwrap_or(0),
                )
            })
            .collect();
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
