//! Runs: created with where they ran, params and metrics logged, ended with a status.

use serde_json::json;

use super::*;

impl Registry {
    // -- runs -------------------------------------------------------------------------------

    pub fn create_run(&self, actor: &str, run: &NewRun) -> Result<Run> {
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

    pub(super) fn require_run(tx: &mut dyn Tx, run_id: &str) -> Result<String> {
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

    pub(super) fn run(tx: &mut dyn Tx, run_id: &str) -> Result<Run> {
        Run::read(tx, run_id)?.ok_or_else(|| RegistryError::not_found("run", run_id))
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        self.read(|tx| Self::run(tx, run_id))
    }

    pub fn search_runs(&self, experiment: Option<&str>) -> Result<Vec<Run>> {
        self.read(|tx| {
            let ids = match experiment {
                Some(e) => tx.query(
                    "SELECT id FROM runs WHERE experiment = ? ORDER BY started_at DESC",
                    &[e.into()],
                )?,
                None => tx.query("SELECT id FROM runs ORDER BY started_at DESC", &[])?,
            };
            ids.iter()
                .map(|r| Self::run(tx, r[0].as_str().unwrap_or("")))
                .collect()
        })
    }
}
