//! Decoded inputs and requested outputs checked against a version's signature.

use pilothouse_runtime::{DType, OwnedTensor, Signature};

use super::*;

/// Checks the decoded inputs against the version's signature, strictly: names, datatypes,
/// ranks and fixed dimensions must match (no silent casts over the wire).
pub fn check_inputs(inputs: &[(String, OwnedTensor)], signature: &Signature) -> Parsed<()> {
    for (name, tensor) in inputs {
        let Some(spec) = signature.input(name) else {
            let known: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
            return bad(format!(
                "input '{name}': the model has no input of that name; its inputs are [{}]",
                known.join(", ")
            ));
        };
        if tensor.dtype() != spec.dtype {
            return bad(format!(
                "input '{name}': datatype {} does not match the model's {}",
                tensor.dtype().protocol_name(),
                spec.dtype.protocol_name()
            ));
        }
        let fits = tensor.shape.len() == spec.shape.len()
            && tensor
                .shape
                .iter()
                .zip(&spec.shape)
                .all(|(g, w)| w.is_none_or(|w| w < 0 || w as usize == *g));
        if !fits {
            return bad(format!(
                "input '{name}': shape {:?} does not match the model's {}",
                tensor.shape,
                spec.shape_string()
            ));
        }
        if tensor.shape.first() == Some(&0) {
            return bad(format!(
                "input '{name}': the batch is empty (shape {:?})",
                tensor.shape
            ));
        }
    }
    for spec in &signature.inputs {
        if !inputs.iter().any(|(n, _)| n == &spec.name) {
            return bad(format!(
                "input '{}' is missing: the model needs it ({} {})",
                spec.name,
                spec.dtype.protocol_name(),
                spec.shape_string()
            ));
        }
    }
    if inputs.len() > signature.inputs.len() {
        return bad("an input is given more than once");
    }
    Ok(())
}

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
