//! What monitoring knows of one loaded version: how its tensors become named feature
//! columns, and its reference profiles with the data-quality checks they imply.

use std::sync::Arc;

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
    /// The profile of the training inputs and of the model's outputs on them.
    pub inputs: Option<Profile>,
    pub outputs: Option<Profile>,
    pub expectations: Expectations,
}

impl Watch {
    /// The watch of `model` version `version`: its reference read from the registry. A
    /// reference that is missing or unreadable leaves monitoring without drift and quality
    /// (profiles and health are still kept), and says so in the log.
    pub fn load(registry: &Registry, model: &str, version: i64, signature: &Signature) -> Watch {
        let mut watch = Watch {
            feature_names: signature.feature_names.clone(),
            input_names: Arc::new(signature.inputs.iter().map(|s| s.name.clone()).collect()),
            output_names: Arc::new(signature.outputs.iter().map(|s| s.name.clone()).collect()),
            ..Watch::default()
        };
        let reference = match registry.reference(model, version) {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::info!(event = "no_reference", model, version, "no reference stored with this version: windows are profiled, but drift and quality need one (log_model(training_data=...) or ph.set_reference)");
                return watch;
            }
            Err(e) => {
                tracing::warn!(event = "reference_unreadable", model, version, error = %e, "cannot read the reference; monitoring without it");
                return watch;
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
        watch.inputs = parse(reference.inputs, "inputs");
        watch.outputs = parse(reference.outputs, "outputs");
        if let Some(p) = &watch.inputs {
            watch.expectations = Expectations::from_profile(p);
        }
        watch
    }

    /// Empty buffers for this version's inputs and outputs (labels as categories).
    pub fn buffers(&self) -> (FeatureBuffer, FeatureBuffer) {
        (
            FeatureBuffer::new(
                self.input_names.to_vec(),
                self.feature_names.clone(),
                Values::AsIs,
            ),
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
        if self.expectations.is_empty() {
            return Quality::default();
        }
        self.input_table(&[inputs])
            .map(|t| self.expectations.check(&t))
            .unwrap_or_default()
    }
}
