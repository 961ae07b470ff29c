//! A version's lineage: its run, dataset and parent chain, and the versions retrained from it.

use super::*;

impl Registry {
    // -- lineage ----------------------------------------------------------------------------

    /// Upstream (run with params, metrics, code and environment; dataset with the other
    /// versions trained on it; the parent chain) and downstream (versions retrained from this
    /// one) of a version.
    pub fn lineage(&self, model: &str, version: i64) -> Result<Lineage> {
        self.read(|tx| {
            let row = Self::version_row(tx, model, version)?;
            let record = Version::read(tx, &row)?;
            let run = match &record.run_id {
                Some(id) => Some(Self::run(tx, id)?),
                None => None,
            };
            let dataset = match &record.dataset {
                Some(fingerprint) => DatasetInfo::read(tx, fingerprint)?,
                None => None,
            };
            let mut parents: Vec<Version> = Vec::new();
            let mut cursor = record.parent.clone();
            while let Some(parent) = cursor {
                if parents.len() > 1000 {
                    break;
                }
                let prow = Self::version_row(tx, &parent.model, parent.version)?;
                let p = Version::read(tx, &prow)?;
                cursor = p.parent.clone();
                parents.push(p);
            }
            let children = records::children_of(tx, model, version)?;
            Ok(Lineage {
                version: record,
                run,
                dataset,
                parents,
                children,
            })
        })
    }
}
