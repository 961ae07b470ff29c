//! Deployment specs as the server follows them: set, deleted and read.

use serde_json::{json, Value as Json};

use super::*;

impl Registry {
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
    ) -> Result<Deployment> {
        names::deployment(name)?;
        if !spec.is_object() {
            return Err(RegistryError::invalid(
                "deployment spec",
                spec.to_string(),
                "a spec is an object such as {\"routes\": [{\"target\": {\"alias\": \"champion\"}, \"weight\": 1}]}",
            ));
        }
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

    /// One deployment, with the current alias table of its model.
    pub fn deployment(&self, name: &str) -> Result<Deployment> {
        let sql = format!(
            "SELECT {} FROM deployments WHERE name = ?",
            records::select(Deployment::COLUMNS, "")
        );
        self.read(|tx| {
            let row = query_one(tx, &sql, &[name.into()])?
                .ok_or_else(|| RegistryError::not_found("deployment", name))?;
            Deployment::read(tx, &row)
        })
    }

    /// Every deployment with the current alias table of its model, read in one consistent
    /// view: what a server polls to follow alias moves.
    pub fn deployments(&self) -> Result<Vec<Deployment>> {
        let sql = format!(
            "SELECT {} FROM deployments ORDER BY name",
            records::select(Deployment::COLUMNS, "")
        );
        self.read(|tx| {
            let rows = tx.query(&sql, &[])?;
            rows.iter().map(|r| Deployment::read(tx, r)).collect()
        })
    }
}
