//! Monitoring's storage: each version's reference profiles (of its training inputs and of
//! the model's outputs on them) and the windows that servers close. The registry keeps the
//! profile bytes as they come (it does not read profiles: the monitor and drift crates do).

use serde_json::json;

use super::*;

impl Registry {
    /// Stores (or replaces) the reference profiles of a version; a side left None keeps
    /// what is stored for it.
    pub fn set_reference(
        &self,
        actor: &str,
        model: &str,
        version: i64,
        reference: &NewReference,
    ) -> Result<Reference> {
        let at = now_micros();
        self.write(|tx| {
            Self::version_row(tx, model, version)?;
            let key = [model.into(), Value::Int(version)];
            let old = query_one(tx, "SELECT inputs, outputs FROM version_references WHERE model = ? AND version = ?", &key)?;
            let keep = |i: usize, new: &Option<Vec<u8>>| -> Value {
                match new {
                    Some(bytes) => Value::Blob(bytes.clone()),
                    None => old.as_ref().and_then(|r| r.get(i).cloned()).unwrap_or(Value::Null),
                }
            };
            let (inputs, outputs) = (keep(0, &reference.inputs), keep(1, &reference.outputs));
            tx.execute(
                "INSERT INTO version_references (model, version, inputs, outputs, row_count, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (model, version) DO UPDATE SET inputs = excluded.inputs, outputs = excluded.outputs, row_count = excluded.row_count, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                &[model.into(), Value::Int(version), inputs, outputs, Value::Int(reference.rows), Value::Int(at), actor.into()],
            )?;
            audit::append(
                tx,
                at,
                actor,
                "reference.set",
                Some(model),
                &json!({"version": version, "rows": reference.rows, "inputs": reference.inputs.is_some(), "outputs": reference.outputs.is_some()}),
            )
        })?;
        self.reference(model, version)?.ok_or_else(|| {
            RegistryError::not_found("reference", format!("models:/{model}/{version}"))
        })
    }

    /// Stores (or replaces) a version's reference with labels: its `classes` (JSON text)
    /// and `rows` rows of predictions, probabilities and true labels as the client encoded
    /// them (`data`; the registry does not read it).
    pub fn set_label_reference(
        &self,
        actor: &str,
        model: &str,
        version: i64,
        classes: &str,
        rows: i64,
        data: &[u8],
    ) -> Result<()> {
        let at = now_micros();
        self.write(|tx| {
            Self::version_row(tx, model, version)?;
            tx.execute(
                "INSERT INTO version_label_references (model, version, classes, row_count, data, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (model, version) DO UPDATE SET classes = excluded.classes, row_count = excluded.row_count, data = excluded.data, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                &[model.into(), Value::Int(version), classes.into(), Value::Int(rows), Value::Blob(data.to_vec()), Value::Int(at), actor.into()],
            )?;
            audit::append(
                tx,
                at,
                actor,
                "reference.labels_set",
                Some(model),
                &json!({"version": version, "rows": rows}),
            )
        })
    }

    /// A version's reference with labels: (classes as JSON text, rows, data), or None.
    pub fn label_reference(
        &self,
        model: &str,
        version: i64,
    ) -> Result<Option<(String, i64, Vec<u8>)>> {
        self.read(|tx| {
            let row = query_one(
                tx,
                "SELECT classes, row_count, data FROM version_label_references WHERE model = ? AND version = ?",
                &[model.into(), Value::Int(version)],
            )?;
            Ok(row.map(|r| {
                (
                    r.first().and_then(Value::as_str).unwrap_or("[]").to_string(),
                    r.get(1).and_then(Value::as_i64).unwrap_or(0),
                    r.get(2).and_then(Value::as_bytes).map(<[u8]>::to_vec).unwrap_or_default(),
                )
            }))
        })
    }

    /// The reference profiles of a version, or None when it has none.
    pub fn reference(&self, model: &str, version: i64) -> Result<Option<Reference>> {
        self.read(|tx| {
            Self::version_row(tx, model, version)?;
            Reference::read(tx, model, version)
        })
    }

    /// When each stored reference was last set: (model, version, updated_at), for servers
    /// to notice a replaced reference with one small read.
    pub fn reference_times(&self) -> Result<Vec<(String, i64, i64)>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT model, version, updated_at FROM version_references",
                    &[],
                )?
                .iter()
                .filter_map(|r| {
                    Some((
                        r.first()?.as_str()?.to_string(),
                        r.get(1)?.as_i64()?,
                        r.get(2)?.as_i64()?,
                    ))
                })
                .collect())
        })
    }

    /// Stores closed windows (a window already stored by the same replica is replaced, so a
    /// retried write does not count twice).
    pub fn put_windows(&self, windows: &[MonitorWindow]) -> Result<()> {
        if windows.is_empty() {
            return Ok(());
        }
        let at = now_micros();
        self.write(|tx| {
            for w in windows {
                names::deployment(&w.deployment)?;
                tx.execute(
                    "INSERT INTO monitor_windows (deployment, model, version, route, replica, length_us, start_us, requests, inputs, outputs, health, quality, stored_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (deployment, length_us, start_us, version, route, replica) DO UPDATE SET \
                     requests = excluded.requests, inputs = excluded.inputs, outputs = excluded.outputs, health = excluded.health, quality = excluded.quality, stored_at = excluded.stored_at",
                    &[
                        w.deployment.clone().into(),
                        w.model.clone().into(),
                        Value::Int(w.version),
                        w.route.clone().into(),
                        w.replica.clone().into(),
                        Value::Int(w.length_us),
                        Value::Int(w.start_us),
                        Value::Int(w.requests),
                        w.inputs.clone().map(Value::Blob).unwrap_or(Value::Null),
                        w.outputs.clone().map(Value::Blob).unwrap_or(Value::Null),
                        w.health.clone().into(),
                        w.quality.clone().into(),
                        Value::Int(at),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The windows of `deployment` of one length that start in `[since_us, until_us)`,
    /// oldest first (every replica's).
    pub fn windows(&self, query: &WindowQuery) -> Result<Vec<MonitorWindow>> {
        self.read(|tx| MonitorWindow::read(tx, query))
    }

    /// The window lengths stored for `deployment`, shortest first.
    pub fn window_lengths(&self, deployment: &str) -> Result<Vec<i64>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT DISTINCT length_us FROM monitor_windows WHERE deployment = ? ORDER BY length_us",
                    &[deployment.into()],
                )?
                .iter()
                .filter_map(|r| r.first().and_then(Value::as_i64))
                .collect())
        })
    }

    /// Deletes the windows of one length (of every deployment, or of one replica) that
    /// started before `before_us`; returns how many went.
    pub fn delete_windows(
        &self,
        length_us: i64,
        before_us: i64,
        replica: Option<&str>,
    ) -> Result<i64> {
        self.write(|tx| {
            let gone = match replica {
                Some(r) => tx.execute(
                    "DELETE FROM monitor_windows WHERE length_us = ? AND start_us < ? AND replica = ?",
                    &[Value::Int(length_us), Value::Int(before_us), r.into()],
                )?,
                None => tx.execute(
                    "DELETE FROM monitor_windows WHERE length_us = ? AND start_us < ?",
                    &[Value::Int(length_us), Value::Int(before_us)],
                )?,
            };
            Ok(gone as i64)
        })
    }
}

impl Registry {
    /// Stores the drift computed for buckets (replacing what was stored for the same one).
    pub fn put_drift_results(&self, results: &[DriftResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let at = now_micros();
        self.write(|tx| {
            for d in results {
                tx.execute(
                    "INSERT INTO monitor_drift (deployment, version, side, length_us, start_us, basis, result, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (deployment, side, length_us, start_us, version) DO UPDATE SET basis = excluded.basis, result = excluded.result, computed_at = excluded.computed_at",
                    &[
                        d.deployment.clone().into(),
                        Value::Int(d.version),
                        d.side.clone().into(),
                        Value::Int(d.length_us),
                        Value::Int(d.start_us),
                        d.basis.clone().into(),
                        d.result.clone().into(),
                        Value::Int(at),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The stored drift of `deployment`'s buckets of one side and length that start in
    /// `[since_us, until_us)`, oldest first.
    pub fn drift_results(
        &self,
        deployment: &str,
        side: &str,
        length_us: i64,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<DriftResult>> {
        self.read(|tx| DriftResult::read(tx, deployment, side, length_us, since_us, until_us))
    }

    /// Deletes stored drift of buckets that started before `before_us`; returns how many went.
    pub fn delete_drift_results(&self, before_us: i64) -> Result<i64> {
        self.write(|tx| {
            let gone = tx.execute(
                "DELETE FROM monitor_drift WHERE start_us < ?",
                &[Value::Int(before_us)],
            )?;
            Ok(gone as i64)
        })
    }
}

impl Registry {
    /// Every deployment with stored monitoring windows.
    pub fn monitored_deployments(&self) -> Result<Vec<String>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT DISTINCT deployment FROM monitor_windows ORDER BY deployment",
                    &[],
                )?
                .iter()
                .filter_map(|r| r.first().and_then(Value::as_str).map(str::to_string))
                .collect())
        })
    }

    /// The model of a deployment's newest stored window (for a deployment since deleted).
    pub fn monitored_model(&self, deployment: &str) -> Result<Option<String>> {
        self.read(|tx| {
            Ok(query_one(
                tx,
                "SELECT model FROM monitor_windows WHERE deployment = ? ORDER BY start_us DESC LIMIT 1",
                &[deployment.into()],
            )?
            .and_then(|r| r.first().and_then(Value::as_str).map(str::to_string)))
        })
    }

    /// Every window length stored, of any deployment.
    pub fn all_window_lengths(&self) -> Result<Vec<i64>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT DISTINCT length_us FROM monitor_windows ORDER BY length_us",
                    &[],
                )?
                .iter()
                .filter_map(|r| r.first().and_then(Value::as_i64))
                .collect())
        })
    }
}
