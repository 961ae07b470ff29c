//! Requested outputs checked against a version's signature (the inputs are checked by the
//! runtime's `Signature::check_inputs`, as in-process predict checks them).

use pilothouse_runtime::{DType, Signature};

use super::*;

/// Checks requested output names against the signature (and that a classification asks
/// for a numeric output).
pub fn check_outputs(
    requested: &Option<Vec<RequestedOutput>>,
    signature: &Signature,
) -> Parsed<()> {
    for r in requested.iter().flatten() {
        let Some(spec) = signature.outputs.iter().find(|s| s.name == r.name) else {
            let known: Vec<&str> = signature.outputs.iter().map(|s| s.name.as_str()).collect();
            return bad(format!(
                "output '{}': the model has no output of that name; its outputs are [{}]",
                r.name,
                known.join(", ")
            ));
        };
        if r.classification.is_some() && matches!(spec.dtype, DType::Bool | DType::String) {
            return bad(format!(
                "output '{}': classification needs numbers (scores or probabilities), but this output is {}",
                r.name,
                spec.dtype.protocol_name()
            ));
        }
    }
    Ok(())
}
