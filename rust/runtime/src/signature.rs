//! Model signatures: the names, element types and shapes of a model's inputs and outputs,
//! and how a table's columns map onto the inputs.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Result, RuntimeError};
use crate::tensor::Tensor;

/// Element types a pilothouse model can take or give: every ONNX tensor element type that
/// the Open Inference Protocol can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Float16,
    BFloat16,
    Float32,
    Float64,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Bool,
    /// ONNX strings, which are byte strings (text when they are UTF-8).
    String,
}

/// Each element type with its numpy-style name, its protocol name, its aliases and its
/// ONNX Runtime element type: one table, read by every conversion below.
macro_rules! dtype_table {
    ($m:ident) => {
        $m! {
            Float16 "float16" "FP16" ["half"] Float16;
            BFloat16 "bfloat16" "BF16" [] Bfloat16;
            Float32 "float32" "FP32" ["float"] Float32;
            Float64 "float64" "FP64" ["double"] Float64;
            Int8 "int8" "INT8" [] Int8;
            Int16 "int16" "INT16" [] Int16;
            Int32 "int32" "INT32" [] Int32;
            Int64 "int64" "INT64" [] Int64;
            UInt8 "uint8" "UINT8" [] Uint8;
            UInt16 "uint16" "UINT16" [] Uint16;
            UInt32 "uint32" "UINT32" [] Uint32;
            UInt64 "uint64" "UINT64" [] Uint64;
            Bool "bool" "BOOL" [] Bool;
            String "string" "BYTES" ["str"] String;
        }
    };
}

macro_rules! dtype_impl {
    ($($v:ident $name:literal $proto:literal [$($alias:literal),*] $ort:ident;)*) => {
        impl DType {
            /// Every element type, in a stable order.
            pub const ALL: &'static [DType] = &[$(DType::$v),*];

            pub fn name(self) -> &'static str {
                match self { $(DType::$v => $name,)* }
            }

            /// The Open Inference Protocol's name for the type (`FP32`, `INT64`, `BYTES`, ...).
            pub fn protocol_name(self) -> &'static str {
                match self { $(DType::$v => $proto,)* }
            }

            pub fn from_name(name: &str) -> Option<DType> {
                Some(match name {
                    $($name | $proto $(| $alias)* => DType::$v,)*
                    _ => return None,
                })
            }

            pub(crate) fn to_ort(self) -> ort::value::TensorElementType {
                use ort::value::TensorElementType as T;
                match self { $(DType::$v => T::$ort,)* }
            }

            pub(crate) fn from_ort(ty: ort::value::TensorElementType) -> Option<DType> {
                use ort::value::TensorElementType as T;
                Some(match ty {
                    $(T::$ort => DType::$v,)*
                    _ => return None,
                })
            }
        }
    };
}
dtype_table!(dtype_impl);

impl DType {
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::Float16 | DType::BFloat16 | DType::Float32 | DType::Float64
        )
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DType::Int8
                | DType::Int16
                | DType::Int32
                | DType::Int64
                | DType::UInt8
                | DType::UInt16
                | DType::UInt32
                | DType::UInt64
        )
    }

    /// Bytes per element (0 for strings, whose elements vary).
    pub fn width(self) -> usize {
        match self {
            DType::Int8 | DType::UInt8 | DType::Bool => 1,
            DType::Float16 | DType::BFloat16 | DType::Int16 | DType::UInt16 => 2,
            DType::Float32 | DType::Int32 | DType::UInt32 => 4,
            DType::Float64 | DType::Int64 | DType::UInt64 => 8,
            DType::String => 0,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Class labels of a classifier's probability output.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    Int(Vec<i64>),
    String(Vec<String>),
}

impl Labels {
    pub fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an output holds before pilothouse converts it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    /// A plain tensor.
    Tensor,
    /// A sequence of maps from class label to probability (ONNX-ML `ZipMap`), returned as a
    /// `[rows, classes]` float32 matrix whose columns follow `labels`.
    ZipMap { labels: Option<Labels> },
}

/// One input or output: name, element type and shape (`None` for a dynamic dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Option<i64>>,
    pub kind: OutputKind,
}

impl TensorSpec {
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or_else(|| "?".to_string(), |v| v.to_string()))
            .collect();
        format!("[{}]", dims.join(", "))
    }

    /// The fixed feature count of a `[rows, features]` input, if the model fixes it.
    pub fn feature_count(&self) -> Option<usize> {
        match self.shape.as_slice() {
            [_, Some(k)] if *k >= 0 => Some(*k as usize),
            _ => None,
        }
    }
}

/// A model's full signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The ONNX file's `metadata_props`.
    pub metadata: BTreeMap<String, String>,
    /// Feature names in the order the model expects them, when recorded with the model
    /// (metadata key `pilothouse.feature_names`, a JSON list of strings).
    pub feature_names: Option<Vec<String>>,
    /// Opset versions by domain ("" is the default ONNX domain).
    pub opsets: BTreeMap<String, i64>,
}

pub const FEATURE_NAMES_KEY: &str = "pilothouse.feature_names";

/// How closely inputs must match a signature ([`Signature::check_inputs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// Over the wire: the datatype, the rank and every fixed dimension exactly as the model
    /// declares them (no silent casts), and a batch that is not empty. Types are named as
    /// the inference protocol names them.
    Exact,
    /// In process: numbers cast and columns reshaped where no surprise can come of it
    /// ([`Tensor::conform`]).
    Conform,
}

/// An input checked as [`Matching::Exact`] says.
fn exactly<'a>(tensor: Tensor<'a>, spec: &TensorSpec) -> Result<Tensor<'a>> {
    let name = spec.name.as_str();
    if tensor.dtype() != spec.dtype {
        return Err(RuntimeError::input(
            name,
            format!(
                "datatype {} does not match the model's {}",
                tensor.dtype().protocol_name(),
                spec.dtype.protocol_name()
            ),
        ));
    }
    let fits = tensor.shape.len() == spec.shape.len()
        && tensor
            .shape
            .iter()
            .zip(&spec.shape)
            .all(|(g, w)| w.is_none_or(|w| w < 0 || w as usize == *g));
    if !fits {
        return Err(RuntimeError::input(
            name,
            format!(
                "shape {:?} does not match the model's {}",
                tensor.shape,
                spec.shape_string()
            ),
        ));
    }
    if tensor.shape.first() == Some(&0) {
        return Err(RuntimeError::input(
            name,
            format!("the batch is empty (shape {:?})", tensor.shape),
        ));
    }
    Ok(tensor)
}

/// How the columns of a table feed the model's inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnPlan {
    /// Stack these columns, in this order, into the model's single 2-D input.
    Stack { input: String, columns: Vec<String> },
    /// Feed each input from the column of the same name.
    ByName { inputs: Vec<String> },
}

impl Signature {
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }

    /// The one check of inputs against this signature, for in-process predict and the server
    /// alike: every input named once, none missing, each fitting its spec as `matching` says.
    /// The tensors come back in the model's input order.
    pub fn check_inputs<'a>(
        &self,
        inputs: Vec<(String, Tensor<'a>)>,
        matching: Matching,
    ) -> Result<Vec<Tensor<'a>>> {
        let type_name = |d: DType| match matching {
            Matching::Exact => d.protocol_name(),
            Matching::Conform => d.name(),
        };
        let specs = &self.inputs;
        let check = |tensor: Tensor<'a>, spec: &TensorSpec| match matching {
            Matching::Conform => tensor.conform(spec),
            Matching::Exact => exactly(tensor, spec),
        };
        // The usual case, every input given once in the model's order: no reordering.
        let in_order =
            inputs.len() == specs.len() && inputs.iter().zip(specs).all(|((n, _), s)| *n == s.name);
        if in_order {
            let tensors = inputs
                .into_iter()
                .zip(specs)
                .map(|((_, t), spec)| check(t, spec))
                .collect::<Result<Vec<_>>>()?;
            return self.same_rows(tensors, matching);
        }
        let mut slots: Vec<Option<Tensor<'a>>> = (0..specs.len()).map(|_| None).collect();
        for (name, tensor) in inputs {
            let Some(pos) = specs.iter().position(|s| s.name == name) else {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(RuntimeError::input(
                    &name,
                    format!(
                        "the model has no input of that name; its inputs are [{}]",
                        known.join(", ")
                    ),
                ));
            };
            if slots[pos].is_some() {
                return Err(RuntimeError::input(&name, "given more than once"));
            }
            let spec = &specs[pos];
            slots[pos] = Some(check(tensor, spec)?);
        }
        let missing: Vec<&TensorSpec> = specs
            .iter()
            .zip(&slots)
            .filter(|(_, t)| t.is_none())
            .map(|(s, _)| s)
            .collect();
        if let Some(first) = missing.first() {
            let names: Vec<&str> = missing.iter().map(|s| s.name.as_str()).collect();
            return Err(RuntimeError::input(
                names.join(", "),
                format!(
                    "missing: the model needs {} ({} {})",
                    names.join(", "),
                    type_name(first.dtype),
                    first.shape_string()
                ),
            ));
        }
        let tensors: Vec<Tensor<'a>> = slots.into_iter().flatten().collect();
        self.same_rows(tensors, matching)
    }

    /// Over the wire, the inputs must agree on the number of rows.
    fn same_rows<'a>(
        &self,
        tensors: Vec<Tensor<'a>>,
        matching: Matching,
    ) -> Result<Vec<Tensor<'a>>> {
        if matching == Matching::Exact {
            let rows = |t: &Tensor<'_>| t.shape.first().copied().unwrap_or(1);
            if let Some(first) = tensors.first() {
                if tensors.iter().any(|t| rows(t) != rows(first)) {
                    return Err(RuntimeError::input(
                        self.input_names(),
                        "the inputs disagree on the number of rows (their first dimension)",
                    ));
                }
            }
        }
        Ok(tensors)
    }

    fn input_names(&self) -> String {
        self.inputs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Decides how a table with `columns` feeds this model.
    ///
    /// A model with one input per feature (as skl2onnx makes for mixed-type pipelines) takes
    /// its inputs by column name. A model with a single input takes the columns stacked, in the
    /// recorded feature order when there is one, else in the table's order, with the count
    /// checked against the model.
    pub fn plan_columns(&self, columns: &[String]) -> Result<ColumnPlan> {
        if columns.is_empty() {
            return Err(RuntimeError::input(
                "<table>",
                "the table has no columns".to_string(),
            ));
        }
        let all_named = self
            .inputs
            .iter()
            .all(|spec| columns.iter().any(|c| c == &spec.name));
        if all_named && (self.inputs.len() > 1 || columns.len() == 1) {
            return Ok(ColumnPlan::ByName {
                inputs: self.inputs.iter().map(|s| s.name.clone()).collect(),
            });
        }
        if self.inputs.len() != 1 {
            let missing: Vec<&str> = self
                .inputs
                .iter()
                .filter(|s| !columns.contains(&s.name))
                .map(|s| s.name.as_str())
                .collect();
            return Err(RuntimeError::input(
                missing.join(", "),
                format!(
                    "the model takes one input per feature ({}), but the table has no column named {}; \
                     the table has columns [{}]",
                    self.input_names(),
                    missing.join(", "),
                    columns.join(", ")
                ),
            ));
        }
        let spec = &self.inputs[0];
        let ordered: Vec<String> = match &self.feature_names {
            Some(names) => {
                let missing: Vec<&str> = names
                    .iter()
                    .filter(|n| !columns.contains(n))
                    .map(|n| n.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(RuntimeError::input(
                        &spec.name,
                        format!(
                            "the model was trained on columns [{}]; the table lacks [{}]",
                            names.join(", "),
                            missing.join(", ")
                        ),
                    ));
                }
                names.clone()
            }
            None => columns.to_vec(),
        };
        if let Some(k) = spec.feature_count() {
            if ordered.len() != k {
                return Err(RuntimeError::input(
                    &spec.name,
                    format!(
                        "the table has {} columns but the model expects {} features (shape {})",
                        ordered.len(),
                        k,
                        spec.shape_string()
                    ),
                ));
            }
        }
        Ok(ColumnPlan::Stack {
            input: spec.name.clone(),
            columns: ordered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, dtype: DType, shape: Vec<Option<i64>>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape,
            kind: OutputKind::Tensor,
        }
    }

    fn signature(inputs: Vec<TensorSpec>, feature_names: Option<Vec<&str>>) -> Signature {
        Signature {
            inputs,
            outputs: vec![],
            metadata: BTreeMap::new(),
            feature_names: feature_names.map(|v| v.into_iter().map(String::from).collect()),
            opsets: BTreeMap::new(),
        }
    }

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_input_per_feature_goes_by_name() {
        let sig = signature(
            vec![
                spec("age", DType::Float32, vec![None, Some(1)]),
                spec("city", DType::String, vec![None, Some(1)]),
            ],
            None,
        );
        let plan = sig.plan_columns(&cols(&["city", "age", "extra"])).unwrap();
        assert_eq!(
            plan,
            ColumnPlan::ByName {
                inputs: cols(&["age", "city"])
            }
        );
        let err = sig.plan_columns(&cols(&["age"])).unwrap_err().to_string();
        assert!(err.contains("city"), "{err}");
    }

    #[test]
    fn single_input_stacks_in_recorded_order_with_count_checked() {
        let sig = signature(
            vec![spec("X", DType::Float32, vec![None, Some(3)])],
            Some(vec!["c", "a", "b"]),
        );
        let plan = sig.plan_columns(&cols(&["a", "b", "c"])).unwrap();
        assert_eq!(
            plan,
            ColumnPlan::Stack {
                input: "X".into(),
                columns: cols(&["c", "a", "b"])
            }
        );
        let err = sig
            .plan_columns(&cols(&["a", "b"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks [c]"), "{err}");

        let unnamed = signature(vec![spec("X", DType::Float32, vec![None, Some(3)])], None);
        let err = unnamed
            .plan_columns(&cols(&["a", "b"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 columns") && err.contains("expects 3"),
            "{err}"
        );
    }

    #[test]
    fn one_input_check_exact_over_the_wire_and_conforming_in_process() {
        use crate::tensor::TensorData;
        use std::borrow::Cow;
        let sig = signature(
            vec![
                spec("a", DType::Float32, vec![None, Some(2)]),
                spec("b", DType::Int64, vec![None]),
            ],
            None,
        );
        let a = |rows: usize| {
            Tensor::new(
                vec![rows, 2],
                TensorData::Float64(Cow::Owned(vec![1.0; rows * 2])),
            )
            .unwrap()
        };
        let b = |rows: usize| {
            Tensor::new(vec![rows], TensorData::Int64(Cow::Owned(vec![1; rows]))).unwrap()
        };
        let err = |inputs, m| sig.check_inputs(inputs, m).unwrap_err().to_string();
        // In process: float64 becomes float32, and the order is the model's.
        let ok = sig
            .check_inputs(
                vec![("b".into(), b(3)), ("a".into(), a(3))],
                Matching::Conform,
            )
            .unwrap();
        assert_eq!(ok[0].dtype(), DType::Float32);
        assert_eq!(ok[1].dtype(), DType::Int64);
        // Over the wire: no casts, and the names of the protocol.
        let e = err(
            vec![("a".into(), a(3)), ("b".into(), b(3))],
            Matching::Exact,
        );
        assert_eq!(
            e,
            "input 'a': datatype FP64 does not match the model's FP32"
        );
        let e = err(
            vec![(
                "a".into(),
                Tensor::new(vec![1, 2], TensorData::Float32(Cow::Owned(vec![0.0; 2]))).unwrap(),
            )],
            Matching::Exact,
        );
        assert_eq!(e, "input 'b': missing: the model needs b (INT64 [?])");
        let e = err(vec![("a".into(), a(3))], Matching::Conform);
        assert_eq!(e, "input 'b': missing: the model needs b (int64 [?])");
        let e = err(
            vec![("b".into(), b(1)), ("b".into(), b(1))],
            Matching::Exact,
        );
        assert_eq!(e, "input 'b': given more than once");
        let e = err(vec![("c".into(), b(1))], Matching::Exact);
        assert!(
            e.contains("no input of that name; its inputs are [a, b]"),
            "{e}"
        );
        let f32s = |rows: usize| {
            Tensor::new(
                vec![rows, 2],
                TensorData::Float32(Cow::Owned(vec![1.0; rows * 2])),
            )
            .unwrap()
        };
        let e = err(
            vec![("a".into(), f32s(2)), ("b".into(), b(3))],
            Matching::Exact,
        );
        assert!(e.contains("disagree on the number of rows"), "{e}");
        let e = err(
            vec![("a".into(), f32s(0)), ("b".into(), b(0))],
            Matching::Exact,
        );
        assert!(e.contains("the batch is empty"), "{e}");
        assert!(sig
            .check_inputs(
                vec![("a".into(), f32s(2)), ("b".into(), b(2))],
                Matching::Exact
            )
            .is_ok());
    }
}
