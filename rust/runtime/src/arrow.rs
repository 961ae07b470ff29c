//! Arrow <-> tensors: table columns become model inputs (by name, or stacked into one 2-D
//! input), and output tensors become Arrow arrays for logging and IPC.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, DictionaryArray, FixedSizeListArray, Float16Array,
    Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array, RecordBatch,
    StringArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow_schema::{DataType, Field};

use crate::error::{Result, RuntimeError};
use crate::signature::{ColumnPlan, DType, Signature};
use crate::tensor::{Scalar, Tensor, TensorData};

/// One column of a table as 1-D tensor data, with its count of missing values (already
/// replaced by NaN in float data).
#[derive(Debug, Clone)]
pub struct Column<'a> {
    pub name: String,
    pub data: TensorData<'a>,
    pub nulls: usize,
}

fn unsupported(name: &str, ty: &DataType) -> RuntimeError {
    RuntimeError::input(
        name,
        format!("column type {ty} is not supported; use float, integer, boolean or string columns"),
    )
}

fn floats<U>(parts: &[&ArrayRef], f: impl Fn(&dyn Array, usize) -> U) -> Vec<U> {
    let mut out = Vec::with_capacity(parts.iter().map(|a| a.len()).sum());
    for a in parts {
        for i in 0..a.len() {
            out.push(f(a.as_ref(), i));
        }
    }
    out
}

/// Converts one column made of `parts` (one array per record batch). A single part with no
/// nulls in a type the model can take as is is borrowed, not copied.
fn column<'a>(name: &str, parts: &[&'a ArrayRef]) -> Result<Column<'a>> {
    let ty = parts
        .first()
        .map(|a| a.data_type().clone())
        .unwrap_or(DataType::Float64);
    let nulls: usize = parts.iter().map(|a| a.null_count()).sum();
    macro_rules! primitive {
        ($arrow:ty, $variant:ident, $rust:ty) => {{
            if parts.len() == 1 && nulls == 0 {
                TensorData::$variant(Cow::Borrowed(
                    parts[0].as_primitive::<$arrow>().values().as_ref(),
                ))
            } else {
                let mut out: Vec<$rust> = Vec::new();
                for a in parts {
                    out.extend_from_slice(a.as_primitive::<$arrow>().values().as_ref());
                }
                TensorData::$variant(Cow::Owned(out))
            }
        }};
    }
    let data = match &ty {
        DataType::Float32 if nulls == 0 => primitive!(Float32Type, Float32, f32),
        DataType::Float64 if nulls == 0 => primitive!(Float64Type, Float64, f64),
        DataType::Float32 => TensorData::Float32(Cow::Owned(floats::<f32>(parts, |a, i| {
            if a.is_null(i) {
                f32::NAN
            } else {
                a.as_primitive::<Float32Type>().value(i)
            }
        }))),
        DataType::Float64 => TensorData::Float64(Cow::Owned(floats::<f64>(parts, |a, i| {
            if a.is_null(i) {
                f64::NAN
            } else {
                a.as_primitive::<Float64Type>().value(i)
            }
        }))),
        // Integers with missing values become floats with NaN, as pandas does.
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
            if nulls > 0 =>
        {
            TensorData::Float64(Cow::Owned(floats::<f64>(parts, |a, i| {
                if a.is_null(i) {
                    return f64::NAN;
                }
                match a.data_type() {
                    DataType::Int8 => f64::from(a.as_primitive::<Int8Type>().value(i)),
                    DataType::Int16 => f64::from(a.as_primitive::<Int16Type>().value(i)),
                    DataType::Int32 => f64::from(a.as_primitive::<Int32Type>().value(i)),
                    DataType::Int64 => a.as_primitive::<Int64Type>().value(i) as f64,
                    DataType::UInt8 => f64::from(a.as_primitive::<UInt8Type>().value(i)),
                    DataType::UInt16 => f64::from(a.as_primitive::<UInt16Type>().value(i)),
                    DataType::UInt32 => f64::from(a.as_primitive::<UInt32Type>().value(i)),
                    _ => a.as_primitive::<UInt64Type>().value(i) as f64,
                }
            })))
        }
        DataType::Float16 if nulls == 0 => primitive!(Float16Type, Float16, half::f16),
        DataType::Float16 => TensorData::Float16(Cow::Owned(floats::<half::f16>(parts, |a, i| {
            if a.is_null(i) {
                half::f16::NAN
            } else {
                a.as_primitive::<Float16Type>().value(i)
            }
        }))),
        DataType::Int8 => primitive!(Int8Type, Int8, i8),
        DataType::Int16 => primitive!(Int16Type, Int16, i16),
        DataType::Int32 => primitive!(Int32Type, Int32, i32),
        DataType::Int64 => primitive!(Int64Type, Int64, i64),
        DataType::UInt8 => primitive!(UInt8Type, UInt8, u8),
        DataType::UInt16 => primitive!(UInt16Type, UInt16, u16),
        DataType::UInt32 => primitive!(UInt32Type, UInt32, u32),
        DataType::UInt64 => primitive!(UInt64Type, UInt64, u64),
        DataType::Boolean => {
            let mut out = Vec::new();
            for a in parts {
                out.extend(a.as_boolean().iter().map(|v| v.unwrap_or(false)));
            }
            TensorData::Bool(Cow::Owned(out))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _) => {
            let mut out = Vec::new();
            for a in parts {
                strings_into(name, a, &mut out)?;
            }
            TensorData::String(Cow::Owned(out))
        }
        other => return Err(unsupported(name, other)),
    };
    Ok(Column {
        name: name.to_string(),
        data,
        nulls,
    })
}

fn strings_into(name: &str, a: &ArrayRef, out: &mut Vec<String>) -> Result<()> {
    let text = |v: Option<&str>| v.unwrap_or_default().to_string();
    match a.data_type() {
        DataType::Utf8 => out.extend(a.as_string::<i32>().iter().map(text)),
        DataType::LargeUtf8 => out.extend(a.as_string::<i64>().iter().map(text)),
        DataType::Utf8View => out.extend(a.as_string_view().iter().map(text)),
        DataType::Dictionary(_, value)
            if matches!(
                value.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            let dict = a.as_any_dictionary();
            let mut values = Vec::new();
            strings_into(name, dict.values(), &mut values)?;
            let keys = dict.normalized_keys();
            for (i, k) in keys.iter().enumerate() {
                out.push(if a.is_null(i) {
                    String::new()
                } else {
                    values[*k].clone()
                });
            }
        }
        other => return Err(unsupported(name, other)),
    }
    Ok(())
}

/// Reads every column of `batches` (one table, possibly in several batches).
pub fn record_batches_to_columns(batches: &[RecordBatch]) -> Result<Vec<Column<'_>>> {
    let Some(first) = batches.first() else {
        return Err(RuntimeError::input(
            "<table>",
            "the table has no rows (no record batches)",
        ));
    };
    let schema = first.schema();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let parts: Vec<&ArrayRef> = batches.iter().map(|b| b.column(i)).collect();
        if parts.iter().any(|p| p.data_type() != field.data_type()) {
            return Err(RuntimeError::input(
                field.name(),
                "the record batches disagree on this column's type",
            ));
        }
        columns.push(column(field.name(), &parts)?);
    }
    Ok(columns)
}

fn check_nulls(column: &Column<'_>, input: &str, target: DType) -> Result<()> {
    if column.nulls > 0 && !target.is_float() {
        return Err(RuntimeError::input(
            input,
            format!(
                "column '{}' has {} missing values, but the model's input is {target}, which cannot hold them",
                column.name, column.nulls
            ),
        ));
    }
    Ok(())
}

/// Maps a table's columns onto the model's inputs, following [`Signature::plan_columns`].
pub fn columns_to_inputs<'a>(
    columns: Vec<Column<'a>>,
    signature: &Signature,
) -> Result<Vec<(String, Tensor<'a>)>> {
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let rows = columns.first().map_or(0, |c| c.data.len());
    match signature.plan_columns(&names)? {
        ColumnPlan::ByName { inputs } => {
            let mut by_name: std::collections::HashMap<String, Column<'a>> =
                columns.into_iter().map(|c| (c.name.clone(), c)).collect();
            inputs
                .into_iter()
                .map(|name| {
                    let column = by_name.remove(&name).expect("planned from these columns");
                    let spec = signature.input(&name).expect("planned from the signature");
                    check_nulls(&column, &name, spec.dtype)?;
                    let n = column.data.len();
                    Ok((
                        name,
                        Tensor {
                            shape: vec![n],
                            data: column.data,
                        },
                    ))
                })
                .collect()
        }
        ColumnPlan::Stack {
            input,
            columns: order,
        } => {
            let spec = signature.input(&input).expect("planned from the signature");
            let mut by_name: std::collections::HashMap<String, Column<'a>> =
                columns.into_iter().map(|c| (c.name.clone(), c)).collect();
            let mut cast = Vec::with_capacity(order.len());
            for name in &order {
                let column = by_name.remove(name).expect("planned from these columns");
                check_nulls(&column, &input, spec.dtype)?;
                let data = column
                    .data
                    .cast(&input, spec.dtype)
                    .map_err(|e| RuntimeError::input(&input, format!("column '{name}': {e}")))?;
                cast.push(data);
            }
            let k = cast.len();
            let data = interleave(&cast, rows);
            Ok(vec![(
                input,
                Tensor {
                    shape: vec![rows, k],
                    data,
                },
            )])
        }
    }
}

/// Row-major `[rows, columns]` from columns of one type.
fn interleave(columns: &[TensorData<'_>], rows: usize) -> TensorData<'static> {
    macro_rules! go {
        ($variant:ident) => {{
            let cols: Vec<&[_]> = columns
                .iter()
                .map(|c| match c {
                    TensorData::$variant(v) => &v[..],
                    _ => unreachable!("cast to one type"),
                })
                .collect();
            let mut out = Vec::with_capacity(rows * cols.len());
            for r in 0..rows {
                for c in &cols {
                    out.push(c[r].clone());
                }
            }
            TensorData::$variant(Cow::Owned(out))
        }};
    }
    macro_rules! by_first {
        ($($variant:ident),*) => {
            match columns.first() {
                $(Some(TensorData::$variant(_)) => go!($variant),)*
                None => TensorData::Float32(Cow::Owned(Vec::new())),
            }
        };
    }
    by_first!(
        Float16, BFloat16, Float32, Float64, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32,
        UInt64, Bool, String, Bytes
    )
}

/// An output tensor as one Arrow array with a row per leading index: 1-D tensors become
/// primitive arrays; higher ranks become fixed-size lists of the flattened inner dimensions.
pub fn tensor_to_arrow(tensor: &Tensor<'_>) -> Result<ArrayRef> {
    let values: ArrayRef = match &tensor.data {
        TensorData::Float16(v) => Arc::new(Float16Array::from(v.to_vec())),
        // Arrow has no bfloat16: widened exactly to float32.
        TensorData::BFloat16(v) => Arc::new(Float32Array::from_iter_values(
            v.iter().map(|x| f32::from(*x)),
        )),
        TensorData::Float32(v) => Arc::new(Float32Array::from(v.to_vec())),
        TensorData::Float64(v) => Arc::new(Float64Array::from(v.to_vec())),
        TensorData::Int8(v) => Arc::new(Int8Array::from(v.to_vec())),
        TensorData::Int16(v) => Arc::new(Int16Array::from(v.to_vec())),
        TensorData::Int32(v) => Arc::new(Int32Array::from(v.to_vec())),
        TensorData::Int64(v) => Arc::new(Int64Array::from(v.to_vec())),
        TensorData::UInt8(v) => Arc::new(UInt8Array::from(v.to_vec())),
        TensorData::UInt16(v) => Arc::new(UInt16Array::from(v.to_vec())),
        TensorData::UInt32(v) => Arc::new(UInt32Array::from(v.to_vec())),
        TensorData::UInt64(v) => Arc::new(UInt64Array::from(v.to_vec())),
        TensorData::Bool(v) => Arc::new(BooleanArray::from(v.to_vec())),
        TensorData::String(v) => Arc::new(StringArray::from_iter_values(v.iter())),
        TensorData::Bytes(v) => Arc::new(BinaryArray::from_iter_values(v.iter())),
    };
    if tensor.shape.len() <= 1 {
        return Ok(values);
    }
    let inner: usize = tensor.shape[1..].iter().product();
    let field = Arc::new(Field::new("item", values.data_type().clone(), false));
    let list = FixedSizeListArray::try_new(field, inner as i32, values, None)
        .map_err(|e| RuntimeError::Inference(e.to_string()))?;
    Ok(Arc::new(list))
}

/// How a tensor's values become table columns in [`feature_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// As they are: numbers stay numbers (inputs, probabilities, regression values).
    AsIs,
    /// Integer and boolean values become text, so that they are profiled as categories
    /// (class labels).
    Labels,
}

/// The tensors of many requests as one table with a column per feature: what monitoring
/// profiles. `parts` holds each request's tensors in the order of `names`; see
/// [`FeatureBuffer`] for how tensors become columns.
pub fn feature_table(
    names: &[String],
    parts: &[&[Tensor<'_>]],
    feature_names: Option<&[String]>,
    values: Values,
) -> Result<RecordBatch> {
    let mut buffer = FeatureBuffer::new(
        names.to_vec(),
        feature_names.map(<[String]>::to_vec),
        values,
    );
    for p in parts {
        buffer.push(p)?;
    }
    Ok(buffer
        .take()?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::new(arrow_schema::Schema::empty()))))
}

/// How one tensor of a request becomes columns.
#[derive(Debug, Clone)]
struct Slot {
    /// Columns it spreads over (the product of its dimensions after the first).
    width: usize,
    /// Kept as text (strings, bytes, 64-bit unsigned labels).
    text: bool,
    /// Integer or boolean labels, kept as integers and taken as categories.
    labels: Option<LabelKind>,
    /// Checked, never kept (an input the deployment keeps private).
    private: bool,
    /// Its first column's index in the buffer.
    first: usize,
    /// Where its values start in a row of numbers (numeric tensors only).
    offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LabelKind {
    Integer,
    Boolean,
}

/// Requests' tensors gathered as they arrive: the values are copied out, so the tensors can
/// go at once, and taken as one table when wanted. Numbers are kept row by row in one
/// vector (a request costs one copy per tensor, and the vector's memory is reused from one
/// take to the next); text is kept per column.
///
/// A tensor of shape `[rows]` or `[rows, 1]` is one column named after it; `[rows, F]` is F
/// columns, named by `feature_names` when it holds exactly F names (the names a model was
/// trained with) and `name[i]` otherwise; higher ranks are flattened the same way. Numbers
/// become float64, strings (and byte strings, lossily) text; `values` decides integer and
/// boolean tensors. The first request decides the columns; a later one that does not fit
/// them is refused.
#[derive(Debug)]
pub struct FeatureBuffer {
    names: Vec<String>,
    feature_names: Option<Vec<String>>,
    values: Values,
    slots: Option<Vec<Slot>>,
    columns: Vec<String>,
    /// Numbers of every numeric column, row-major: `row_width` values per row.
    numbers: Vec<f64>,
    row_width: usize,
    texts: Vec<Vec<String>>,
    /// Label columns' values, per column.
    labels: Vec<Vec<i64>>,
    rows: usize,
    /// Tensors whose values are never kept, and the columns they would have made.
    private: Vec<String>,
    private_columns: Vec<String>,
}

impl FeatureBuffer {
    pub fn new(names: Vec<String>, feature_names: Option<Vec<String>>, values: Values) -> Self {
        FeatureBuffer {
            names,
            feature_names,
            values,
            slots: None,
            columns: Vec::new(),
            numbers: Vec::new(),
            row_width: 0,
            texts: Vec::new(),
            labels: Vec::new(),
            rows: 0,
            private: Vec::new(),
            private_columns: Vec::new(),
        }
    }

    /// The same buffer, keeping nothing of the tensors named in `private` (inputs a
    /// deployment redacts or hashes): they are still checked to fit, and make no columns.
    pub fn without(mut self, private: &[String]) -> Self {
        self.private = private.to_vec();
        self
    }

    /// The columns the private tensors would have made (known after the first push).
    pub fn private_columns(&self) -> &[String] {
        &self.private_columns
    }

    /// Rows gathered since the last `take`.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn layout(&mut self, tensors: &[Tensor<'_>]) {
        let mut slots = Vec::with_capacity(tensors.len());
        for (name, t) in self.names.iter().zip(tensors) {
            let width: usize = t.shape.iter().skip(1).product();
            let labels = (self.values == Values::Labels)
                .then(|| label_kind(&t.data))
                .flatten();
            let text = matches!(t.data, TensorData::String(_) | TensorData::Bytes(_))
                || (self.values == Values::Labels && labels.is_none() && is_label_type(t.dtype()));
            let first = self.columns.len();
            let names: Vec<String> = match &self.feature_names {
                _ if width == 1 => vec![name.clone()],
                Some(f) if f.len() == width => f.clone(),
                _ => (0..width).map(|i| format!("{name}[{i}]")).collect(),
            };
            let private = self.private.contains(name);
            let offset = self.row_width;
            if private {
                self.private_columns.extend(names);
            } else {
                self.columns.extend(names);
                if !text && labels.is_none() {
                    self.row_width += width;
                }
            }
            slots.push(Slot {
                width,
                text,
                labels,
                private,
                first,
                offset,
            });
        }
        self.texts = vec![Vec::new(); self.columns.len()];
        self.labels = vec![Vec::new(); self.columns.len()];
        self.slots = Some(slots);
    }

    /// Copies one request's tensors (in the order of the names) into the columns.
    pub fn push(&mut self, tensors: &[Tensor<'_>]) -> Result<()> {
        if tensors.len() != self.names.len() {
            return Err(RuntimeError::input(
                self.names.join(", "),
                format!(
                    "a request has {} tensors, the names list {}",
                    tensors.len(),
                    self.names.len()
                ),
            ));
        }
        if self.slots.is_none() {
            self.layout(tensors);
        }
        let slots = self.slots.as_ref().expect("laid out above");
        // every tensor must fit its columns and hold the same number of rows
        let mut rows = None;
        for ((slot, t), name) in slots.iter().zip(tensors).zip(&self.names) {
            let width: usize = t.shape.iter().skip(1).product();
            let text = matches!(t.data, TensorData::String(_) | TensorData::Bytes(_));
            let fits = width == slot.width
                && (slot.text || !text)
                && (slot.labels.is_none() || slot.labels == label_kind(&t.data));
            if !fits {
                return Err(RuntimeError::input(
                    name,
                    format!(
                        "shape {:?} ({}) does not stack onto the columns of the first request",
                        t.shape,
                        t.dtype()
                    ),
                ));
            }
            if slot.width == 0 {
                continue;
            }
            let n = t.data.len() / slot.width;
            if t.data.len() % slot.width != 0 || rows.is_some_and(|r| r != n) {
                return Err(RuntimeError::input(
                    name,
                    format!(
                        "{} values of shape {:?} do not make the {} rows of the other tensors",
                        t.data.len(),
                        t.shape,
                        rows.unwrap_or(0)
                    ),
                ));
            }
            rows = Some(n);
        }
        let rows = rows.unwrap_or(0);
        let base = self.numbers.len();
        if self.row_width > 0 {
            let more = rows.checked_mul(self.row_width).ok_or_else(|| {
                RuntimeError::input(self.names.join(", "), "too many values to monitor")
            })?;
            self.numbers.resize(base + more, 0.0);
        }
        for (slot, t) in slots.iter().zip(tensors) {
            if slot.width == 0 || slot.private {
                continue;
            }
            if slot.text {
                let out = &mut self.texts[slot.first..slot.first + slot.width];
                for k in 0..t.data.len() {
                    out[k % slot.width].push(element_text(&t.data, k));
                }
            } else if slot.labels.is_some() {
                deal_labels(
                    &t.data,
                    &mut self.labels[slot.first..slot.first + slot.width],
                );
            } else {
                let rows_out = self.numbers[base..].chunks_exact_mut(self.row_width);
                deal_numbers(&t.data, slot.width, rows_out, slot.offset);
            }
        }
        self.rows += rows;
        Ok(())
    }

    /// Forgets the rows pushed after the first `rows` (a request half taken: its other
    /// tensors did not fit).
    pub fn truncate(&mut self, rows: usize) {
        if rows >= self.rows {
            return;
        }
        self.numbers.truncate(rows * self.row_width);
        for column in self.texts.iter_mut() {
            column.truncate(rows);
        }
        for column in self.labels.iter_mut() {
            column.truncate(rows);
        }
        self.rows = rows;
    }

    /// The columns gathered so far as one table (None when nothing was pushed); the buffer
    /// starts over, keeping its columns.
    pub fn take(&mut self) -> Result<Option<RecordBatch>> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        if self.rows == 0 {
            return Ok(None);
        }
        // the numbers turned from rows into columns in one pass over them
        let mut numeric: Vec<Vec<f64>> = vec![vec![0.0; self.rows]; self.row_width];
        for (r, row) in self.numbers.chunks_exact(self.row_width.max(1)).enumerate() {
            for (column, x) in numeric.iter_mut().zip(row) {
                column[r] = *x;
            }
        }
        let mut numeric = numeric.into_iter();
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for slot in slots.iter().filter(|s| !s.private) {
            for c in slot.first..slot.first + slot.width {
                let array: ArrayRef = if slot.text {
                    Arc::new(StringArray::from(std::mem::take(&mut self.texts[c])))
                } else if let Some(kind) = slot.labels {
                    let values = &mut self.labels[c];
                    let array = label_array(values, kind);
                    values.clear();
                    array
                } else {
                    // numeric slots hold the row's columns in their order
                    let column = numeric.next().unwrap_or_default();
                    Arc::new(Float64Array::from(column))
                };
                fields.push(Field::new(
                    self.columns[c].clone(),
                    array.data_type().clone(),
                    false,
                ));
                arrays.push(array);
            }
        }
        self.rows = 0;
        self.numbers.clear();
        let schema = Arc::new(arrow_schema::Schema::new(fields));
        RecordBatch::try_new(schema, arrays)
            .map(Some)
            .map_err(|e| RuntimeError::input("<table>", e.to_string()))
    }
}

/// Deals a tensor's numbers to `columns` in turn (row by row), without an intermediate copy.
/// Copies a numeric tensor of `width` values per row into its place (`offset`) in each row.
fn deal_numbers<'a>(
    data: &TensorData<'_>,
    width: usize,
    rows: impl Iterator<Item = &'a mut [f64]>,
    offset: usize,
) {
    macro_rules! deal {
        ($($variant:ident),*) => {
            match data {
                $(TensorData::$variant(v) => {
                    for (row, values) in rows.zip(v.chunks_exact(width)) {
                        for (out, x) in row[offset..offset + width].iter_mut().zip(values) {
                            *out = x.to_f64();
                        }
                    }
                })*
                TensorData::String(_) | TensorData::Bytes(_) => {}
            }
        };
    }
    deal!(
        Float16, BFloat16, Float32, Float64, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32,
        UInt64, Bool
    );
}

/// The label kind of an integer or boolean tensor kept as integers (64-bit unsigned values
/// may not fit, so they are kept as text).
fn label_kind(data: &TensorData<'_>) -> Option<LabelKind> {
    match data {
        TensorData::Int8(_)
        | TensorData::Int16(_)
        | TensorData::Int32(_)
        | TensorData::Int64(_)
        | TensorData::UInt8(_)
        | TensorData::UInt16(_)
        | TensorData::UInt32(_) => Some(LabelKind::Integer),
        TensorData::Bool(_) => Some(LabelKind::Boolean),
        _ => None,
    }
}

/// Copies an integer or boolean tensor's values into its label columns.
fn deal_labels(data: &TensorData<'_>, columns: &mut [Vec<i64>]) {
    let width = columns.len();
    macro_rules! deal {
        ($($variant:ident),*) => {
            match data {
                $(TensorData::$variant(v) => {
                    for row in v.chunks_exact(width) {
                        for (column, x) in columns.iter_mut().zip(row) {
                            column.push(i64::from(*x));
                        }
                    }
                })*
                _ => {}
            }
        };
    }
    deal!(Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, Bool);
}

/// Labels as a dictionary of their texts (few distinct values, each written once), which
/// the profile counts by code.
fn label_array(values: &[i64], kind: LabelKind) -> ArrayRef {
    let mut distinct: Vec<i64> = Vec::new();
    let mut index: std::collections::HashMap<i64, i32> = std::collections::HashMap::new();
    let mut code_of = |v: i64| -> i32 {
        if distinct.len() <= 16 {
            if let Some(i) = distinct.iter().position(|d| *d == v) {
                return i as i32;
            }
        } else if let Some(i) = index.get(&v) {
            return *i;
        }
        let code = distinct.len() as i32;
        distinct.push(v);
        if distinct.len() > 16 {
            if index.is_empty() {
                index.extend(distinct.iter().enumerate().map(|(i, d)| (*d, i as i32)));
            } else {
                index.insert(v, code);
            }
        }
        code
    };
    let codes: Vec<i32> = values.iter().map(|v| code_of(*v)).collect();
    let texts: StringArray = distinct
        .iter()
        .map(|v| match kind {
            LabelKind::Boolean => Some(if *v != 0 { "true" } else { "false" }.to_string()),
            LabelKind::Integer => Some(v.to_string()),
        })
        .collect();
    let dictionary =
        DictionaryArray::<Int32Type>::try_new(Int32Array::from(codes), Arc::new(texts))
            .expect("every code indexes the distinct values");
    Arc::new(dictionary)
}

fn is_label_type(dtype: DType) -> bool {
    dtype.is_integer() || dtype == DType::Bool
}

/// Element `i` as text (integers in decimal, booleans as true/false, bytes lossily).
fn element_text(data: &TensorData<'_>, i: usize) -> String {
    macro_rules! text {
        ($($variant:ident),*) => {
            match data {
                $(TensorData::$variant(v) => v.get(i).map(ToString::to_string),)*
                TensorData::Float16(v) => v.get(i).map(ToString::to_string),
                TensorData::BFloat16(v) => v.get(i).map(ToString::to_string),
                TensorData::Bytes(v) => v.get(i).map(|b| String::from_utf8_lossy(b).into_owned()),
            }
        };
    }
    text!(Float32, Float64, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Bool, String)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;

    use super::*;

    fn tensor(shape: Vec<usize>, data: TensorData<'static>) -> Tensor<'static> {
        Tensor::new(shape, data).unwrap()
    }

    #[test]
    fn requests_stack_into_one_column_per_feature() {
        let names = vec!["X".to_string(), "label".to_string()];
        let a = [
            tensor(
                vec![2, 3],
                TensorData::Float32(Cow::Owned(vec![1., 2., 3., 4., 5., 6.])),
            ),
            tensor(vec![2], TensorData::Int64(Cow::Owned(vec![0, 1]))),
        ];
        let b = [
            tensor(
                vec![1, 3],
                TensorData::Float32(Cow::Owned(vec![7., 8., 9.])),
            ),
            tensor(vec![1], TensorData::Int64(Cow::Owned(vec![1]))),
        ];
        let features = ["a", "b", "c"].map(String::from);
        let table = feature_table(&names, &[&a, &b], Some(&features), Values::Labels).unwrap();
        let columns: Vec<&str> = table
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(columns, ["a", "b", "c", "label"]);
        let b_values: Vec<f64> = table
            .column(1)
            .as_primitive::<Float64Type>()
            .values()
            .to_vec();
        assert_eq!(b_values, [2., 5., 8.]);
        let labels = table.column(3).as_dictionary::<Int32Type>();
        let texts = labels.values().as_string::<i32>();
        let labels: Vec<&str> = labels
            .keys()
            .values()
            .iter()
            .map(|k| texts.value(*k as usize))
            .collect();
        assert_eq!(labels, ["0", "1", "1"], "integer labels are categories");
        // many distinct labels and booleans keep their texts too
        let many: Vec<i64> = (0..40).map(|i| i % 23 - 5).collect();
        let column = label_array(&many, LabelKind::Integer);
        let column = column.as_dictionary::<Int32Type>();
        let texts = column.values().as_string::<i32>();
        for (k, v) in column.keys().values().iter().zip(&many) {
            assert_eq!(texts.value(*k as usize), v.to_string());
        }
        let flags = label_array(&[1, 0, 1], LabelKind::Boolean);
        let flags = flags.as_dictionary::<Int32Type>();
        assert_eq!(flags.values().as_string::<i32>().value(0), "true");

        // without matching names, columns are named by position; values stay numbers
        let plain = feature_table(&names, &[&a], None, Values::AsIs).unwrap();
        let columns: Vec<&str> = plain
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(columns, ["X[0]", "X[1]", "X[2]", "label"]);
        assert_eq!(plain.column(3).data_type(), &DataType::Float64);
        // two numeric tensors share each row: every column keeps its own values
        let column = |t: &RecordBatch, i: usize| -> Vec<f64> {
            t.column(i).as_primitive::<Float64Type>().values().to_vec()
        };
        let plain = feature_table(&names, &[&a, &b, &a], None, Values::AsIs).unwrap();
        assert_eq!(column(&plain, 2), [3., 6., 9., 3., 6.]);
        assert_eq!(column(&plain, 3), [0., 1., 1., 0., 1.]);

        // a private tensor is checked but makes no columns
        let mut buffer = FeatureBuffer::new(names.clone(), None, Values::AsIs).without(&names[..1]);
        buffer.push(&a).unwrap();
        let narrow = [
            tensor(vec![1, 2], TensorData::Float32(Cow::Owned(vec![1., 2.]))),
            tensor(vec![1], TensorData::Int64(Cow::Owned(vec![1]))),
        ];
        assert!(buffer.push(&narrow).is_err(), "still checked to fit");
        let kept = buffer.take().unwrap().unwrap();
        assert_eq!(kept.num_columns(), 1);
        assert_eq!(kept.schema_ref().field(0).name(), "label");
        assert_eq!(buffer.private_columns(), ["X[0]", "X[1]", "X[2]"]);

        // a request taken back leaves the rows before it
        let mut buffer = FeatureBuffer::new(names.clone(), None, Values::AsIs);
        buffer.push(&a).unwrap();
        buffer.push(&b).unwrap();
        buffer.truncate(2);
        let kept = buffer.take().unwrap().unwrap();
        assert_eq!(column(&kept, 2), [3., 6.]);
        assert_eq!(column(&kept, 3), [0., 1.]);

        // tensors of one request that disagree on their rows are refused, naming one
        let ragged = [
            tensor(vec![2, 3], TensorData::Float32(Cow::Owned(vec![0.; 6]))),
            tensor(vec![3], TensorData::Int64(Cow::Owned(vec![1, 2, 3]))),
        ];
        let err = feature_table(&names, &[&ragged], None, Values::AsIs).unwrap_err();
        assert!(err.to_string().contains("label"), "{err}");

        // tensors that do not stack are an error naming the tensor
        let odd = [
            tensor(vec![1, 2], TensorData::Float32(Cow::Owned(vec![1., 2.]))),
            tensor(vec![1], TensorData::Int64(Cow::Owned(vec![1]))),
        ];
        let err = feature_table(&names, &[&a, &odd], None, Values::AsIs).unwrap_err();
        assert!(err.to_string().contains('X'), "{err}");
    }
}
