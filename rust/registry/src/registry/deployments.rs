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

    pub(super) fn deployment_json(tx: &mut dyn Tx, r: &Row) -> Result<Json> {
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
}
