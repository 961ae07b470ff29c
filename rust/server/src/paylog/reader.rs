//! Reading a deployment's payload log back: every segment of a period, whatever layout it
//! was written in (payloads as JSON text in `inputs`/`outputs` before typed columns), as
//! batches of one schema.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use arrow_cast::cast;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::writer::folder_hour;
use super::HOUR_US;
use crate::error::{Result, ServerError};

/// The columns every segment has; payload columns (`input.<name>`, `output.<name>`) follow.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(fixed_fields()))
}

pub(super) fn fixed_fields() -> Vec<Field> {
    vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("deployment", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("route", DataType::Utf8, false),
        Field::new("status", DataType::Int32, false),
        Field::new("latency_ms", DataType::Float64, false),
        Field::new("queue_ms", DataType::Float64, false),
        Field::new("inference_ms", DataType::Float64, false),
        Field::new("batch_rows", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
    ]
}

/// Reads a deployment's log between `since_us` and `until_us` (either open), oldest first,
/// as batches of one schema: the fixed columns, then every payload column any segment has
/// (null where a segment has not). A column whose type changed between segments (a version
/// changed a tensor's type) is widened to the first type when that loses nothing (float32
/// to float64, int8 to int64, ...), and kept as its own column named `<name> (<type>)`
/// otherwise.
pub fn read(
    root: &Path,
    deployment: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    // The name becomes a folder: "../x" or "/etc" must never reach the file system.
    pilothouse_registry::check_deployment_name(deployment)?;
    let dir = root.join(deployment);
    let mut files = Vec::new();
    let io =
        |p: &Path, e: std::io::Error| ServerError::Log(format!("cannot read {}: {e}", p.display()));
    let Ok(days) = std::fs::read_dir(&dir) else {
        return unify(Vec::new());
    };
    for day in days.flatten() {
        let date = day.file_name().to_string_lossy().to_string();
        for hour in std::fs::read_dir(day.path())
            .map_err(|e| io(&day.path(), e))?
            .flatten()
        {
            let Some(start) = folder_hour(&date, &hour.file_name().to_string_lossy()) else {
                continue;
            };
            if since_us.is_some_and(|s| start + HOUR_US <= s) || until_us.is_some_and(|u| start > u)
            {
                continue;
            }
            for f in std::fs::read_dir(hour.path())
                .map_err(|e| io(&hour.path(), e))?
                .flatten()
            {
                let name = f.file_name().to_string_lossy().to_string();
                if name.starts_with("part-") && name.ends_with(".parquet") {
                    files.push(f.path());
                }
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let file = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| {
                ServerError::Log(format!(
                    "{} is not a readable Parquet segment: {e}",
                    path.display()
                ))
            })?;
        for batch in reader {
            let batch = batch.map_err(|e| ServerError::Log(format!("{}: {e}", path.display())))?;
            let times = batch
                .column_by_name("time")
                .ok_or_else(|| {
                    ServerError::Log(format!("{}: there is no time column", path.display()))
                })?
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .ok_or_else(|| {
                    ServerError::Log(format!(
                        "{}: the time column has the wrong type",
                        path.display()
                    ))
                })?;
            let keep: BooleanArray = times
                .iter()
                .map(|t| {
                    t.map(|t| since_us.is_none_or(|s| t >= s) && until_us.is_none_or(|u| t <= u))
                })
                .collect();
            let batch = arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|e| ServerError::Log(e.to_string()))?;
            if batch.num_rows() > 0 {
                out.push(batch);
            }
        }
    }
    unify(out)
}

/// Whether values of type `from` become `to` with nothing lost (lists of such values too).
fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    match (from, to) {
        (List(a) | LargeList(a), List(b) | LargeList(b)) => widens(a.data_type(), b.data_type()),
        (Float16 | Float32, Float64) | (Float16, Float32) => true,
        (Int8, Int16 | Int32 | Int64) | (Int16, Int32 | Int64) | (Int32, Int64) => true,
        (UInt8, UInt16 | UInt32 | UInt64) | (UInt16, UInt32 | UInt64) | (UInt32, UInt64) => true,
        (Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32, Float64) => true,
        (Utf8, LargeUtf8 | Binary | LargeBinary) => true,
        _ => false,
    }
}

/// The batches of every segment in one schema (see [`read`]).
fn unify(batches: Vec<RecordBatch>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let renamed = |f: &Field| format!("{} ({})", f.name(), f.data_type());
    let mut fields: Vec<Field> = fixed_fields()
        .into_iter()
        .map(|f| f.with_nullable(true))
        .collect();
    for b in &batches {
        for f in b.schema().fields() {
            match fields.iter().find(|x| x.name() == f.name()) {
                None => fields.push(f.as_ref().clone().with_nullable(true)),
                Some(x) if x.data_type() == f.data_type() => {}
                Some(x) if widens(f.data_type(), x.data_type()) => {}
                Some(_) => {
                    let name = renamed(f);
                    if !fields.iter().any(|x| *x.name() == name) {
                        fields.push(Field::new(name, f.data_type().clone(), true));
                    }
                }
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let rows = b.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let own = b.schema().fields().iter().position(|x| {
                x.name() == f.name() && x.data_type() == f.data_type() || renamed(x) == *f.name()
            });
            let castable = b
                .schema()
                .fields()
                .iter()
                .position(|x| x.name() == f.name() && widens(x.data_type(), f.data_type()));
            columns.push(match (own, castable) {
                (Some(i), _) => b.column(i).clone(),
                (None, Some(i)) => cast(b.column(i), f.data_type())
                    .map_err(|e| ServerError::Log(format!("column {}: {e}", f.name())))?,
                (None, None) => new_null_array(f.data_type(), rows),
            });
        }
        out.push(
            RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| ServerError::Log(e.to_string()))?,
        );
    }
    Ok((schema, out))
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use arrow_array::{Float32Array, Float64Array, StringArray};

    use super::*;

    #[test]
    fn segments_of_other_types_widen_or_keep_their_own_column() {
        let old = RecordBatch::try_from_iter([
            ("v", Arc::new(Float64Array::from(vec![1.5])) as ArrayRef),
            (
                "h",
                Arc::new(StringArray::from(vec!["sha256:ab"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let new = RecordBatch::try_from_iter([
            ("v", Arc::new(Float32Array::from(vec![2.5])) as ArrayRef),
            ("h", Arc::new(Float64Array::from(vec![7.0])) as ArrayRef),
        ])
        .unwrap();
        let (schema, batches) = unify(vec![old, new]).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert!(names.ends_with(&["v", "h", "h (Float64)"]), "{names:?}");
        // float32 widens into float64; text and numbers stay apart, nothing is nulled
        let v = batches[1].column_by_name("v").unwrap();
        assert_eq!(v.as_primitive::<Float64Type>().value(0), 2.5);
        assert!(batches[1].column_by_name("h").unwrap().is_null(0));
        let apart = batches[1].column_by_name("h (Float64)").unwrap();
        assert_eq!(apart.as_primitive::<Float64Type>().value(0), 7.0);
        assert_eq!(
            batches[0]
                .column_by_name("h")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "sha256:ab"
        );
    }
}
