//! Integration tests against a real ONNX Runtime (the `onnxruntime` wheel's library, found
//! through ORT_DYLIB_PATH or by asking python3 where the wheel is) and real ONNX files in
//! tests/data, written by `python tests/models.py rust/runtime/tests/data`.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use arrow_array::{
    types::Int32Type, ArrayRef, DictionaryArray, Float32Array, Float64Array, Int64Array,
    RecordBatch, StringArray,
};
use pilothouse_runtime::*;

fn ort_library() -> PathBuf {
    if let Ok(path) = std::env::var("ORT_DYLIB_PATH") {
        return PathBuf::from(path);
    }
    let script = "import importlib.util as u, pathlib as p; s = u.find_spec('onnxruntime'); \
                  print(sorted((p.Path(s.submodule_search_locations[0]) / 'capi').glob('libonnxruntime.so*'))[-1])";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs (needed to find the onnxruntime wheel; or set ORT_DYLIB_PATH)");
    assert!(
        out.status.success(),
        "cannot find onnxruntime: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        init(&ort_library()).expect("ONNX Runtime loads");
    });
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load(name: &str) -> Model {
    setup();
    Model::load(&data(name), SessionOptions::default()).unwrap()
}

fn f32s(t: &OwnedTensor) -> &[f32] {
    match &t.data {
        TensorData::Float32(v) => v,
        other => panic!("expected float32, got {:?}", other.dtype()),
    }
}

fn rows() -> Vec<f32> {
    vec![
        0.5, -1.0, 0.25, 2.0, -0.3, 0.8, 1.5, -0.7, 1.1, 0.0, -2.0, 0.4,
    ]
}

#[test]
fn logistic_regression_signature_and_zipmap() {
    let model = load("logreg.onnx");
    let sig = model.signature();
    assert_eq!(sig.inputs.len(), 1);
    assert_eq!(sig.inputs[0].name, "X");
    assert_eq!(sig.inputs[0].dtype, DType::Float32);
    assert_eq!(sig.inputs[0].shape, vec![None, Some(4)]);
    assert_eq!(
        sig.feature_names.as_deref(),
        Some(&["f0".to_string(), "f1".into(), "f2".into(), "f3".into()][..])
    );
    let probs = &sig.outputs[1];
    assert_eq!(
        probs.kind,
        OutputKind::ZipMap {
            labels: Some(Labels::Int(vec![0, 1]))
        }
    );
    assert_eq!(probs.shape, vec![None, Some(2)]);

    let x = rows();
    let out = model
        .run(vec![(
            "X".into(),
            Tensor::new(vec![3, 4], TensorData::Float32(Cow::Borrowed(&x))).unwrap(),
        )])
        .unwrap();
    assert_eq!(out[0].0, "output_label");
    let TensorData::Int64(labels) = &out[0].1.data else {
        panic!("labels are int64")
    };
    let p = f32s(&out[1].1);
    assert_eq!(out[1].1.shape, vec![3, 2]);
    for r in 0..3 {
        assert!((p[2 * r] + p[2 * r + 1] - 1.0).abs() < 1e-5);
        let argmax = if p[2 * r + 1] > p[2 * r] { 1 } else { 0 };
        assert_eq!(labels[r], argmax);
    }

    // float64 data is cast to the model's float32 and gives the same answer
    let x64: Vec<f64> = x.iter().map(|v| f64::from(*v)).collect();
    let out64 = model
        .run(vec![(
            "X".into(),
            Tensor::new(vec![3, 4], TensorData::Float64(Cow::Owned(x64))).unwrap(),
        )])
        .unwrap();
    assert_eq!(f32s(&out64[1].1), p);
}

#[test]
fn bad_inputs_name_the_input_and_the_expectation() {
    let model = load("logreg.onnx");
    let x = rows();
    let t = |shape: Vec<usize>, n: usize| {
        Tensor::new(shape, TensorData::Float32(Cow::Owned(x[..n].to_vec()))).unwrap()
    };
    let err = model
        .run(vec![("Y".into(), t(vec![3, 4], 12))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("'Y'") && err.contains("[X]"), "{err}");
    let err = model.run(vec![]).unwrap_err().to_string();
    assert!(err.contains("missing") && err.contains('X'), "{err}");
    let err = model
        .run(vec![("X".into(), t(vec![4, 3], 12))])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("got 3 features") && err.contains("expects 4"),
        "{err}"
    );
    let strings = Tensor::new(
        vec![1, 4],
        TensorData::String(Cow::Owned(vec!["a".into(); 4])),
    )
    .unwrap();
    let err = model
        .run(vec![("X".into(), strings)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input 'X'") && err.contains("string") && err.contains("float32"),
        "{err}"
    );
    let err = model
        .run(vec![("X".into(), t(vec![0, 4], 0))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn every_element_type_round_trips() {
    let model = load("multi_io.onnx");
    let strings: Vec<String> = vec!["alpha".into(), "".into(), "δέλτα".into()];
    let inputs = vec![
        (
            "a".to_string(),
            Tensor::new(
                vec![3, 3],
                TensorData::Float32(Cow::Owned((0..9).map(|v| v as f32).collect())),
            )
            .unwrap(),
        ),
        (
            "b".to_string(),
            Tensor::new(
                vec![3, 2],
                TensorData::Int64(Cow::Owned(vec![1, -2, 3, 4, i64::MAX / 4, 0])),
            )
            .unwrap(),
        ),
        (
            "s".to_string(),
            Tensor::new(vec![3], TensorData::String(Cow::Owned(strings.clone()))).unwrap(),
        ),
        (
            "d".to_string(),
            Tensor::new(
                vec![3],
                TensorData::Float64(Cow::Owned(vec![1.5, -0.0, 1e300])),
            )
            .unwrap(),
        ),
        (
            "i".to_string(),
            Tensor::new(vec![3], TensorData::Int32(Cow::Owned(vec![-1, 0, 41]))).unwrap(),
        ),
        (
            "flag".to_string(),
            Tensor::new(
                vec![3],
                TensorData::Bool(Cow::Owned(vec![true, false, true])),
            )
            .unwrap(),
        ),
    ];
    let out = model.run(inputs).unwrap();
    let by_name = |n: &str| &out.iter().find(|(k, _)| k == n).unwrap().1;
    assert_eq!(f32s(by_name("a_sum")), &[3.0, 12.0, 21.0]);
    assert_eq!(
        by_name("b_doubled").data,
        TensorData::Int64(Cow::Owned(vec![2, -4, 6, 8, i64::MAX / 2 - 1, 0]))
    );
    assert_eq!(
        by_name("s_same").data,
        TensorData::String(Cow::Owned(strings))
    );
    assert_eq!(
        by_name("d_neg").data,
        TensorData::Float64(Cow::Owned(vec![-1.5, 0.0, -1e300]))
    );
    assert_eq!(
        by_name("i_plus").data,
        TensorData::Int32(Cow::Owned(vec![0, 1, 42]))
    );
    assert_eq!(
        by_name("flag_not").data,
        TensorData::Bool(Cow::Owned(vec![false, true, false]))
    );
}

#[test]
fn arrow_columns_follow_the_recorded_feature_order() {
    let model = load("logreg.onnx");
    let x = rows();
    let col = |j: usize| -> ArrayRef {
        Arc::new(Float64Array::from(
            (0..3).map(|r| f64::from(x[r * 4 + j])).collect::<Vec<_>>(),
        ))
    };
    // columns arrive in reverse order; the model recorded f0..f3
    let batch = RecordBatch::try_from_iter(vec![
        ("f3", col(3)),
        ("f2", col(2)),
        ("f1", col(1)),
        ("f0", col(0)),
    ])
    .unwrap();
    let columns = record_batches_to_columns(std::slice::from_ref(&batch)).unwrap();
    let inputs = columns_to_inputs(columns, model.signature()).unwrap();
    let from_arrow = model.run(inputs).unwrap();
    let direct = model
        .run(vec![(
            "X".into(),
            Tensor::new(vec![3, 4], TensorData::Float32(Cow::Borrowed(&x))).unwrap(),
        )])
        .unwrap();
    assert_eq!(from_arrow, direct);
}

#[test]
fn arrow_columns_feed_one_input_per_feature_by_name() {
    let model = load("mixed.onnx");
    let sig = model.signature();
    assert_eq!(
        sig.inputs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        vec!["age", "income", "city"]
    );
    assert_eq!(
        sig.outputs[1].kind,
        OutputKind::ZipMap {
            labels: Some(Labels::String(vec!["churn".into(), "stay".into()]))
        }
    );
    let city: DictionaryArray<Int32Type> =
        vec!["oslo", "lima", "paris", "oslo"].into_iter().collect();
    let plain = StringArray::from(vec!["oslo", "lima", "paris", "oslo"]);
    let make = |city: ArrayRef| {
        RecordBatch::try_from_iter(vec![
            ("city", city),
            (
                "age",
                Arc::new(Int64Array::from(vec![30, 60, 45, 70])) as ArrayRef,
            ),
            (
                "income",
                Arc::new(Float32Array::from(vec![40e3, 52e3, 61e3, 10e3])) as ArrayRef,
            ),
        ])
        .unwrap()
    };
    let run = |batch: RecordBatch| {
        let columns = record_batches_to_columns(std::slice::from_ref(&batch)).unwrap();
        model
            .run(columns_to_inputs(columns, model.signature()).unwrap())
            .unwrap()
    };
    let a = run(make(Arc::new(city)));
    let b = run(make(Arc::new(plain)));
    assert_eq!(a, b);
    let TensorData::String(labels) = &a[0].1.data else {
        panic!("string labels")
    };
    assert!(labels.iter().all(|l| l == "churn" || l == "stay"));
}

#[test]
fn nulls_become_nan_for_float_inputs_and_errors_otherwise() {
    let model = load("mixed.onnx");
    let batch = RecordBatch::try_from_iter(vec![
        (
            "age",
            Arc::new(Float32Array::from(vec![Some(30.0), None])) as ArrayRef,
        ),
        (
            "income",
            Arc::new(Float32Array::from(vec![1.0, 2.0])) as ArrayRef,
        ),
        (
            "city",
            Arc::new(StringArray::from(vec![Some("oslo"), None])) as ArrayRef,
        ),
    ])
    .unwrap();
    let columns = record_batches_to_columns(std::slice::from_ref(&batch)).unwrap();
    let err = columns_to_inputs(columns, model.signature())
        .unwrap_err()
        .to_string();
    assert!(err.contains("'city'") && err.contains("1 missing"), "{err}");
}

#[test]
fn outputs_convert_to_arrow() {
    let model = load("logreg.onnx");
    let x = rows();
    let out = model
        .run(vec![(
            "X".into(),
            Tensor::new(vec![3, 4], TensorData::Float32(Cow::Borrowed(&x))).unwrap(),
        )])
        .unwrap();
    let labels = tensor_to_arrow(&out[0].1).unwrap();
    assert_eq!(labels.len(), 3);
    let probs = tensor_to_arrow(&out[1].1).unwrap();
    assert_eq!(probs.len(), 3);
    assert_eq!(
        probs.data_type().to_string(),
        "FixedSizeList(2 x non-null Float32)"
    );
}

#[test]
fn many_threads_share_one_model() {
    let model = Arc::new(load("mlp.onnx"));
    let input: Vec<f32> = (0..64 * 4).map(|v| (v as f32 * 0.37).sin()).collect();
    let run = |m: &Model| {
        m.run(vec![(
            "x".into(),
            Tensor::new(vec![64, 4], TensorData::Float32(Cow::Borrowed(&input))).unwrap(),
        )])
        .unwrap()
    };
    let expected = run(&model);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..50 {
                    assert_eq!(run(&model), expected);
                }
            });
        }
    });
    assert!(model.sessions() >= 1 && model.sessions() <= model.options().max_sessions);
}

#[test]
fn bad_model_files_are_load_errors_naming_the_path() {
    setup();
    let dir = std::env::temp_dir().join(format!("ph-runtime-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("absent.onnx");
    let err = Model::load(&missing, SessionOptions::default()).unwrap_err();
    assert!(matches!(err, RuntimeError::ModelLoad { .. }));
    assert!(
        err.to_string().contains("absent.onnx") && err.to_string().contains("no such file"),
        "{err}"
    );

    let text = dir.join("notes.onnx");
    std::fs::write(&text, b"these are not the weights you are looking for").unwrap();
    let err = Model::load(&text, SessionOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("notes.onnx"), "{err}");

    let full = std::fs::read(data("mlp.onnx")).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let err = Model::load(&truncated, SessionOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated.onnx"), "{err}");

    let err = Model::load(&dir, SessionOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("directory"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deterministic_mode_gives_identical_answers() {
    setup();
    let opts = SessionOptions {
        deterministic: true,
        ..SessionOptions::default()
    };
    let model = Model::load(&data("mlp.onnx"), opts).unwrap();
    let input: Vec<f32> = (0..16).map(|v| v as f32 / 7.0).collect();
    let run = || {
        model
            .run(vec![(
                "x".into(),
                Tensor::new(vec![4, 4], TensorData::Float32(Cow::Borrowed(&input))).unwrap(),
            )])
            .unwrap()
    };
    let first = run();
    for _ in 0..10 {
        assert_eq!(run(), first);
    }
    let bad = SessionOptions {
        intra_op_threads: 0,
        ..SessionOptions::default()
    };
    assert!(matches!(
        Model::load(&data("mlp.onnx"), bad),
        Err(RuntimeError::InvalidOption { .. })
    ));
}
