//! The wire format's unit tests: requests in, answers out.

use std::borrow::Cow;

use pilothouse_runtime::half;
use pilothouse_runtime::{DType, OutputKind, Signature, Tensor, TensorData, TensorSpec};
use serde_json::value::RawValue;
use serde_json::Value as Json;

use super::binary::*;
use super::json_data::*;
use super::request::*;
use super::*;

#[test]
fn json_and_binary_inputs_decode_alike() {
    let body =
        br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}]}"#;
    let r = parse_request(body, None).unwrap();
    assert_eq!(
        r.inputs[0].1.data,
        TensorData::Float32(Cow::Owned(vec![1.0, 2.0, 3.0, 4.5]))
    );
    let head = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":12}}]}"#;
    let mut body = head.to_vec();
    for s in ["ab", "cd"] {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    let r = parse_request(&body, Some(head.len())).unwrap();
    assert_eq!(
        r.inputs[0].1.data,
        TensorData::String(Cow::Owned(vec!["ab".into(), "cd".into()]))
    );
}

#[test]
fn every_fixed_width_type_round_trips_in_json_and_binary() {
    use half::{bf16, f16};
    let cases: Vec<TensorData<'static>> = vec![
        TensorData::Float16(Cow::Owned(vec![f16::from_f32(0.5), f16::MAX, f16::MIN])),
        TensorData::BFloat16(Cow::Owned(vec![bf16::from_f32(0.1), bf16::MAX, bf16::MIN])),
        TensorData::Int8(Cow::Owned(vec![i8::MIN, 0, i8::MAX])),
        TensorData::Int16(Cow::Owned(vec![i16::MIN, 0, i16::MAX])),
        TensorData::UInt8(Cow::Owned(vec![0, 1, u8::MAX])),
        TensorData::UInt16(Cow::Owned(vec![0, 1, u16::MAX])),
        TensorData::UInt32(Cow::Owned(vec![0, 1, u32::MAX])),
        TensorData::UInt64(Cow::Owned(vec![0, 1, u64::MAX])),
    ];
    for data in cases {
        let name = data.dtype().protocol_name();
        // Binary: the bytes this server writes decode to the same tensor.
        let mut bytes = Vec::new();
        append_binary(&data, &mut bytes);
        assert_eq!(bytes.len(), 3 * data.dtype().width(), "{name}");
        assert_eq!(
            decode_binary(data.dtype(), &bytes, 3).unwrap(),
            data,
            "{name}"
        );
        assert!(
            decode_binary(data.dtype(), &bytes[1..], 3).is_err(),
            "{name}"
        );
        // JSON: the text this server writes decodes to the same tensor.
        let mut text = Vec::new();
        write_data_json(&data, &mut text);
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[3],"datatype":"{name}","data":{}}}]}}"#,
            String::from_utf8(text).unwrap()
        );
        let r = parse_request(body.as_bytes(), None).unwrap();
        assert_eq!(r.inputs[0].1.data, data, "{name}: {body}");
    }
}

#[test]
fn narrow_types_refuse_values_that_do_not_fit() {
    for (dtype, data, what) in [
        ("INT8", "[1, 128]", "an int8"),
        ("UINT8", "[1, -1]", "a uint8"),
        ("UINT64", "[1, -1]", "a uint64"),
        ("UINT32", "[1, 4294967296]", "a uint32"),
        ("INT16", "[1, 0.5]", "an int16"),
        ("FP16", "[1, 65520]", "FP16"),
        ("BF16", "[1, 1e39]", "BF16"),
    ] {
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[2],"datatype":"{dtype}","data":{data}}}]}}"#
        );
        let err = parse_request(body.as_bytes(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("input 'x'") && err.contains("element 1") && err.contains(what),
            "{dtype}: {err}"
        );
    }
    // NaN and infinities are still what the strings say.
    let body =
        br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP16","data":["NaN","-Infinity"]}]}"#;
    let r = parse_request(body, None).unwrap();
    let TensorData::Float16(v) = &r.inputs[0].1.data else {
        panic!("FP16 data")
    };
    assert!(v[0].is_nan() && v[1] == half::f16::NEG_INFINITY);
}

#[test]
fn bytes_that_are_not_utf8_decode_and_answer_as_binary() {
    let head = br#"{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":12}}]}"#;
    let mut body = head.to_vec();
    for s in [&b"\xff\x00"[..], &b"ok"[..]] {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s);
    }
    let r = parse_request(&body, Some(head.len())).unwrap();
    let data = &r.inputs[0].1.data;
    assert_eq!(
        data,
        &TensorData::Bytes(Cow::Owned(vec![vec![0xff, 0], b"ok".to_vec()]))
    );
    let signature = Signature {
        inputs: vec![],
        outputs: vec![TensorSpec {
            name: "t".into(),
            dtype: DType::String,
            shape: vec![None],
            kind: OutputKind::Tensor,
        }],
        metadata: Default::default(),
        feature_names: None,
        opsets: Default::default(),
    };
    let output = Tensor {
        shape: vec![2],
        data: data.clone(),
    };
    // A JSON request: the output still goes as binary data, since JSON cannot hold it.
    let json_request = parse_request(
        br#"{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","data":["a"]}]}"#,
        None,
    )
    .unwrap();
    let encoded = encode_response("m", 1, None, &signature, &[output], &json_request, None);
    let header = encoded.header_length.expect("binary data follows the JSON");
    let head: Json = serde_json::from_slice(&encoded.body[..header]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 12);
    assert_eq!(&encoded.body[header..], &body[head_len(&body)..]);
    // The payload log's JSON keeps the bytes as base64.
    let mut text = Vec::new();
    write_data_json(data, &mut text);
    assert_eq!(String::from_utf8(text).unwrap(), r#"[{"b64":"/wA="},"ok"]"#);
}

fn head_len(body: &[u8]) -> usize {
    body.len() - 12
}

#[test]
fn text_and_tree_decode_alike() {
    let cases: &[(DType, &str)] = &[
        (DType::Float32, "[[1, 2.5], [-3e2, 0.1]]"),
        (
            DType::Float32,
            "[16777217, 18446744073709551615, -9223372036854775808]",
        ),
        (DType::Float32, "7"),
        (DType::Float64, "[[0.1, 1e-300], [2, -0.0]]"),
        (DType::Int32, "[1, -2, 2147483647]"),
        (DType::Int32, "[2147483648]"),
        (DType::Int32, "[1.0]"),
        (
            DType::Int64,
            "[[9223372036854775807], [-9223372036854775808]]",
        ),
        (DType::Int64, "[9223372036854775808]"),
        (DType::Bool, "[true, [false, true]]"),
        (DType::Bool, "[1]"),
        (DType::String, r#"["a", ["\u00e9\n", ""]]"#),
        (DType::String, r#"["a", 1]"#),
        (DType::Float32, r#"[1, "a"]"#),
        (DType::Float32, "[1, null]"),
        (DType::Float64, "[[1, 2], [3, {}]]"),
    ];
    for (dtype, text) in cases {
        let raw = RawValue::from_string(text.to_string()).unwrap();
        let tree: Json = serde_json::from_str(text).unwrap();
        assert_eq!(
            decode_json_text(*dtype, &raw, 0),
            decode_json_values(*dtype, &tree),
            "{dtype:?} {text}"
        );
    }
    // In a request, whichever comes first of data and datatype.
    for body in [
        r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT64","data":[1,[2]]}]}"#,
        r#"{"inputs":[{"data":[1,[2]],"name":"x","datatype":"INT64","shape":[2]}]}"#,
    ] {
        let r = parse_request(body.as_bytes(), None).unwrap();
        assert_eq!(
            r.inputs[0].1.data,
            TensorData::Int64(Cow::Owned(vec![1, 2]))
        );
    }
    for body in [
        r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT64","data":[1,{"a":[2]}]}]}"#,
        r#"{"inputs":[{"data":[1,{"a":[2]}],"name":"x","datatype":"INT64","shape":[2]}]}"#,
    ] {
        assert_eq!(
            parse_request(body.as_bytes(), None)
                .unwrap_err()
                .to_string(),
            r#"input 'x': element 1 is {"a":[2]}, not an int64"#
        );
    }
    let dup = br#"{"inputs":[{"name":"x","name":"y","shape":[1],"datatype":"FP32","data":[1]}]}"#;
    assert!(parse_request(dup, None)
        .unwrap_err()
        .to_string()
        .contains("duplicate field `name`"));
    let tree = |t: &str| serde_json::from_str::<Json>(t).unwrap();
    let faults = [
        (
            DType::Int32,
            "[2147483648]",
            "element 0 is 2147483648, not an int32",
        ),
        (DType::Int32, "[1, 1.0]", "element 1 is 1.0, not an int32"),
        (
            DType::Int64,
            "[9223372036854775808]",
            "element 0 is 9223372036854775808, not an int64",
        ),
        (
            DType::Bool,
            "[true, [1]]",
            "element 1 is 1, not true or false",
        ),
        (DType::String, r#"["a", 1]"#, "element 1 is 1, not a string"),
        (
            DType::Float32,
            "[1, null]",
            "element 1 is null, not a number that fits FP32 (at most 3.4e38 in magnitude)",
        ),
        (
            DType::Float64,
            "[[1, 2], [3, {}]]",
            "element 3 is {}, not a number",
        ),
    ];
    for (dtype, text, message) in faults {
        assert_eq!(decode_json_values(dtype, &tree(text)).unwrap_err(), message);
    }
    assert_eq!(
        decode_json_values(
            DType::Float32,
            &tree("[16777217, [18446744073709551615], -1.5]")
        ),
        Ok(TensorData::Float32(Cow::Owned(vec![
            16777216.0,
            1.8446744e19,
            -1.5
        ])))
    );
    assert_eq!(
        decode_json_values(DType::String, &tree(r#"["\u00e9\n", [""]]"#)),
        Ok(TensorData::String(Cow::Owned(vec![
            "é\n".into(),
            String::new()
        ])))
    );
    let raw = RawValue::from_string(r#"[1, "a"]"#.into()).unwrap();
    assert_eq!(
        decode_json_text(DType::Float32, &raw, 2).unwrap_err(),
        r#"element 1 is "a", not a number that fits FP32 (at most 3.4e38 in magnitude)"#
    );
}

#[test]
fn special_floats_out_of_range_numbers_and_sequences() {
    // Bare tokens (tritonclient) and strings (this server's answers) both decode.
    for body in [
        r#"{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[NaN, Infinity, -Infinity, 1.5]}]}"#,
        r#"{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":["NaN","Infinity","-Infinity",1.5]}]}"#,
    ] {
        let r = parse_request(body.as_bytes(), None).unwrap();
        let TensorData::Float32(v) = &r.inputs[0].1.data else {
            panic!("FP32")
        };
        assert!(v[0].is_nan() && v[1] == f32::INFINITY && v[2] == f32::NEG_INFINITY);
        assert_eq!(v[3], 1.5);
    }
    // A string holding "NaN" stays a string; only bare tokens are read as numbers.
    let r = parse_request(
        br#"{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["NaN","a\"NaN"]}]}"#,
        None,
    )
    .unwrap();
    assert_eq!(
        r.inputs[0].1.data,
        TensorData::String(Cow::Owned(vec!["NaN".into(), "a\"NaN".into()]))
    );
    let mut out = Vec::new();
    write_data_json(
        &TensorData::Float32(Cow::Owned(vec![
            f32::NAN,
            0.1,
            f32::NEG_INFINITY,
            f32::INFINITY,
        ])),
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"["NaN",0.1,"-Infinity","Infinity"]"#
    );
    let e = parse_request(
        br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1, 1e308]}]}"#,
        None,
    )
    .unwrap_err();
    assert!(
        e.message().contains("input 'x'")
            && e.message().contains("element 1 is 1e+308")
            && e.message().contains("FP32"),
        "{}",
        e.message()
    );
    assert!(parse_request(
        br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[1e308]}]}"#,
        None
    )
    .is_ok());
    for params in [
        r#"{"sequence_id": 7}"#,
        r#"{"sequence_id": "abc", "sequence_start": true}"#,
        r#"{"sequence_end": true}"#,
    ] {
        let body = format!(
            r#"{{"parameters":{params},"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":[1]}}]}}"#
        );
        let e = parse_request(body.as_bytes(), None).unwrap_err();
        assert!(e.message().contains("sequence batching"), "{}", e.message());
    }
    let body = r#"{"parameters":{"sequence_id":0,"custom":1},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
    assert!(parse_request(body.as_bytes(), None).is_ok());
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let cases: &[(&[u8], &str)] = &[
        (b"{", "not a valid inference request"),
        (br#"{"inputs":[]}"#, "no inputs"),
        (
            br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
            "holds 3 elements but the data has 2",
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP8","data":[1]}]}"#,
            "not supported",
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[1.5]}]}"#,
            "not an int64",
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"INT64","data":[1]}]}"#,
            "negative",
        ),
    ];
    for (body, want) in cases {
        let e = parse_request(body, None).unwrap_err();
        assert!(e.message().contains(want), "{} lacks {want}", e.message());
    }
}

#[test]
fn correlation_keys_are_one_per_row_and_bounded() {
    let parse = |shape: &str, data: &str, keys: &str| {
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":{shape},"datatype":"FP32","data":{data}}}],"parameters":{{"correlation_id":{keys}}}}}"#
        );
        parse_request(body.as_bytes(), None)
    };
    assert_eq!(parse("[1]", "[1]", r#""loan-1""#).unwrap().keys, ["loan-1"]);
    assert_eq!(
        parse("[2]", "[1,2]", r#""b""#).unwrap().keys,
        ["b/0", "b/1"]
    );
    assert_eq!(
        parse("[2]", "[1,2]", r#"["x","y"]"#).unwrap().keys,
        ["x", "y"]
    );
    let refused = |shape: &str, data: &str, keys: &str, words: &str| {
        let e = parse(shape, data, keys).unwrap_err();
        assert!(e.message().contains(words), "{}", e.message());
    };
    refused("[2]", "[1,2]", r#"["x"]"#, "1 keys for 2 rows");
    refused("[1]", "[1]", r#""""#, "1 to 200 bytes");
    refused("[1]", "[1]", r#""a\u0000b""#, "control characters");
    refused("[1]", "[1]", "7", "a text or a list of texts");
    // a billion rows of nothing: refused before a key is made for each
    refused(
        "[1000000000,0]",
        "[]",
        r#""k""#,
        "keyed requests have at most",
    );
}
