//! Model versions: logged with their artifact, signature, run, dataset and parent; read,
//! resolved from `models:/` URIs, searched, archived and restored.

use serde_json::json;

use super::*;

impl Registry {
    // -- versions ---------------------------------------------------------------------------

    /// Stores the artifact, then in one transaction: the model (if new), the next version
    /// number, the version row, its tags and metrics, the dataset, and the audit event.
    pub fn log_model(&self, actor: &str, new: &NewVersion) -> Result<Version> {
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
            .notify(&new.model, Event::VersionCreated, record.to_json());
        Ok(record)
    }

    pub(super) fn version_row(tx: &mut dyn Tx, model: &str, version: i64) -> Result<Row> {
        if let Some(row) = query_one(
            tx,
            &format!(
                "SELECT {} FROM versions v WHERE v.model = ? AND v.version = ?",
                version_columns()
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

    pub fn get_version(&self, model: &str, version: i64) -> Result<Version> {
        self.read(|tx| {
            let row = Self::version_row(tx, model, version)?;
            Version::read(tx, &row)
        })
    }

    /// Resolves a `models:/` URI to a version record; with `at` (microseconds), an alias
    /// resolves to the version it pointed at then.
    pub fn resolve(&self, uri: &str, at: Option<i64>) -> Result<Version> {
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
            Version::read(tx, &row)
        })
    }

    /// The verified artifact bytes of a version.
    pub fn artifact(&self, model: &str, version: i64) -> Result<Vec<u8>> {
        let record = self.get_version(model, version)?;
        let sha = record.sha256.as_deref().unwrap_or_default();
        self.artifacts
            .get(sha, &format!("models:/{model}/{version}"))
    }

    pub fn list_models(&self) -> Result<Vec<ModelSummary>> {
        self.read(ModelSummary::read_all)
    }

    pub fn search_versions(
        &self,
        filter: &str,
        order_by: &str,
        limit: i64,
    ) -> Result<Vec<Version>> {
        let compiled = query::compile_filter(filter)?;
        let (order, order_params) = query::compile_order(order_by)?;
        let status = if compiled.mentions_status {
            ""
        } else {
            " AND v.status = 'active'"
        };
        let sql = format!(
            "SELECT {} FROM versions v WHERE ({}){status} ORDER BY {order} LIMIT ?",
            version_columns(),
            compiled.condition
        );
        let mut params = compiled.params;
        params.extend(order_params);
        params.push(Value::Int(limit.max(0)));
        self.read(|tx| {
            let rows = tx.query(&sql, &params)?;
            rows.iter().map(|r| Version::read(tx, r)).collect()
        })
    }

    pub(super) fn set_status(
        &self,
        actor: &str,
        model: &str,
        version: i64,
        status: &str,
    ) -> Result<Version> {
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
                .notify(model, Event::VersionArchived, record.to_json());
        }
        Ok(record)
    }

    /// Archives a version (soft delete): hidden from `latest` and searches, kept on disk.
    pub fn archive(&self, actor: &str, model: &str, version: i64) -> Result<Version> {
        self.set_status(actor, model, version, "archived")
    }

    pub fn restore(&self, actor: &str, model: &str, version: i64) -> Result<Version> {
        self.set_status(actor, model, version, "active")
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
}
