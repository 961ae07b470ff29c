//! The registry: runs, model versions, aliases, approvals, lineage and the audit log, over
//! any `Store`. Every mutation and its audit event commit in one transaction; webhooks go
//! out after the commit, from a background thread, and never fail the call.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value as Json};

use crate::artifacts::ArtifactStore;
use crate::audit;
use crate::backends;
use crate::error::{RegistryError, Result};
use crate::names;
use crate::query;
use crate::store::{query_one, Row, Store, Tx, Value};
use crate::webhooks::{Event, Webhooks};

pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

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

const VERSION_COLUMNS: &str = "v.model, v.version, v.sha256, v.size, v.signature, v.description, v.run_id, v.dataset, v.parent_model, v.parent_version, v.status, v.created_at, v.created_by, v.input_example";

pub struct Registry {
    store: Arc<dyn Store>,
    artifacts: ArtifactStore,
    hooks: Webhooks,
}

fn text(v: &Value) -> Json {
    v.as_str()
        .map_or(Json::Null, |s| Json::String(s.to_string()))
}

fn int(v: &Value) -> Json {
    v.as_i64().map_or(Json::Null, Json::from)
}

fn json_text(v: &Value) -> Json {
    v.as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Json::Null)
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

    fn write<T>(&self, mut work: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.store.transaction(&mut |tx| {
            out = Some(work(tx)?);
            Ok(())
        })?;
        Ok(out.expect("set on success"))
    }

    fn read<T>(&self, mut work: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.store.read(&mut |tx| {
            out = Some(work(tx)?);
            Ok(())
        })?;
        Ok(out.expect("set on success"))
    }

    // -- runs -------------------------------------------------------------------------------

    pub fn create_run(&self, actor: &str, run: &NewRun) -> Result<Json> {
        names::experiment(&run.experiment)?;
        // run names are labels, not identifiers: free text, within reason
        if run.name.chars().count() > 256 || run.name.chars().any(char::is_control) {
            return Err(RegistryError::invalid(
                "run name",
                &run.name,
                "use at most 256 characters and no control characters",
            ));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let at = now_micros();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO runs (id, name, experiment, status, started_at, actor, git_commit, git_dirty, code_path, environment) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                &[
                    id.clone().into(),
                    run.name.clone().into(),
                    run.experiment.clone().into(),
                    Value::Int(at),
                    actor.into(),
                    run.git_commit.clone().into(),
                    run.git_dirty.map(i64::from).into(),
                    run.code_path.clone().into(),
                    run.environment.to_string().into(),
                ],
            )?;
            audit::append(tx, at, actor, "run.create", None, &json!({"run_id": id, "name": run.name, "experiment": run.experiment}))
        })?;
        self.get_run(&id)
    }

    fn require_run(tx: &mut dyn Tx, run_id: &str) -> Result<String> {
        let row = query_one(tx, "SELECT status FROM runs WHERE id = ?", &[run_id.into()])?
            .ok_or_else(|| RegistryError::not_found("run", run_id))?;
        Ok(row[0].as_str().unwrap_or("").to_string())
    }

    pub fn log_params(&self, actor: &str, run_id: &str, params: &[(String, String)]) -> Result<()> {
        for (k, _) in params {
            names::key("parameter name", k)?;
        }
        let at = now_micros();
        self.write(|tx| {
            Self::require_run(tx, run_id)?;
            for (k, v) in params {
                if let Some(old) = query_one(tx, "SELECT value FROM params WHERE run_id = ? AND key = ?", &[run_id.into(), k.into()])? {
                    if old[0].as_str() != Some(v) {
                        return Err(RegistryError::Conflict(format!(
                            "parameter '{k}' of run {run_id} is already {} and cannot become {v}; parameters are set once per run",
                            old[0].as_str().unwrap_or("?")
                        )));
                    }
                    continue;
                }
                tx.execute("INSERT INTO params (run_id, key, value) VALUES (?, ?, ?)", &[run_id.into(), k.into(), v.into()])?;
            }
            let logged: BTreeMap<&str, &str> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            audit::append(tx, at, actor, "run.log_params", None, &json!({"run_id": run_id, "params": logged}))
        })
    }

    /// Logs (key, value, step) metrics; without a step the next free one is used.
    pub fn log_metrics(
        &self,
        actor: &str,
        run_id: &str,
        metrics: &[(String, f64, Option<i64>)],
    ) -> Result<()> {
        for (k, v, _) in metrics {
            names::key("metric name", k)?;
            if !v.is_finite() {
                return Err(RegistryError::invalid(
                    "metric value",
                    format!("{k}={v}"),
                    "metrics must be finite numbers",
                ));
            }
        }
        let at = now_micros();
        self.write(|tx| {
            Self::require_run(tx, run_id)?;
            for (k, v, step) in metrics {
                let step = match step {
                    Some(s) => *s,
                    None => query_one(tx, "SELECT COALESCE(MAX(step) + 1, 0) FROM metrics WHERE run_id = ? AND key = ?", &[run_id.into(), k.into()])?
                        .and_then(|r| r[0].as_i64())
                        .unwrap_or(0),
                };
                tx.execute(
                    "INSERT INTO metrics (run_id, key, value, step, at) VALUES (?, ?, ?, ?, ?)",
                    &[run_id.into(), k.into(), Value::Float(*v), Value::Int(step), Value::Int(at)],
                )?;
                // versions from this run are searchable by the run's latest value
                tx.execute(
                    "INSERT INTO version_metrics (model, version, key, value) SELECT model, version, ?, ? FROM versions WHERE run_id = ? \
                     ON CONFLICT (model, version, key) DO UPDATE SET value = excluded.value",
                    &[k.into(), Value::Float(*v), run_id.into()],
                )?;
            }
            let logged: BTreeMap<&str, f64> = metrics.iter().map(|(k, v, _)| (k.as_str(), *v)).collect();
            audit::append(tx, at, actor, "run.log_metrics", None, &json!({"run_id": run_id, "metrics": logged}))
        })
    }

    /// Ends a run; `code` is the (commit, dirty) state of the calling code when it was only
    /// known after the run started (git is asked in the background).
    pub fn end_run(
        &self,
        actor: &str,
        run_id: &str,
        status: &str,
        code: Option<(Option<String>, Option<bool>)>,
    ) -> Result<()> {
        if !["finished", "failed", "killed"].contains(&status) {
            return Err(RegistryError::invalid(
                "run status",
                status,
                "use finished, failed or killed",
            ));
        }
        let at = now_micros();
        self.write(|tx| {
            Self::require_run(tx, run_id)?;
            tx.execute("UPDATE runs SET status = ?, ended_at = ? WHERE id = ?", &[status.into(), Value::Int(at), run_id.into()])?;
            let mut details = json!({"run_id": run_id, "status": status});
            if let Some((commit, dirty)) = &code {
                tx.execute(
                    "UPDATE runs SET git_commit = COALESCE(git_commit, ?), git_dirty = COALESCE(git_dirty, ?) WHERE id = ?",
                    &[commit.clone().into(), dirty.map(i64::from).into(), run_id.into()],
                )?;
                details["git_commit"] = json!(commit);
                details["git_dirty"] = json!(dirty);
            }
            audit::append(tx, at, actor, "run.end", None, &details)
        })
    }

    fn run_json(tx: &mut dyn Tx, run_id: &str) -> Result<Json> {
        let row = query_one(
            tx,
            "SELECT id, name, experiment, status, started_at, ended_at, actor, git_commit, git_dirty, code_path, environment FROM runs WHERE id = ?",
            &[run_id.into()],
        )?
        .ok_or_else(|| RegistryError::not_found("run", run_id))?;
        let params: BTreeMap<String, String> = tx
            .query(
                "SELECT key, value FROM params WHERE run_id = ? ORDER BY key",
                &[run_id.into()],
            )?
            .into_iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap_or("").to_string(),
                    r[1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let mut metrics: BTreeMap<String, Vec<Json>> = BTreeMap::new();
        for r in tx.query(
            "SELECT key, value, step, at FROM metrics WHERE run_id = ? ORDER BY key, step, at",
            &[run_id.into()],
        )? {
            metrics
                .entry(r[0].as_str().unwrap_or("").to_string())
                .or_default()
                .push(json!({"value": r[1].as_f64(), "step": r[2].as_i64(), "at": r[3].as_i64()}));
        }
        let latest: BTreeMap<&String, Json> = metrics
            .iter()
            .map(|(k, v)| {
                (
                    k,
                    v.last()
                        .and_then(|p| p.get("value").cloned())
                        .unwrap_or(Json::Null),
                )
            })
            .collect();
        Ok(json!({
            "id": text(&row[0]), "name": text(&row[1]), "experiment": text(&row[2]), "status": text(&row[3]),
            "started_at": int(&row[4]), "ended_at": int(&row[5]), "actor": text(&row[6]),
            "code": {"git_commit": text(&row[7]), "git_dirty": row[8].as_i64().map(|d| d != 0), "path": text(&row[9])},
            "environment": json_text(&row[10]),
            "params": params, "metrics": latest, "metric_history": metrics,
        }))
    }

    pub fn get_run(&self, run_id: &str) -> Result<Json> {
        self.read(|tx| Self::run_json(tx, run_id))
    }

    pub fn search_runs(&self, experiment: Option<&str>) -> Result<Vec<Json>> {
        self.read(|tx| {
            let ids = match experiment {
                Some(e) => tx.query(
                    "SELECT id FROM runs WHERE experiment = ? ORDER BY started_at DESC",
                    &[e.into()],
                )?,
                None => tx.query("SELECT id FROM runs ORDER BY started_at DESC", &[])?,
            };
            ids.iter()
                .map(|r| Self::run_json(tx, r[0].as_str().unwrap_or("")))
                .collect()
        })
    }

    // -- versions ---------------------------------------------------------------------------

    /// Stores the artifact, then in one transaction: the model (if new), the next version
    /// number, the version row, its tags and metrics, the dataset, and the audit event.
    pub fn log_model(&self, actor: &str, new: &NewVersion) -> Result<Json> {
        names::model(&new.model)?;
        for k in new.tags.keys() {
            names::key("tag name", k)?;
        }
        if new.data.is_empty() {
            return Err(RegistryError::invalid(
                "model",
                &new.model,
                "the model file is empty",
            ));
        }
        let sha = self.artifacts.put(&new.data)?;
        let at = now_micros();
        let version = self.write(|tx| {
            tx.lock(&format!("pilothouse.model.{}", new.model))?;
            if let Some(run) = &new.run_id {
                let status = Self::require_run(tx, run)?;
                if status != "running" {
                    return Err(RegistryError::Conflict(format!("run {run} is {status}; log models while it is running")));
                }
            }
            if let Some((pm, pv)) = &new.parent {
                query_one(tx, "SELECT 1 FROM versions WHERE model = ? AND version = ?", &[pm.into(), Value::Int(*pv)])?
                    .ok_or_else(|| RegistryError::not_found("parent version", format!("models:/{pm}/{pv}")))?;
            }
            let created = tx.execute(
                "INSERT INTO models (name, created_at, created_by) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                &[new.model.clone().into(), Value::Int(at), actor.into()],
            )?;
            if created == 1 {
                audit::append(tx, at, actor, "model.create", Some(&new.model), &json!({}))?;
            }
            // one counter per model, advanced under the model's lock: no gaps, no duplicates
            tx.execute("UPDATE models SET last_version = last_version + 1 WHERE name = ?", &[new.model.clone().into()])?;
            let version = query_one(tx, "SELECT last_version FROM models WHERE name = ?", &[new.model.clone().into()])?
                .and_then(|r| r[0].as_i64())
                .ok_or_else(|| RegistryError::Store("the model row vanished".into()))?;
            if let Some(d) = &new.dataset {
                tx.execute(
                    "INSERT INTO datasets (fingerprint, schema, row_count, profile, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING",
                    &[d.fingerprint.clone().into(), d.schema.to_string().into(), Value::Int(d.rows), d.profile.clone().into(), Value::Int(at)],
                )?;
            }
            tx.execute(
                "INSERT INTO versions (model, version, sha256, size, signature, description, run_id, dataset, parent_model, parent_version, status, created_at, created_by, input_example) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
                &[
                    new.model.clone().into(),
                    Value::Int(version),
                    sha.clone().into(),
                    Value::Int(new.data.len() as i64),
                    new.signature.to_string().into(),
                    new.description.clone().into(),
                    new.run_id.clone().into(),
                    new.dataset.as_ref().map(|d| d.fingerprint.clone()).into(),
                    new.parent.as_ref().map(|p| p.0.clone()).into(),
                    new.parent.as_ref().map(|p| p.1).into(),
                    Value::Int(at),
                    actor.into(),
                    new.input_example.clone().into(),
                ],
            )?;
            for (k, v) in &new.tags {
                tx.execute("INSERT INTO version_tags (model, version, key, value) VALUES (?, ?, ?, ?)", &[new.model.clone().into(), Value::Int(version), k.into(), v.into()])?;
            }
            if let Some(run) = &new.run_id {
                tx.execute(
                    "INSERT INTO version_metrics (model, version, key, value) \
                     SELECT ?, ?, m.key, m.value FROM metrics m WHERE m.run_id = ? AND NOT EXISTS \
                     (SELECT 1 FROM metrics n WHERE n.run_id = m.run_id AND n.key = m.key AND (n.step > m.step OR (n.step = m.step AND n.at > m.at)))",
                    &[new.model.clone().into(), Value::Int(version), run.into()],
                )?;
            }
            audit::append(
                tx,
                at,
                actor,
                "version.create",
                Some(&new.model),
                &json!({"version": version, "sha256": sha, "run_id": new.run_id, "dataset": new.dataset.as_ref().map(|d| &d.fingerprint),
                        "parent": new.parent.as_ref().map(|p| format!("models:/{}/{}", p.0, p.1))}),
            )?;
            Ok(version)
        })?;
        let record = self.get_version(&new.model, version)?;
        self.hooks
            .notify(self, &new.model, Event::VersionCreated, record.clone());
        Ok(record)
    }

    fn version_json(tx: &mut dyn Tx, row: &Row) -> Result<Json> {
        let model = row[0].as_str().unwrap_or("").to_string();
        let version = row[1].as_i64().unwrap_or(0);
        let tags: BTreeMap<String, String> = tx
            .query(
                "SELECT key, value FROM version_tags WHERE model = ? AND version = ? ORDER BY key",
                &[model.clone().into(), Value::Int(version)],
            )?
            .into_iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap_or("").into(),
                    r[1].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        let metrics: BTreeMap<String, f64> = tx
            .query("SELECT key, value FROM version_metrics WHERE model = ? AND version = ? ORDER BY key", &[model.clone().into(), Value::Int(version)])?
            .into_iter()
            .map(|r| (r[0].as_str().unwrap_or("").into(), r[1].as_f64().unwrap_or(f64::NAN)))
            .collect();
        let aliases: Vec<String> = tx
            .query(
                "SELECT alias FROM aliases WHERE model = ? AND version = ? ORDER BY alias",
                &[model.clone().into(), Value::Int(version)],
            )?
            .into_iter()
            .filter_map(|r| r[0].as_str().map(str::to_string))
            .collect();
        let parent = match (row[8].as_str(), row[9].as_i64()) {
            (Some(m), Some(v)) => {
                json!({"model": m, "version": v, "uri": format!("models:/{m}/{v}")})
            }
            _ => Json::Null,
        };
        Ok(json!({
            "model": model, "version": version, "uri": format!("models:/{model}/{version}"),
            "sha256": text(&row[2]), "size": int(&row[3]), "signature": json_text(&row[4]),
            "description": text(&row[5]), "run_id": text(&row[6]), "dataset": text(&row[7]),
            "parent": parent, "status": text(&row[10]), "created_at": int(&row[11]), "created_by": text(&row[12]),
            "input_example": text(&row[13]), "tags": tags, "metrics": metrics, "aliases": aliases,
        }))
    }

    fn version_row(tx: &mut dyn Tx, model: &str, version: i64) -> Result<Row> {
        if let Some(row) = query_one(
            tx,
            &format!(
                "SELECT {VERSION_COLUMNS} FROM versions v WHERE v.model = ? AND v.version = ?"
            ),
            &[model.into(), Value::Int(version)],
        )? {
            return Ok(row);
        }
        if query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?.is_none() {
            return Err(RegistryError::not_found("model", model));
        }
        Err(RegistryError::not_found(
            "version",
            format!("models:/{model}/{version}"),
        ))
    }

    pub fn get_version(&self, model: &str, version: i64) -> Result<Json> {
        self.read(|tx| {
            let row = Self::version_row(tx, model, version)?;
            Self::version_json(tx, &row)
        })
    }

    /// Resolves a `models:/` URI to a version record; with `at` (microseconds), an alias
    /// resolves to the version it pointed at then.
    pub fn resolve(&self, uri: &str, at: Option<i64>) -> Result<Json> {
        let (model, reference) = parse_uri(uri)?;
        self.read(|tx| {
            let version = match &reference {
                VersionRef::Number(n) => *n,
                VersionRef::Latest => {
                    let row = query_one(tx, "SELECT MAX(version) FROM versions WHERE model = ? AND status = 'active'", &[model.clone().into()])?;
                    match row.and_then(|r| r[0].as_i64()) {
                        Some(v) => v,
                        None if query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.clone().into()])?.is_none() => {
                            return Err(RegistryError::not_found("model", &model))
                        }
                        None => return Err(RegistryError::not_found("version", format!("{uri} (the model has no active versions)"))),
                    }
                }
                VersionRef::Alias(alias) => match at {
                    None => query_one(tx, "SELECT version FROM aliases WHERE model = ? AND alias = ?", &[model.clone().into(), alias.into()])?
                        .and_then(|r| r[0].as_i64())
                        .ok_or_else(|| RegistryError::not_found("alias", format!("{model}@{alias}")))?,
                    Some(t) => query_one(
                        tx,
                        "SELECT version FROM alias_history WHERE model = ? AND alias = ? AND at <= ? ORDER BY at DESC, id DESC LIMIT 1",
                        &[model.clone().into(), alias.into(), Value::Int(t)],
                    )?
                    .and_then(|r| r[0].as_i64())
                    .ok_or_else(|| RegistryError::not_found("alias", format!("{model}@{alias} at {}", chrono::DateTime::from_timestamp_micros(t).map(|d| d.to_rfc3339()).unwrap_or_default())))?,
                },
            };
            let row = Self::version_row(tx, &model, version)?;
            Self::version_json(tx, &row)
        })
    }

    /// The verified artifact bytes of a version.
    pub fn artifact(&self, model: &str, version: i64) -> Result<Vec<u8>> {
        let record = self.get_version(model, version)?;
        let sha = record["sha256"].as_str().unwrap_or_default();
        self.artifacts
            .get(sha, &format!("models:/{model}/{version}"))
    }

    pub fn list_models(&self) -> Result<Vec<Json>> {
        self.read(|tx| {
            let rows = tx.query("SELECT name, description, created_at, created_by, last_version FROM models ORDER BY name", &[])?;
            let mut out = Vec::new();
            for r in rows {
                let name = r[0].as_str().unwrap_or("").to_string();
                let aliases: BTreeMap<String, i64> = tx
                    .query("SELECT alias, version FROM aliases WHERE model = ?", &[name.clone().into()])?
                    .into_iter()
                    .map(|a| (a[0].as_str().unwrap_or("").into(), a[1].as_i64().unwrap_or(0)))
                    .collect();
                out.push(json!({"name": name, "description": text(&r[1]), "created_at": int(&r[2]), "created_by": text(&r[3]), "latest_version": int(&r[4]), "aliases": aliases}));
            }
            Ok(out)
        })
    }

    pub fn search_versions(&self, filter: &str, order_by: &str, limit: i64) -> Result<Vec<Json>> {
        let compiled = query::compile_filter(filter)?;
        let (order, order_params) = query::compile_order(order_by)?;
        let status = if compiled.mentions_status {
            ""
        } else {
            " AND v.status = 'active'"
        };
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM versions v WHERE ({}){status} ORDER BY {order} LIMIT ?",
            compiled.condition
        );
        let mut params = compiled.params;
        params.extend(order_params);
        params.push(Value::Int(limit.max(0)));
        self.read(|tx| {
            let rows = tx.query(&sql, &params)?;
            rows.iter().map(|r| Self::version_json(tx, r)).collect()
        })
    }

    fn set_status(&self, actor: &str, model: &str, version: i64, status: &str) -> Result<Json> {
        let at = now_micros();
        self.write(|tx| {
            let row = Self::version_row(tx, model, version)?;
            let current = row[10].as_str().unwrap_or("");
            if current == status {
                return Ok(());
            }
            if status == "archived" {
                let aliases: Vec<String> = tx
                    .query("SELECT alias FROM aliases WHERE model = ? AND version = ?", &[model.into(), Value::Int(version)])?
                    .into_iter()
                    .filter_map(|r| r[0].as_str().map(str::to_string))
                    .collect();
                if !aliases.is_empty() {
                    return Err(RegistryError::Conflict(format!(
                        "models:/{model}/{version} is still aliased as {}; move those aliases first",
                        aliases.join(", ")
                    )));
                }
            }
            tx.execute("UPDATE versions SET status = ? WHERE model = ? AND version = ?", &[status.into(), model.into(), Value::Int(version)])?;
            let action = if status == "archived" { "version.archive" } else { "version.restore" };
            audit::append(tx, at, actor, action, Some(model), &json!({"version": version}))
        })?;
        let record = self.get_version(model, version)?;
        if status == "archived" {
            self.hooks
                .notify(self, model, Event::VersionArchived, record.clone());
        }
        Ok(record)
    }

    /// Archives a version (soft delete): hidden from `latest` and searches, kept on disk.
    pub fn archive(&self, actor: &str, model: &str, version: i64) -> Result<Json> {
        self.set_status(actor, model, version, "archived")
    }

    pub fn restore(&self, actor: &str, model: &str, version: i64) -> Result<Json> {
        self.set_status(actor, model, version, "active")
    }

    // -- aliases and governance -------------------------------------------------------------

    /// Points `alias` at `version`. An alias guarded by a policy moves only with an approved
    /// request for exactly this move, by someone other than its requester; the approval is
    /// used up.
    pub fn set_alias(&self, actor: &str, model: &str, alias: &str, version: i64) -> Result<Json> {
        names::alias(alias)?;
        let at = now_micros();
        self.write(|tx| {
            tx.lock(&format!("pilothouse.model.{model}"))?;
            let row = Self::version_row(tx, model, version)?;
            if row[10].as_str() == Some("archived") {
                return Err(RegistryError::Conflict(format!("models:/{model}/{version} is archived; restore it before aliasing it")));
            }
            let previous = query_one(tx, "SELECT version FROM aliases WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?.and_then(|r| r[0].as_i64());
            if previous == Some(version) {
                return Ok(());
            }
            let guarded = query_one(tx, "SELECT 1 FROM policies WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?.is_some();
            let mut approval_id = None;
            if guarded {
                let approval = query_one(
                    tx,
                    "SELECT id, requested_by, decided_by FROM approvals WHERE model = ? AND alias = ? AND version = ? AND status = 'approved' ORDER BY id DESC LIMIT 1",
                    &[model.into(), alias.into(), Value::Int(version)],
                )?
                .ok_or_else(|| {
                    RegistryError::ApprovalRequired(format!(
                        "alias '{alias}' of {model} is guarded: moving it to version {version} needs an approved request (request_promotion, then approve by another person)"
                    ))
                })?;
                let id = approval[0].as_i64().unwrap_or(0);
                tx.execute("UPDATE approvals SET status = 'used' WHERE id = ?", &[Value::Int(id)])?;
                approval_id = Some(id);
            }
            tx.execute(
                "INSERT INTO aliases (model, alias, version, updated_at, updated_by) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                &[model.into(), alias.into(), Value::Int(version), Value::Int(at), actor.into()],
            )?;
            tx.execute(
                "INSERT INTO alias_history (model, alias, version, previous, at, actor, approval_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                &[model.into(), alias.into(), Value::Int(version), previous.into(), Value::Int(at), actor.into(), approval_id.into()],
            )?;
            audit::append(tx, at, actor, "alias.set", Some(model), &json!({"alias": alias, "version": version, "previous": previous, "approval_id": approval_id}))
        })?;
        let record = self.get_version(model, version)?;
        self.hooks.notify(
            self,
            model,
            Event::AliasMoved,
            json!({"alias": alias, "version": record}),
        );
        Ok(record)
    }

    pub fn delete_alias(&self, actor: &str, model: &str, alias: &str) -> Result<()> {
        let at = now_micros();
        self.write(|tx| {
            let previous = query_one(tx, "SELECT version FROM aliases WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?
                .and_then(|r| r[0].as_i64())
                .ok_or_else(|| RegistryError::not_found("alias", format!("{model}@{alias}")))?;
            if query_one(tx, "SELECT 1 FROM policies WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?.is_some() {
                return Err(RegistryError::ApprovalRequired(format!("alias '{alias}' of {model} is guarded by a policy; remove the policy before deleting it")));
            }
            tx.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?;
            tx.execute(
                "INSERT INTO alias_history (model, alias, version, previous, at, actor) VALUES (?, ?, NULL, ?, ?, ?)",
                &[model.into(), alias.into(), Value::Int(previous), Value::Int(at), actor.into()],
            )?;
            audit::append(tx, at, actor, "alias.delete", Some(model), &json!({"alias": alias, "previous": previous}))
        })
    }

    // -- deployments -------------------------------------------------------------------------

    /// Creates or replaces the deployment `name`, which serves versions of `model` as `spec`
    /// says (the server crate owns the spec's format; the registry stores it and checks that
    /// the model exists). Each write bumps the deployment's generation.
    pub fn set_deployment(
        &self,
        actor: &str,
        name: &str,
        model: &str,
        spec: &Json,
    ) -> Result<Json> {
        names::deployment(name)?;
        let at = now_micros();
        let text = spec.to_string();
        self.write(|tx| {
            tx.lock(&format!("pilothouse.deployment.{name}"))?;
            query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?.ok_or_else(|| RegistryError::not_found("model", model))?;
            let generation = query_one(tx, "SELECT generation FROM deployments WHERE name = ?", &[name.into()])?
                .and_then(|r| r[0].as_i64())
                .unwrap_or(0)
                + 1;
            tx.execute(
                "INSERT INTO deployments (name, model, spec, generation, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET model = excluded.model, spec = excluded.spec, generation = excluded.generation, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                &[name.into(), model.into(), text.clone().into(), Value::Int(generation), Value::Int(at), actor.into()],
            )?;
            audit::append(tx, at, actor, "deployment.set", Some(model), &json!({"deployment": name, "spec": spec, "generation": generation}))
        })?;
        self.deployment(name)
    }

    pub fn delete_deployment(&self, actor: &str, name: &str) -> Result<()> {
        let at = now_micros();
        self.write(|tx| {
            let model = query_one(
                tx,
                "SELECT model FROM deployments WHERE name = ?",
                &[name.into()],
            )?
            .and_then(|r| r[0].as_str().map(str::to_string))
            .ok_or_else(|| RegistryError::not_found("deployment", name))?;
            tx.execute("DELETE FROM deployments WHERE name = ?", &[name.into()])?;
            audit::append(
                tx,
                at,
                actor,
                "deployment.delete",
                Some(&model),
                &json!({"deployment": name}),
            )
        })
    }

    fn deployment_json(tx: &mut dyn Tx, r: &Row) -> Result<Json> {
        let model = r[1].as_str().unwrap_or("").to_string();
        let aliases: BTreeMap<String, i64> = tx
            .query(
                "SELECT alias, version FROM aliases WHERE model = ?",
                &[model.clone().into()],
            )?
            .into_iter()
            .map(|a| {
                (
                    a[0].as_str().unwrap_or("").into(),
                    a[1].as_i64().unwrap_or(0),
                )
            })
            .collect();
        Ok(
            json!({"name": text(&r[0]), "model": model, "spec": json_text(&r[2]), "generation": int(&r[3]), "updated_at": int(&r[4]), "updated_by": text(&r[5]), "aliases": aliases}),
        )
    }

    /// One deployment, with the current alias table of its model.
    pub fn deployment(&self, name: &str) -> Result<Json> {
        self.read(|tx| {
            let row = query_one(tx, "SELECT name, model, spec, generation, updated_at, updated_by FROM deployments WHERE name = ?", &[name.into()])?
                .ok_or_else(|| RegistryError::not_found("deployment", name))?;
            Self::deployment_json(tx, &row)
        })
    }

    /// Every deployment with the current alias table of its model, read in one consistent
    /// view: what a server polls to follow alias moves.
    pub fn deployments(&self) -> Result<Vec<Json>> {
        self.read(|tx| {
            let rows = tx.query("SELECT name, model, spec, generation, updated_at, updated_by FROM deployments ORDER BY name", &[])?;
            rows.iter().map(|r| Self::deployment_json(tx, r)).collect()
        })
    }

    pub fn alias_history(&self, model: &str, alias: &str) -> Result<Vec<Json>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT version, previous, at, actor, approval_id FROM alias_history WHERE model = ? AND alias = ? ORDER BY at, id",
                &[model.into(), alias.into()],
            )?;
            if rows.is_empty() && query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?.is_none() {
                return Err(RegistryError::not_found("model", model));
            }
            Ok(rows
                .iter()
                .map(|r| json!({"model": model, "alias": alias, "version": int(&r[0]), "previous": int(&r[1]), "at": int(&r[2]), "actor": text(&r[3]), "approval_id": int(&r[4])}))
                .collect())
        })
    }

    pub fn set_policy(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
        require_approval: bool,
    ) -> Result<()> {
        names::alias(alias)?;
        let at = now_micros();
        self.write(|tx| {
            query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?.ok_or_else(|| RegistryError::not_found("model", model))?;
            if require_approval {
                tx.execute("INSERT INTO policies (model, alias) VALUES (?, ?) ON CONFLICT (model, alias) DO NOTHING", &[model.into(), alias.into()])?;
            } else {
                tx.execute("DELETE FROM policies WHERE model = ? AND alias = ?", &[model.into(), alias.into()])?;
            }
            audit::append(tx, at, actor, "policy.set", Some(model), &json!({"alias": alias, "require_approval": require_approval}))
        })
    }

    pub fn policies(&self, model: &str) -> Result<Vec<String>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT alias FROM policies WHERE model = ? ORDER BY alias",
                    &[model.into()],
                )?
                .into_iter()
                .filter_map(|r| r[0].as_str().map(str::to_string))
                .collect())
        })
    }

    fn approval_json(r: &Row) -> Json {
        json!({"id": int(&r[0]), "model": text(&r[1]), "alias": text(&r[2]), "version": int(&r[3]),
               "requested_by": text(&r[4]), "requested_at": int(&r[5]), "reason": text(&r[6]), "status": text(&r[7]),
               "decided_by": text(&r[8]), "decided_at": int(&r[9]), "decision_reason": text(&r[10])})
    }

    const APPROVAL_COLUMNS: &'static str = "id, model, alias, version, requested_by, requested_at, reason, status, decided_by, decided_at, decision_reason";

    pub fn request_promotion(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
        version: i64,
        reason: &str,
    ) -> Result<Json> {
        names::alias(alias)?;
        let at = now_micros();
        let id = self.write(|tx| {
            Self::version_row(tx, model, version)?;
            let row = query_one(
                tx,
                "INSERT INTO approvals (model, alias, version, requested_by, requested_at, reason, status) VALUES (?, ?, ?, ?, ?, ?, 'pending') RETURNING id",
                &[model.into(), alias.into(), Value::Int(version), actor.into(), Value::Int(at), reason.into()],
            )?;
            let id = row.and_then(|r| r[0].as_i64()).unwrap_or(0);
            audit::append(tx, at, actor, "approval.request", Some(model), &json!({"id": id, "alias": alias, "version": version, "reason": reason}))?;
            Ok(id)
        })?;
        self.get_approval(id)
    }

    pub fn get_approval(&self, id: i64) -> Result<Json> {
        self.read(|tx| {
            let row = query_one(
                tx,
                &format!(
                    "SELECT {} FROM approvals WHERE id = ?",
                    Self::APPROVAL_COLUMNS
                ),
                &[Value::Int(id)],
            )?
            .ok_or_else(|| RegistryError::not_found("approval request", id.to_string()))?;
            Ok(Self::approval_json(&row))
        })
    }

    pub fn approvals(&self, model: &str) -> Result<Vec<Json>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    &format!(
                        "SELECT {} FROM approvals WHERE model = ? ORDER BY id",
                        Self::APPROVAL_COLUMNS
                    ),
                    &[model.into()],
                )?
                .iter()
                .map(Self::approval_json)
                .collect())
        })
    }

    /// Approves or rejects a pending request. The requester cannot decide their own request.
    pub fn decide(&self, actor: &str, id: i64, approve: bool, reason: &str) -> Result<Json> {
        let at = now_micros();
        let model = self.write(|tx| {
            let row = query_one(tx, &format!("SELECT {} FROM approvals WHERE id = ?", Self::APPROVAL_COLUMNS), &[Value::Int(id)])?
                .ok_or_else(|| RegistryError::not_found("approval request", id.to_string()))?;
            let status = row[7].as_str().unwrap_or("");
            if status != "pending" {
                return Err(RegistryError::Conflict(format!("approval request {id} is already {status}")));
            }
            if row[4].as_str() == Some(actor) {
                return Err(RegistryError::ApprovalRequired(format!(
                    "{actor} requested promotion {id} and cannot also decide it; another person must approve or reject it"
                )));
            }
            let decision = if approve { "approved" } else { "rejected" };
            tx.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, decision_reason = ? WHERE id = ?",
                &[decision.into(), actor.into(), Value::Int(at), reason.into(), Value::Int(id)],
            )?;
            let model = row[1].as_str().unwrap_or("").to_string();
            audit::append(tx, at, actor, &format!("approval.{}", if approve { "approve" } else { "reject" }), Some(&model), &json!({"id": id, "reason": reason}))?;
            Ok(model)
        })?;
        let record = self.get_approval(id)?;
        self.hooks
            .notify(self, &model, Event::ApprovalDecided, record.clone());
        Ok(record)
    }

    // -- audit ------------------------------------------------------------------------------

    pub fn audit_log(&self, model: Option<&str>, limit: i64) -> Result<Vec<Json>> {
        self.read(|tx| {
            let rows = match model {
                Some(m) => tx.query(
                    "SELECT seq, at, actor, action, model, details, prev_hash, hash FROM audit WHERE model = ? ORDER BY seq DESC LIMIT ?",
                    &[m.into(), Value::Int(limit)],
                )?,
                None => tx.query("SELECT seq, at, actor, action, model, details, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT ?", &[Value::Int(limit)])?,
            };
            let mut events: Vec<Json> = rows.iter().map(|r| audit::row_to_json(r)).collect();
            events.reverse();
            Ok(events)
        })
    }

    /// Ok(number of events checked), or an Integrity error saying where the chain breaks.
    /// Keyed events are checked with the key in `PILOTHOUSE_AUDIT_KEY`; an anchor taken
    /// with `audit_head` also catches truncation and a recomputed chain.
    pub fn verify_audit_log(&self, anchor: Option<&audit::Anchor>) -> Result<i64> {
        let key = audit::key_from_env();
        self.read(|tx| audit::verify(tx, key.as_deref(), anchor))
    }

    /// The newest audit event's `{seq, hash, at}`: keep it outside the registry and pass it
    /// to `verify_audit_log` later.
    pub fn audit_head(&self) -> Result<Json> {
        self.read(audit::head)
    }

    // -- lineage ----------------------------------------------------------------------------

    /// Upstream (run, params, metrics, dataset, code, environment, parent chain) and
    /// downstream (versions retrained from this one, other versions of the same dataset,
    /// deployments) of a version.
    pub fn lineage(&self, model: &str, version: i64) -> Result<Json> {
        self.read(|tx| {
            let row = Self::version_row(tx, model, version)?;
            let record = Self::version_json(tx, &row)?;
            let run = match row[6].as_str() {
                Some(id) => Self::run_json(tx, id)?,
                None => Json::Null,
            };
            let dataset = match row[7].as_str() {
                Some(fp) => {
                    let d = query_one(tx, "SELECT fingerprint, schema, row_count, profile IS NOT NULL, created_at FROM datasets WHERE fingerprint = ?", &[fp.into()])?;
                    let siblings: Vec<Json> = tx
                        .query("SELECT model, version FROM versions WHERE dataset = ? ORDER BY model, version", &[fp.into()])?
                        .iter()
                        .map(|r| json!(format!("models:/{}/{}", r[0].as_str().unwrap_or(""), r[1].as_i64().unwrap_or(0))))
                        .collect();
                    match d {
                        Some(d) => json!({"fingerprint": text(&d[0]), "schema": json_text(&d[1]), "rows": int(&d[2]), "has_profile": d[3].as_i64() == Some(1), "created_at": int(&d[4]), "versions": siblings}),
                        None => Json::Null,
                    }
                }
                None => Json::Null,
            };
            let mut parents = Vec::new();
            let mut cursor = (row[8].as_str().map(str::to_string), row[9].as_i64());
            while let (Some(pm), Some(pv)) = cursor {
                if parents.len() > 1000 {
                    break;
                }
                let prow = Self::version_row(tx, &pm, pv)?;
                cursor = (prow[8].as_str().map(str::to_string), prow[9].as_i64());
                parents.push(Self::version_json(tx, &prow)?);
            }
            let children: Vec<Json> = tx
                .query("SELECT model, version FROM versions WHERE parent_model = ? AND parent_version = ? ORDER BY model, version", &[model.into(), Value::Int(version)])?
                .iter()
                .map(|r| json!(format!("models:/{}/{}", r[0].as_str().unwrap_or(""), r[1].as_i64().unwrap_or(0))))
                .collect();
            Ok(json!({"version": record, "run": run, "dataset": dataset, "parents": parents, "children": children, "deployments": []}))
        })
    }

    /// The stored profile of a dataset, if one was recorded.
    pub fn dataset_profile(&self, fingerprint: &str) -> Result<Option<Vec<u8>>> {
        self.read(|tx| {
            let row = query_one(
                tx,
                "SELECT profile FROM datasets WHERE fingerprint = ?",
                &[fingerprint.into()],
            )?
            .ok_or_else(|| RegistryError::not_found("dataset", fingerprint))?;
            Ok(row.into_iter().next().and_then(Value::into_blob))
        })
    }

    // -- webhooks ---------------------------------------------------------------------------

    pub fn add_webhook(
        &self,
        actor: &str,
        model: &str,
        url: &str,
        secret: &str,
        events: &[String],
    ) -> Result<i64> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(RegistryError::invalid(
                "webhook URL",
                url,
                "it must start with http:// or https://",
            ));
        }
        // Refused now rather than at every delivery (checked again then: DNS can change).
        crate::webhooks::check_destination(url)
            .map_err(|why| RegistryError::invalid("webhook URL", url, why))?;
        for e in events {
            if Event::from_name(e).is_none() {
                return Err(RegistryError::invalid(
                    "webhook event",
                    e,
                    format!("use one of {}", Event::names().join(", ")),
                ));
            }
        }
        let at = now_micros();
        self.write(|tx| {
            query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?.ok_or_else(|| RegistryError::not_found("model", model))?;
            let events = if events.is_empty() { Event::names().iter().map(|s| s.to_string()).collect() } else { events.to_vec() };
            let id = query_one(
                tx,
                "INSERT INTO webhooks (model, url, secret, events, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                &[model.into(), url.into(), secret.into(), Json::from(events.clone()).to_string().into(), Value::Int(at), actor.into()],
            )?
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0);
            audit::append(tx, at, actor, "webhook.add", Some(model), &json!({"id": id, "url": url, "events": events}))?;
            Ok(id)
        })
    }

    pub(crate) fn webhooks_for(
        &self,
        model: &str,
        event: Event,
    ) -> Result<Vec<(i64, String, String)>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT id, url, secret, events FROM webhooks WHERE model = ? AND active = 1",
                    &[model.into()],
                )?
                .into_iter()
                .filter(|r| {
                    json_text(&r[3])
                        .as_array()
                        .is_some_and(|a| a.iter().any(|e| e.as_str() == Some(event.name())))
                })
                .map(|r| {
                    (
                        r[0].as_i64().unwrap_or(0),
                        r[1].as_str().unwrap_or("").into(),
                        r[2].as_str().unwrap_or("").into(),
                    )
                })
                .collect())
        })
    }

    pub fn deliveries(&self, model: &str) -> Result<Vec<Json>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT d.id, d.webhook_id, d.event, d.delivery, d.attempts, d.status_code, d.ok, d.error, d.at FROM deliveries d \
                     JOIN webhooks w ON w.id = d.webhook_id WHERE w.model = ? ORDER BY d.id",
                    &[model.into()],
                )?
                .iter()
                .map(|r| json!({"id": int(&r[0]), "webhook_id": int(&r[1]), "event": text(&r[2]), "delivery": text(&r[3]), "attempts": int(&r[4]), "status_code": int(&r[5]), "ok": r[6].as_i64() == Some(1), "error": text(&r[7]), "at": int(&r[8])}))
                .collect())
        })
    }

    /// Waits until queued webhook deliveries are done or `timeout` passes; true when done.
    pub fn flush_webhooks(&self, timeout: std::time::Duration) -> bool {
        self.hooks.flush(timeout)
    }
}
