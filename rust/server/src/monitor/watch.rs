//! What monitoring knows of one loaded version: how its tensors become named feature
//! columns, and its reference profiles with the data-quality checks they imply.

use std::sync::Arc;

use arc_swap::ArcSwap;

use pilothouse_drift::Profile;
use pilothouse_monitor::{Expectations, Quality};
use pilothouse_registry::Registry;
use pilothouse_runtime::{feature_table, FeatureBuffer, Signature, Tensor, Values};

#[derive(Default)]
pub struct Watch {
    /// The names of a 2-D input's columns, as the model was trained with them.
    pub feature_names: Option<Vec<String>>,
    pub input_names: Arc<Vec<String>>,
    pub output_names: Arc<Vec<String>>,
    /// The version's reference, replaced in place when `ph.set_reference` changes it.
    pub reference: ArcSwap<Referenced>,
}

/// A version's reference as monitoring uses it.
#[derive(Default)]
pub struct Referenced {
    /// The profile of the training inputs and of the model's outputs on them.
    pub inputs: Option<Profile>,
    pub outputs: Option<Profile>,
    pub expectations: Expectations,
    /// When the stored reference was last set (None: there is none).
    pub updated_at: Option<i64>,
}

impl Referenced {
    /// The reference of `model` version `version` read from the registry. A reference that
    /// is missing or unreadable leaves monitoring without drift and quality (profiles and
    /// health are still kept), and says so in the log.
    pub fn load(registry: &Registry, model: &str, version: i64) -> Referenced {
        let reference = match registry.reference(model, version) {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::info!(event = "no_reference", model, version, "no reference stored with this version: windows are profiled, but drift and quality need one (log_model(training_data=...) or ph.set_reference)");
                return Referenced::default();
            }
            Err(e) => {
                tracing::warn!(event = "reference_unreadable", model, version, error = %e, "cannot read the reference; monitoring without it");
                return Referenced::default();
            }
        };
        let parse = |bytes: Option<Vec<u8>>, side: &str| {
            bytes.and_then(|b| match Profile::from_bytes(&b) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(event = "reference_unreadable", model, version, side, error = %e, "the stored reference profile cannot be read");
                    None
                }
            })
        };
        let inputs = parse(reference.inputs, "inputs");
        let expectations = inputs
            .as_ref()
            .map(Expectations::from_profile)
            .unwrap_or_default();
        Referenced {
            inputs,
            outputs: parse(reference.outputs, "outputs"),
            expectations,
            updated_at: reference.updated_at,
        }
    }
}

impl Watch {
    /// The watch of `model` version `version`: its reference read from the registry.
    pub fn load(registry: &Registry, model: &str, version: i64, signature: &Signature) -> Watch {
        Watch {
            feature_names: signature.feature_names.clone(),
            input_names: Arc::new(signature.inputs.iter().map(|s| s.name.clone()).collect()),
            output_names: Arc::new(signature.outputs.iter().map(|s| s.name.clone()).collect()),
            reference: ArcSwap::from_pointee(Referenced::load(registry, model, version)),
        }
    }

    /// Reads the reference again when it was set after the one held (`updated_at` is the
    /// stored one's time); true when it was replaced.
    pub fn refresh(
        &self,
        registry: &Registry,
        model: &str,
        version: i64,
        updated_at: Option<i64>,
    ) -> bool {
        if self.reference.load().updated_at == updated_at {
            return false;
        }
        self.reference
            .store(Arc::new(Referenced::load(registry, model, version)));
        tracing::info!(
            event = "reference_reloaded",
            model,
            version,
            "the version's reference changed; drift and quality use the new one"
        );
        true
    }

    /// Empty buffers for this version's inputs (keeping nothing of the `private` ones: those
    /// the deployment redacts or hashes in its log) and outputs (labels as categories).
    pub fn buffers(&self, private: &[String]) -> (FeatureBuffer, FeatureBuffer) {
        (
            FeatureBuffer::new(
                self.input_names.to_vec(),
                self.feature_names.clone(),
                Values::AsIs,
            )
            .without(private),
            FeatureBuffer::new(self.output_names.to_vec(), None, Values::Labels),
        )
    }

    /// A request's inputs as feature columns (what is profiled and checked).
    pub fn input_table(&self, parts: &[&[Tensor<'_>]]) -> Option<arrow_array::RecordBatch> {
        feature_table(
            &self.input_names,
            parts,
            self.feature_names.as_deref(),
            Values::AsIs,
        )
        .ok()
    }

    /// The data-quality failures of one request's inputs (empty without a reference).
    pub fn check(&self, inputs: &[Tensor<'_>]) -> Quality {
        let reference = self.reference.load();
        if reference.expectations.is_empty() {
            return Quality::default();
        }
        self.input_table(&[inputs])
            .map(|t| reference.expectations.check(&t))
            .unwrap_or_default()
    }
}
