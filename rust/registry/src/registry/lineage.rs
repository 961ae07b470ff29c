//! A version's lineage: its run, dataset and parents, as nodes and edges.

use serde_json::{json, Value as Json};

use super::*;

impl Registry {
    // -- lineage ----------------------------------------------------------------------------

    /// Upstream (run, params, metrics, dataset, code, environment, parent chain) and
    /// downstream (versions retrained from this one, other versions of the same dataset,
    /// deployments) of a version.
    pub fn lineage(&self, model: &str, version: i64) -> Result<Json> {
        self.read(|tx| {
            let row = Self::version_row(tx, model, version)?;
            let record = Version::read(tx, &row)?.to_json();
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
                parents.push(Version::read(tx, &prow)?.to_json());
            }
            let children: Vec<Json> = tx
                .query("SELECT model, version FROM versions WHERE parent_model = ? AND parent_version = ? ORDER BY model, version", &[model.into(), Value::Int(version)])?
                .iter()
                .map(|r| json!(format!("models:/{}/{}", r[0].as_str().unwrap_or(""), r[1].as_i64().unwrap_or(0))))
                .collect();
            Ok(json!({"version": record, "run": run, "dataset": dataset, "parents": parents, "children": children, "deployments": []}))
        })
    }
}
