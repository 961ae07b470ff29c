//! ONNX Runtime that cannot be loaded. Its own test binary, so no other test has loaded a
//! library in this process first (a process holds one ONNX Runtime).

use std::path::Path;

use pilothouse_runtime::{init, loaded_library, Model, RuntimeError, SessionOptions};

#[test]
fn a_missing_or_bogus_library_is_a_clean_error() {
    assert!(loaded_library().is_none());
    let err = init(Path::new("/nonexistent/libonnxruntime.so")).unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable { .. }));
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/libonnxruntime.so") && text.contains("pip install"),
        "{text}"
    );

    let bogus = std::env::temp_dir().join(format!("ph-not-a-library-{}.so", std::process::id()));
    std::fs::write(&bogus, b"not a shared library").unwrap();
    let err = init(&bogus).unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable { .. }));
    assert!(
        err.to_string().contains(&bogus.display().to_string()),
        "{err}"
    );
    std::fs::remove_file(&bogus).unwrap();

    // nothing is loaded, so models refuse cleanly instead of panicking inside ort
    assert!(loaded_library().is_none());
    let err = Model::from_bytes(
        vec![1, 2, 3],
        Path::new("m.onnx"),
        SessionOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable { .. }), "{err}");
}
