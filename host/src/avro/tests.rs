//! Tests for the Avro codec, including the Apache Avro sample files shared in
//! `/work/shared/data/avro` (reached relative to the crate manifest).

use serde_json::{Value, json};

use super::*;

macro_rules! data {
    ($name:literal) => {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/avro/",
            $name
        )
    };
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn schema(text: &str) -> Schema {
    Schema::parse_str(text).unwrap_or_else(|e| panic!("schema should parse: {e}\n{text}"))
}

/// encode → decode gives the value back, and decode → encode the bytes.
fn round_trip(s: &Schema, v: &Value) -> Vec<u8> {
    let bytes = encode_json(s, v).unwrap_or_else(|e| panic!("encode {v}: {e}"));
    let back = decode_exact(s, &bytes).unwrap_or_else(|e| panic!("decode {v}: {e}"));
    assert_eq!(&back, v, "decode(encode(v)) != v");
    let text = decode_exact_to_text(s, &bytes).unwrap_or_else(|e| panic!("decode {v}: {e}"));
    assert_eq!(
        text,
        back.to_string(),
        "text decoding differs from the value's text"
    );
    let again = encode_json(s, &back).expect("re-encode");
    assert_eq!(again, bytes, "encode(decode(x)) != x");
    if let Value::Object(fields) = &back
        && matches!(s.node(s.root()).kind, NodeKind::Record(_))
    {
        let first: Vec<&String> = fields.keys().take(1).collect();
        for keep in [Vec::new(), first, fields.keys().collect()] {
            let cut = decode_exact_fields(s, &bytes, |name| keep.iter().any(|k| *k == name))
                .unwrap_or_else(|e| panic!("decode fields {keep:?} of {v}: {e}"));
            assert_eq!(cut, only_fields(&back, &keep), "fields {keep:?} of {v}");
        }
    }
    bytes
}

/// `value` (an object) with only the fields named in `keep`.
fn only_fields<K: AsRef<str>>(value: &Value, keep: &[K]) -> Value {
    let Value::Object(fields) = value else {
        panic!("not an object: {value}")
    };
    Value::Object(
        fields
            .iter()
            .filter(|(name, _)| keep.iter().any(|k| k.as_ref() == name.as_str()))
            .map(|(name, v)| (name.clone(), v.clone()))
            .collect(),
    )
}

fn encode_err(s: &Schema, v: &Value) -> EncodeError {
    encode_json(s, v).expect_err("encoding should fail")
}

// ---------------------------------------------------------------- shared data

#[test]
fn parses_every_shared_schema() {
    let dir = data!("");
    let mut parsed = 0;
    for entry in std::fs::read_dir(dir).expect("shared avro directory") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".avsc") || name.ends_with("schema.json") {
            let text = std::fs::read_to_string(&path).expect("read schema");
            let s = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            // Canonical form must itself be a parseable, fixed-point schema.
            let canon = s.canonical_form();
            assert_eq!(schema(&canon).canonical_form(), canon, "{name}");
            parsed += 1;
        }
    }
    assert_eq!(parsed, 7);
}

#[test]
fn shared_schema_details() {
    let s = schema(&String::from_utf8(read(data!("avro__schemas__weather.avsc"))).unwrap());
    assert_eq!(
        s.canonical_form(),
        r#"{"name":"test.Weather","type":"record","fields":[{"name":"station","type":"string"},{"name":"time","type":"long"},{"name":"temp","type":"int"}]}"#
    );
    let NodeKind::Record(r) = &s.node(s.root()).kind else {
        panic!("record")
    };
    assert_eq!(r.fields[0].order, FieldOrder::Ignore);
    assert_eq!(r.doc.as_deref(), Some("A weather reading."));

    let s = schema(
        &String::from_utf8(read(data!("avro__schemas__RecordWithRequiredFields.avsc"))).unwrap(),
    );
    let e = s
        .named("org.apache.avro.MapRecordEnum")
        .expect("nested enum inherits namespace");
    let NodeKind::Enum(e) = &s.node(e).kind else {
        panic!("enum")
    };
    assert_eq!(e.default.as_deref(), Some("A"));

    let s = schema(&String::from_utf8(read(data!("avro__schemas__fooBar.avsc"))).unwrap());
    let v = json!({"title": "t", "created_at": "2024-02-29T23:59:59.999Z"});
    round_trip(&s, &v);
    round_trip(&s, &json!({"title": "t", "created_at": null}));

    let s = schema(
        &String::from_utf8(read(data!("avro__schemas__FooBarSpecificRecord.avsc"))).unwrap(),
    );
    // `typeEnum` has a null default, so it may be omitted.
    let bytes = encode_json(
        &s,
        &json!({"id": 1, "name": "n", "nicknames": [], "relatedids": [1, 2]}),
    )
    .unwrap();
    assert_eq!(
        decode_exact(&s, &bytes).unwrap(),
        json!({"id": 1, "name": "n", "nicknames": [], "relatedids": [1, 2], "typeEnum": null})
    );
    round_trip(
        &s,
        &json!({"id": 1, "name": "n", "nicknames": ["a"], "relatedids": [], "typeEnum": "b"}),
    );
}

fn weather_expected() -> Vec<Value> {
    String::from_utf8(read(data!("avro__weather.json")))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn decodes_weather_container() {
    let (s, records) = read_container(&read(data!("avro__weather.avro"))).expect("weather.avro");
    assert_eq!(s.node(s.root()).type_name(), "test.Weather");
    assert_eq!(records, weather_expected());
    for r in &records {
        round_trip(&s, r);
    }
}

#[test]
fn decodes_weather_deflate_container() {
    let (_, records) =
        read_container(&read(data!("avro__weather-deflate.avro"))).expect("weather-deflate.avro");
    assert_eq!(records, weather_expected());
}

#[test]
fn decodes_simple_container_without_codec_metadata() {
    let (_, records) =
        read_container(&read(data!("avro__schemas__simple__data.avro"))).expect("data.avro");
    let texts: Vec<&str> = records
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello", "bonjour", "guten tag"]);
}

#[test]
fn container_errors() {
    assert!(matches!(
        read_container(b"nope"),
        Err(ContainerError::BadMagic)
    ));
    // Header naming an unsupported codec.
    let mut file = b"Obj\x01".to_vec();
    file.push(4); // two metadata entries
    for (k, v) in [("avro.schema", "\"int\""), ("avro.codec", "snappy")] {
        file.push((k.len() * 2) as u8);
        file.extend_from_slice(k.as_bytes());
        file.push((v.len() * 2) as u8);
        file.extend_from_slice(v.as_bytes());
    }
    file.push(0);
    file.extend_from_slice(&[7u8; 16]);
    let err = read_container(&file).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported codec `snappy`; supported codecs are `null` and `deflate`"
    );

    // A corrupted sync marker is reported with its block number.
    let mut weather = read(data!("avro__weather.avro"));
    let last = weather.len() - 1;
    weather[last] ^= 0xff;
    let err = read_container(&weather).unwrap_err();
    assert!(err.to_string().contains("sync marker"), "{err}");
}

#[test]
fn single_object_message_v1() {
    let s = schema(&String::from_utf8(read(data!("avro__messageV1__test_schema.avsc"))).unwrap());
    let msg = read(data!("avro__messageV1__test_message.bin"));
    assert_eq!(&msg[..2], [0xc3, 0x01]);
    assert_eq!(&msg[2..10], s.fingerprint_rabin().to_le_bytes());
    let expected = json!({"id": 42, "name": "Bill", "tags": ["dog_lover", "cat_hater"]});
    assert_eq!(decode_exact(&s, &msg[10..]).unwrap(), expected);
    assert_eq!(encode_json(&s, &expected).unwrap(), &msg[10..]);
}

// ------------------------------------------------------------ canonical form

#[test]
fn canonical_form_normalises_spelling() {
    assert_eq!(
        schema(r#"{"type":"string"}"#).canonical_form(),
        r#""string""#
    );
    assert_eq!(schema(r#""string""#).canonical_form(), r#""string""#);
    let a = schema(
        r#"{"namespace":"com.x","type":"record","name":"R","doc":"d",
            "fields":[{"type":{"type":"array","items":"int"},"name":"a","default":[]},
                      {"name":"b","type":{"type":"fixed","size":4,"name":"F","aliases":["G"]}},
                      {"name":"c","type":"F"}]}"#,
    );
    let b = schema(
        r#"{"fields":[{"name":"a","type":{"items":{"type":"int"},"type":"array"}},
                      {"name":"b","type":{"name":"com.x.F","type":"fixed","size":4}},
                      {"name":"c","type":"com.x.F"}],
            "name":"com.x.R","type":"record"}"#,
    );
    let expected = r#"{"name":"com.x.R","type":"record","fields":[{"name":"a","type":{"type":"array","items":"int"}},{"name":"b","type":{"name":"com.x.F","type":"fixed","size":4}},{"name":"c","type":"com.x.F"}]}"#;
    assert_eq!(a.canonical_form(), expected);
    assert_eq!(b.canonical_form(), expected);
    assert_eq!(a.fingerprint_rabin(), b.fingerprint_rabin());
    assert_eq!(a, b);
    // Logical types and sizes written as 4.0-style numbers are not kept.
    assert_eq!(
        schema(r#"{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}"#)
            .canonical_form(),
        r#""bytes""#
    );
}

#[test]
fn rabin_fingerprints_match_spec_vectors() {
    // Values from the Avro project's schema-tests.txt (signed i64 there).
    let cases: [(&str, i64); 6] = [
        (r#""null""#, 7_195_948_357_588_979_594),
        (r#"{"type":"null"}"#, 7_195_948_357_588_979_594),
        (
            r#"{"type":"fixed","name":"foo","size":15}"#,
            1_756_455_273_707_447_556,
        ),
        (
            r#"{"type":"record","name":"foo","fields":[{"name":"f1","type":"boolean"}]}"#,
            7_843_277_075_252_814_651,
        ),
        (r#"["int","boolean"]"#, 5_392_556_393_470_105_090),
        (
            r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
            -1_759_257_747_318_642_341,
        ),
    ];
    for (text, fp) in cases {
        assert_eq!(schema(text).fingerprint_rabin(), fp as u64, "{text}");
    }
    assert_eq!(
        schema(r#""null""#).fingerprint_rabin(),
        0x63dd_24e7_cc25_8f8a
    );
}

// --------------------------------------------------------------- schema errors

#[test]
fn rejects_invalid_schemas() {
    let cases = [
        (
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":{"type":"record","name":"A","fields":[]}}]}"#,
            "duplicate definition of named type `A`",
        ),
        (
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":"B"}]}"#,
            "unknown type `B`",
        ),
        (
            r#"["int","string","int"]"#,
            "invalid union: duplicate branch `int`",
        ),
        (
            r#"["null",["int"]]"#,
            "invalid union: a union may not directly contain another union",
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["A","B","A"]}"#,
            "duplicate symbol `A` in enum `E`",
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["1A"]}"#,
            "invalid symbol `1A`",
        ),
        (
            r#"{"type":"record","name":"a-b","fields":[]}"#,
            "invalid name `a-b`",
        ),
        (
            r#"{"type":"record","name":"R","namespace":"x..y","fields":[]}"#,
            "invalid namespace `x..y.R`",
        ),
        (
            r#"{"type":"fixed","name":"int","size":1}"#,
            "invalid name (a primitive type name) `int`",
        ),
        (
            r#"{"type":"record","name":"R","fields":[{"name":"count","type":"int","default":"x"}]}"#,
            "default of field `count` is not a valid `int`",
        ),
        (
            r#"{"type":"record","name":"R","fields":[{"name":"u","type":["null","int"],"default":1}]}"#,
            "default of field `u` is not a valid `union`",
        ),
        (
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}"#,
            "duplicate field `a`",
        ),
        (r#"{"type":"array"}"#, "missing required attribute `items`"),
        (
            r#"{"type":"record","name":"R","fields":[{"name":"o","type":"int","order":"up"}]}"#,
            "invalid `order`",
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["A"],"default":"B"}"#,
            "default `B` of enum `E`",
        ),
        (
            r#"{"type":"fixed","name":"F","size":-1}"#,
            "`size` of fixed `F`",
        ),
        ("{", "schema is not valid json"),
        (r#"{"type":"mystery"}"#, "unknown type `mystery`"),
    ];
    for (text, want) in cases {
        let err = Schema::parse_str(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text}: got `{err}`, want `{want}`");
    }
}

#[test]
fn accepts_valid_defaults_and_names() {
    let s = schema(
        r#"{"type":"record","name":"R","namespace":"a.b","fields":[
            {"name":"i","type":"int","default":7},
            {"name":"b","type":"bytes","default":"\u00ff\u0000"},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["X","Y"]},"default":"Y"},
            {"name":"u","type":["string","null"],"default":"s"},
            {"name":"r","type":{"type":"record","name":"In","fields":[{"name":"z","type":"long","default":1}]},"default":{}},
            {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":5,"scale":2},"default":"\u0001"},
            {"name":"dt","type":{"type":"int","logicalType":"date"},"default":0},
            {"name":"m","type":{"type":"map","values":"double"},"default":{"x":1}},
            {"name":"f","type":"float","default":1.5}
        ]}"#,
    );
    let bytes = encode_json(&s, &json!({})).unwrap();
    assert_eq!(
        decode_exact(&s, &bytes).unwrap(),
        json!({"i": 7, "b": "\u{ff}\u{0}", "e": "Y", "u": "s", "r": {"z": 1}, "d": "0.01",
               "dt": "1970-01-01", "m": {"x": 1.0}, "f": 1.5})
    );
    assert!(s.named("a.b.In").is_some());
    assert!(s.named("a.b.E").is_some());
}

#[test]
fn namespace_resolution() {
    let s = schema(
        r#"{"type":"record","name":"Outer","namespace":"n1","fields":[
            {"name":"a","type":{"type":"record","name":"x.Inner","fields":[
                {"name":"b","type":{"type":"enum","name":"E","symbols":["S"]}}]}},
            {"name":"c","type":{"type":"fixed","name":"F","namespace":"","size":1}},
            {"name":"d","type":"x.E"},
            {"name":"e","type":"F"},
            {"name":"f","type":"Outer2"}
        ]}"#
        .replace(
            r#"{"name":"f","type":"Outer2"}"#,
            r#"{"name":"f","type":["null","Outer"]}"#,
        )
        .as_str(),
    );
    // `E` inherits `x` from its enclosing `x.Inner`, not `n1`.
    assert!(s.named("x.E").is_some());
    assert!(s.named("n1.E").is_none());
    // An empty namespace puts `F` in the null namespace; unqualified `F` from
    // `n1` still finds it (null-namespace fallback).
    assert!(s.named("F").is_some());
    round_trip(
        &s,
        &json!({"a": {"b": "S"}, "c": "\u{1}", "d": "S", "e": "\u{2}", "f": null}),
    );
}

#[test]
fn invalid_logical_types_fall_back() {
    let cases = [
        r#"{"type":"int","logicalType":"decimal","precision":4}"#,
        r#"{"type":"bytes","logicalType":"decimal","precision":2,"scale":3}"#,
        r#"{"type":"bytes","logicalType":"decimal"}"#,
        r#"{"type":"fixed","name":"F","size":2,"logicalType":"decimal","precision":5}"#,
        r#"{"type":"string","logicalType":"date"}"#,
        r#"{"type":"long","logicalType":"time-millis"}"#,
        r#"{"type":"fixed","name":"D","size":11,"logicalType":"duration"}"#,
        r#"{"type":"long","logicalType":"no-such-type"}"#,
    ];
    for text in cases {
        let s = schema(text);
        assert_eq!(s.node(s.root()).logical, None, "{text}");
    }
    let s = schema(r#"{"type":"fixed","name":"F","size":2,"logicalType":"decimal","precision":4}"#);
    assert_eq!(
        s.node(s.root()).logical,
        Some(LogicalType::Decimal {
            precision: 4,
            scale: 0
        })
    );
    // A date-annotated string is just a string.
    round_trip(
        &schema(r#"{"type":"string","logicalType":"date"}"#),
        &json!("2024-13-99"),
    );
}

// ---------------------------------------------------------------- round-trips

const EVERYTHING: &str = r#"{
  "type": "record", "name": "Everything", "namespace": "test",
  "fields": [
    {"name": "n", "type": "null"},
    {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "by", "type": "bytes"},
    {"name": "s", "type": "string"},
    {"name": "a", "type": {"type": "array", "items": "long"}},
    {"name": "m", "type": {"type": "map", "values": "string"}},
    {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
    {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "u", "type": ["null", "string", "long"]},
    {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "decf", "type": {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 4}},
    {"name": "uuid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "date", "type": {"type": "int", "logicalType": "date"}},
    {"name": "tmil", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "tmic", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "tsm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "ltm", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "ltu", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
    {"name": "dur", "type": {"type": "fixed", "name": "Dur", "size": 12, "logicalType": "duration"}},
    {"name": "payer", "type": ["null", {"type": "record", "name": "Payer", "fields": [
        {"name": "name", "type": "string"},
        {"name": "ids", "type": {"type": "array", "items": ["null", "Payer"]}}
    ]}]}
  ]
}"#;

fn everything_value() -> Value {
    json!({
        "n": null, "b": true, "i": -2147483648, "l": 9223372036854775807_i64,
        "f": 1.5, "d": -0.1, "by": "\u{0}\u{7f}\u{80}\u{ff}", "s": "héllo ✓",
        "a": [1, -1, 0], "m": {"k": "v", "z": ""}, "e": "GREEN", "fx": "abc\u{ff}",
        "u": 5, "dec": "-8513.88", "decf": "12345678901234.5678",
        "uuid": "123e4567-e89b-12d3-a456-426614174000", "date": "2024-02-29",
        "tmil": 45296789, "tmic": 45296789012_i64,
        "tsm": "1969-12-31T23:59:59.999Z", "tsu": "2024-01-31T12:34:56.123456Z",
        "ltm": "2024-01-31T12:34:56.123", "ltu": "0001-01-01T00:00:00.000001",
        "dur": {"months": 1, "days": 2, "milliseconds": 3},
        "payer": {"name": "p", "ids": [null, {"name": "q", "ids": []}]}
    })
}

#[test]
fn round_trips_every_type() {
    let s = schema(EVERYTHING);
    round_trip(&s, &everything_value());
    let mut v = everything_value();
    v["u"] = json!("text");
    v["payer"] = Value::Null;
    v["f"] = json!("NaN");
    v["d"] = json!("-Infinity");
    v["a"] = json!([]);
    v["m"] = json!({});
    round_trip(&s, &v);
}

#[test]
fn primitive_encodings_match_spec() {
    assert_eq!(
        encode_json(&schema(r#""long""#), &json!(-64)).unwrap(),
        [0x7f]
    );
    assert_eq!(
        encode_json(&schema(r#""long""#), &json!(64)).unwrap(),
        [0x80, 0x01]
    );
    assert_eq!(
        encode_json(&schema(r#""string""#), &json!("foo")).unwrap(),
        [6, b'f', b'o', b'o']
    );
    assert_eq!(
        encode_json(&schema(r#"["null","string"]"#), &json!("a")).unwrap(),
        [2, 2, b'a']
    );
    assert_eq!(
        encode_json(
            &schema(r#"{"type":"array","items":"long"}"#),
            &json!([3, 27])
        )
        .unwrap(),
        [4, 6, 54, 0]
    );
    // Floats accept integers.
    assert_eq!(
        encode_json(&schema(r#""double""#), &json!(1)).unwrap(),
        1.0f64.to_le_bytes()
    );
    assert_eq!(
        encode_json(&schema(r#""float""#), &json!(2)).unwrap(),
        2.0f32.to_le_bytes()
    );
    round_trip(&schema(r#""long""#), &json!(i64::MIN));
}

#[test]
fn recursive_linked_list() {
    let s = schema(
        r#"{"type":"record","name":"LongList","fields":[
            {"name":"value","type":"long"},
            {"name":"next","type":["null","LongList"]}]}"#,
    );
    let mut v = json!({"value": 0, "next": null});
    for i in 1..100 {
        let mut m = serde_json::Map::new();
        m.insert("value".into(), json!(i));
        m.insert("next".into(), v);
        v = Value::Object(m);
    }
    round_trip(&s, &v);
    // Interop's recursive `Node` through an array.
    let interop = schema(&String::from_utf8(read(data!("avro__schemas__interop.avsc"))).unwrap());
    let value = json!({
        "intField": 1, "longField": 2, "stringField": "s", "boolField": false,
        "floatField": 0.5, "doubleField": 2.25, "bytesField": "\u{1}", "nullField": null,
        "arrayField": [1.0, 2.0], "mapField": {"a": {"label": "x"}},
        "unionField": [ "\u{2}" ], "enumField": "C", "fixedField": "0123456789abcdef",
        "recordField": {"label": "root", "children": [{"label": "leaf", "children": []}]}
    });
    round_trip(&interop, &value);
}

#[test]
fn depth_limit_stops_hostile_nesting() {
    let s =
        schema(r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#);
    // Each level is branch index 1 (zig-zag 2); never terminated.
    let deep = vec![2u8; 10_000];
    let err = decode_exact(&s, &deep).unwrap_err();
    assert!(matches!(err.kind(), DecodeErrorKind::TooDeep(_)), "{err}");
    // Built by hand: `json!` would serialise the nested value recursively.
    let mut v = Value::Null;
    for _ in 0..1000 {
        let mut m = serde_json::Map::new();
        m.insert("next".into(), v);
        v = Value::Object(m);
    }
    let err = encode_err(&s, &v);
    assert!(err.message().contains("nested deeper"), "{err}");
}

// ---------------------------------------------------------------------- unions

#[test]
fn union_branch_selection() {
    let s = schema(
        r#"["null",
            {"type":"record","name":"Cat","fields":[{"name":"meow","type":"string"},{"name":"age","type":"int","default":0}]},
            {"type":"record","name":"Dog","fields":[{"name":"woof","type":"string"}]},
            {"type":"map","values":"long"},
            "string", "double"]"#,
    );
    let idx = |v: Value| encode_json(&s, &v).unwrap()[0] / 2;
    assert_eq!(idx(json!(null)), 0);
    assert_eq!(idx(json!({"meow": "m"})), 1);
    assert_eq!(idx(json!({"woof": "w"})), 2);
    assert_eq!(idx(json!({"other": 1})), 3);
    assert_eq!(idx(json!("s")), 4);
    assert_eq!(idx(json!(1)), 5);
    // Avro-style wrappers by short name, fullname or type keyword.
    assert_eq!(idx(json!({"Dog": {"woof": "w"}})), 2);
    assert_eq!(idx(json!({"map": {"meow": 1}})), 3);
    assert_eq!(idx(json!({"string": "s"})), 4);
    // A map value that looks like a wrapper of another branch is decoded
    // wrapped, so it re-encodes to the same branch.
    let sm = schema(r#"["string",{"type":"map","values":"string"}]"#);
    let bytes = encode_json(&sm, &json!({"map": {"string": "x"}})).unwrap();
    assert_eq!(bytes[0] / 2, 1);
    let decoded = decode_exact(&sm, &bytes).unwrap();
    assert_eq!(decoded, json!({"map": {"string": "x"}}));
    assert_eq!(encode_json(&sm, &decoded).unwrap(), bytes);
    // Without the clash no wrapper is needed.
    let bytes = encode_json(&sm, &json!({"k": "x"})).unwrap();
    assert_eq!(decode_exact(&sm, &bytes).unwrap(), json!({"k": "x"}));

    // A double that would be taken as a long is wrapped on the way out.
    let s2 = schema(r#"["long","double"]"#);
    let bytes = encode_json(&s2, &json!(2.5)).unwrap();
    assert_eq!(decode_exact(&s2, &bytes).unwrap(), json!(2.5));
    let bytes = encode_json(&s2, &json!({"double": 3})).unwrap();
    let decoded = decode_exact(&s2, &bytes).unwrap();
    assert_eq!(decoded, json!(3.0));
    assert_eq!(encode_json(&s2, &decoded).unwrap(), bytes);

    let s3 =
        schema(r#"["string",{"type":"bytes","logicalType":"decimal","precision":4,"scale":1}]"#);
    let bytes = encode_json(&s3, &json!({"bytes": "1.5"})).unwrap();
    assert_eq!(decode_exact(&s3, &bytes).unwrap(), json!({"bytes": "1.5"}));
}

#[test]
fn nested_records_inside_unions_round_trip() {
    let s = schema(EVERYTHING);
    let NodeKind::Record(r) = &s.node(s.root()).kind else {
        panic!()
    };
    let payer = r.fields[r.field_index("payer").unwrap()].schema;
    let NodeKind::Union(b) = &s.node(payer).kind else {
        panic!()
    };
    assert_eq!(s.node(b[1]).type_name(), "test.Payer");
}

// ------------------------------------------------------------- encode errors

const CLAIM: &str = r#"{"type":"record","name":"Claim","fields":[
    {"name":"payer","type":["null",{"type":"record","name":"Payer","fields":[
        {"name":"name","type":"string"},{"name":"id","type":"long"}]}]},
    {"name":"service_lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
        {"name":"charge","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
        {"name":"units","type":"int","default":1}]}}},
    {"name":"tags","type":{"type":"map","values":"int"},"default":{}}
]}"#;

#[test]
fn encode_errors_carry_json_path() {
    let s = schema(CLAIM);
    let err = encode_err(
        &s,
        &json!({"payer": {"name": 5, "id": 1}, "service_lines": []}),
    );
    assert_eq!(err.path(), "$.payer.name");
    assert_eq!(err.message(), "expected `string`, found number");
    assert_eq!(
        err.to_string(),
        "at `$.payer.name`: expected `string`, found number"
    );

    let lines = json!([{"charge": "1.00"}, {"charge": 2}, {"charge": "1.234"}]);
    let err = encode_err(&s, &json!({"payer": null, "service_lines": lines}));
    assert_eq!(err.path(), "$.service_lines[2].charge");
    assert!(
        err.message().contains("more than 2 fraction digits"),
        "{err}"
    );

    let err = encode_err(&s, &json!({"payer": null, "service_lines": [], "tagz": {}}));
    assert_eq!(err.path(), "$.tagz");
    assert_eq!(
        err.message(),
        "unknown field `tagz` in record `Claim`; remove it or use one of `payer`, `service_lines`, `tags`"
    );

    let err = encode_err(&s, &json!({"payer": {"name": "n"}, "service_lines": []}));
    assert_eq!(err.path(), "$.payer.id");
    assert_eq!(
        err.message(),
        "missing required field `id` of record `Payer`"
    );

    let err = encode_err(&s, &json!({"payer": "acme", "service_lines": []}));
    assert_eq!(err.path(), "$.payer");
    assert_eq!(
        err.message(),
        "expected one of `null`, `Payer`, found string"
    );

    let err = encode_err(
        &s,
        &json!({"payer": null, "service_lines": [], "tags": {"a b": 1e10}}),
    );
    assert_eq!(err.path(), r#"$.tags["a b"]"#);
    assert!(err.message().contains("non-integer"), "{err}");

    let err = encode_err(
        &s,
        &json!({"payer": null, "service_lines": [], "tags": {"k": 3000000000_i64}}),
    );
    assert_eq!(err.message(), "3000000000 is out of range for `int`");
}

#[test]
fn scalar_range_and_kind_errors() {
    assert!(encode_json(&schema(r#""long""#), &json!(u64::MAX)).is_err());
    assert!(encode_json(&schema(r#""int""#), &json!(i64::from(i32::MAX) + 1)).is_err());
    assert!(encode_json(&schema(r#""float""#), &json!(1e300)).is_err());
    assert!(encode_json(&schema(r#""bytes""#), &json!("€")).is_err());
    assert!(
        encode_json(
            &schema(r#"{"type":"fixed","name":"F","size":2}"#),
            &json!("abc")
        )
        .is_err()
    );
    let err = encode_json(
        &schema(r#"{"type":"enum","name":"E","symbols":["A","B"]}"#),
        &json!("C"),
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        "`C` is not a symbol of enum `E`; expected one of `A`, `B`"
    );
    assert!(
        encode_json(
            &schema(r#"{"type":"string","logicalType":"uuid"}"#),
            &json!("nope")
        )
        .is_err()
    );
    assert!(encode_json(&schema(r#""boolean""#), &json!(1)).is_err());
}

// --------------------------------------------------------------- logical types

#[test]
fn dates_and_timestamps() {
    let date = schema(r#"{"type":"int","logicalType":"date"}"#);
    assert_eq!(encode_json(&date, &json!("1970-01-02")).unwrap(), [2]);
    assert_eq!(encode_json(&date, &json!(1)).unwrap(), [2]);
    assert_eq!(decode_exact(&date, &[1]).unwrap(), json!("1969-12-31"));
    assert!(encode_json(&date, &json!("2023-02-29")).is_err());
    assert!(encode_json(&date, &json!("2024-1-01")).is_err());
    // Years beyond 9999 stay integers.
    let far = encode_json(&date, &json!(3_000_000)).unwrap();
    assert_eq!(decode_exact(&date, &far).unwrap(), json!(3_000_000));

    let ts = schema(r#"{"type":"long","logicalType":"timestamp-millis"}"#);
    let enc =
        |v: Value| decode_exact(&schema(r#""long""#), &encode_json(&ts, &v).unwrap()).unwrap();
    assert_eq!(enc(json!("1970-01-01T00:00:00Z")), json!(0));
    assert_eq!(enc(json!("1970-01-01T01:00:00.5+01:00")), json!(500));
    assert_eq!(enc(json!("1969-12-31T19:00:00.000-05:00")), json!(0));
    assert_eq!(
        enc(json!("2001-09-09T01:46:40.000000Z")),
        json!(1_000_000_000_000_i64)
    );
    assert_eq!(enc(json!(-619524000000_i64)), json!(-619_524_000_000_i64));
    assert!(encode_json(&ts, &json!("2024-01-01T00:00:00.0001Z")).is_err());
    assert!(encode_json(&ts, &json!("2024-01-01T00:00:00")).is_err());
    assert!(encode_json(&ts, &json!("2024-01-01T24:00:00Z")).is_err());
    assert_eq!(
        decode_exact(&ts, &encode_json(&ts, &json!(-1)).unwrap()).unwrap(),
        json!("1969-12-31T23:59:59.999Z")
    );

    let local = schema(r#"{"type":"long","logicalType":"local-timestamp-micros"}"#);
    assert!(encode_json(&local, &json!("2024-01-01T00:00:00Z")).is_err());
    round_trip(&local, &json!("2024-01-01T00:00:00.000000"));
}

#[test]
fn decimal_rescaling() {
    let s = schema(r#"{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}"#);
    let bytes = |v: Value| encode_json(&s, &v).map(|b| b[1..].to_vec());
    // 8513.88 -> unscaled 851388 = 0x0CFDBC.
    assert_eq!(bytes(json!("8513.88")).unwrap(), [0x0c, 0xfd, 0xbc]);
    assert_eq!(bytes(json!(8513.88)).unwrap(), [0x0c, 0xfd, 0xbc]);
    assert_eq!(bytes(json!("8513.880")).unwrap(), [0x0c, 0xfd, 0xbc]);
    assert_eq!(bytes(json!("851388e-2")).unwrap(), [0x0c, 0xfd, 0xbc]);
    assert_eq!(bytes(json!(150)).unwrap(), [0x3a, 0x98]);
    assert_eq!(bytes(json!("0")).unwrap(), [0x00]);
    assert_eq!(bytes(json!("-0.01")).unwrap(), [0xff]);
    assert_eq!(bytes(json!("1.28")).unwrap(), [0x00, 0x80]);
    assert_eq!(bytes(json!("-1.28")).unwrap(), [0x80]);
    assert_eq!(bytes(json!("-1.29")).unwrap(), [0xff, 0x7f]);
    assert_eq!(bytes(json!("+.5")).unwrap(), [0x32]);
    // Loses digits / exceeds precision / garbage.
    for bad in [
        json!("1.001"),
        json!("10000.00"),
        json!("1e4"),
        json!("1.2.3"),
        json!(""),
        json!("1e999999999"),
        json!(true),
    ] {
        assert!(bytes(bad.clone()).is_err(), "{bad}");
    }
    assert!(bytes(json!("9999.99")).is_ok());
    // Rendering always has `scale` fraction digits.
    let dec = |b: &[u8]| {
        let mut buf = vec![(b.len() * 2) as u8];
        buf.extend_from_slice(b);
        decode_exact(&s, &buf).unwrap()
    };
    assert_eq!(dec(&[0x3a, 0x98]), json!("150.00"));
    assert_eq!(dec(&[0xff]), json!("-0.01"));
    assert_eq!(dec(&[]), json!("0.00"));
    assert_eq!(dec(&[0xff, 0xff, 0xff, 0xfe]), json!("-0.02"));
    // More digits than the precision allows is rejected on decode too.
    let err = decode_exact(&s, &[8, 0x7f, 0xff, 0xff, 0xff]).unwrap_err();
    assert!(
        matches!(err.kind(), DecodeErrorKind::InvalidValue(_)),
        "{err}"
    );

    // Fixed decimals are sign-extended to the size.
    let f = schema(
        r#"{"type":"fixed","name":"M","size":4,"logicalType":"decimal","precision":9,"scale":3}"#,
    );
    assert_eq!(encode_json(&f, &json!("-0.001")).unwrap(), [0xff; 4]);
    assert_eq!(encode_json(&f, &json!("1")).unwrap(), [0, 0, 0x03, 0xe8]);
    assert_eq!(
        decode_exact(&f, &[0, 0, 0x03, 0xe8]).unwrap(),
        json!("1.000")
    );
    assert!(encode_json(&f, &json!("1234567.890")).is_err());
    round_trip(&f, &json!("-999999.999"));

    // Scale 0 renders without a point; big precision uses many bytes.
    let big = schema(r#"{"type":"bytes","logicalType":"decimal","precision":40}"#);
    round_trip(&big, &json!("-1234567890123456789012345678901234567890"));
    round_trip(&big, &json!("0"));
}

#[test]
fn duration_and_uuid() {
    let d = schema(r#"{"type":"fixed","name":"D","size":12,"logicalType":"duration"}"#);
    let v = json!({"months": 1, "days": 2, "milliseconds": 4294967295_u32});
    let b = round_trip(&d, &v);
    assert_eq!(b, [1, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert!(encode_json(&d, &json!({"months": 1, "days": 2})).is_err());
    let u = schema(r#"{"type":"string","logicalType":"uuid"}"#);
    round_trip(&u, &json!("00000000-0000-0000-0000-00000000000A"));
}

// ---------------------------------------------------------------- decode errors

#[test]
fn decode_errors_and_hostile_lengths() {
    let kind = |s: &str, b: &[u8]| decode_exact(&schema(s), b).unwrap_err().kind().clone();
    assert_eq!(kind(r#""string""#, &[]), DecodeErrorKind::UnexpectedEof);
    assert_eq!(
        kind(r#""string""#, &[6, b'a']),
        DecodeErrorKind::LengthTooLarge(3)
    );
    assert_eq!(
        kind(r#""bytes""#, &[1]),
        DecodeErrorKind::NegativeLength(-1)
    );
    // Length 2^62: rejected before any allocation.
    assert!(matches!(
        kind(
            r#""bytes""#,
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f]
        ),
        DecodeErrorKind::LengthTooLarge(_)
    ));
    assert_eq!(
        kind(r#""long""#, &[0xff; 11]),
        DecodeErrorKind::VarintOverflow
    );
    assert_eq!(
        kind(r#""int""#, &[0x80, 0x80, 0x80, 0x80, 0x10]),
        DecodeErrorKind::IntOutOfRange(1 << 31)
    );
    assert_eq!(
        kind(r#""boolean""#, &[2]),
        DecodeErrorKind::InvalidBoolean(2)
    );
    assert_eq!(
        kind(r#""string""#, &[2, 0xff]),
        DecodeErrorKind::InvalidUtf8
    );
    assert_eq!(
        kind(r#"["null","int"]"#, &[4]),
        DecodeErrorKind::InvalidUnionIndex { index: 2, count: 2 }
    );
    assert_eq!(
        kind(r#"["null","int"]"#, &[1]),
        DecodeErrorKind::InvalidUnionIndex {
            index: -1,
            count: 2
        }
    );
    assert_eq!(
        kind(r#"{"type":"enum","name":"E","symbols":["A"]}"#, &[2]),
        DecodeErrorKind::InvalidEnumIndex { index: 1, count: 1 }
    );
    assert_eq!(kind(r#""int""#, &[2, 0]), DecodeErrorKind::TrailingBytes(1));
    assert_eq!(kind(r#""double""#, &[0; 7]), DecodeErrorKind::UnexpectedEof);
    // Huge array / map counts with little input.
    let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert!(matches!(
        kind(r#"{"type":"array","items":"long"}"#, &huge),
        DecodeErrorKind::LengthTooLarge(_)
    ));
    assert!(matches!(
        kind(r#"{"type":"map","values":"null"}"#, &huge),
        DecodeErrorKind::LengthTooLarge(_)
    ));
    // Zero-size items: the count cannot be checked against the input, so it is capped.
    assert!(matches!(
        kind(r#"{"type":"array","items":"null"}"#, &huge),
        DecodeErrorKind::LengthTooLarge(_)
    ));
    let ok = decode_exact(&schema(r#"{"type":"array","items":"null"}"#), &[6, 0]).unwrap();
    assert_eq!(ok, json!([null, null, null]));
    // Negative block counts carry a byte size.
    let arr = decode_exact(
        &schema(r#"{"type":"array","items":"int"}"#),
        &[3, 4, 2, 4, 0],
    )
    .unwrap();
    assert_eq!(arr, json!([1, 2]));

    // Paths point into the value.
    let s = schema(CLAIM);
    let good = encode_json(
        &s,
        &json!({"payer": {"name": "n", "id": 1}, "service_lines": []}),
    )
    .unwrap();
    let err = decode_exact(&s, &good[..3]).unwrap_err();
    assert_eq!(err.path(), "$.payer.id");
    assert_eq!(err.to_string(), "at `$.payer.id`: unexpected end of input");

    // decode_to_json leaves the rest of the input for the caller.
    let mut input: &[u8] = &[2, 4, 6];
    assert_eq!(
        decode_to_json(&schema(r#""int""#), &mut input).unwrap(),
        json!(1)
    );
    assert_eq!(input, [4, 6]);
}

// ------------------------------------------------------------------------ wire

#[test]
fn confluent_wire_format() {
    let framed = frame(0x0102_0304, b"body");
    assert_eq!(framed, [0, 1, 2, 3, 4, b'b', b'o', b'd', b'y']);
    assert_eq!(unframe(&framed).unwrap(), (0x0102_0304, b"body".as_slice()));
    assert_eq!(unframe(&[0, 0, 0, 0, 7]).unwrap(), (7, [].as_slice()));
    assert_eq!(unframe(&[]), Err(WireError::Empty));
    assert_eq!(unframe(&[0x7b, 0, 0, 0, 1]), Err(WireError::BadMagic(0x7b)));
    assert_eq!(unframe(&[0, 0, 1]), Err(WireError::TooShort(3)));
    assert_eq!(
        WireError::BadMagic(0x7b).to_string(),
        "wrong magic byte 0x7b: expected 0x00 (not a schema-registry framed message)"
    );
}

#[test]
fn schema_is_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Schema>();
    let s = schema(EVERYTHING);
    let t = s.clone();
    std::thread::spawn(move || encode_json(&t, &everything_value()).unwrap())
        .join()
        .unwrap();
    assert!(s.node_count() > 10);
}

/// Nested arrays of a zero-size type share one budget for the whole value,
/// so a record of a few bytes cannot demand gigabytes of output.
#[test]
fn nested_zero_size_arrays_share_one_budget() {
    fn long(out: &mut Vec<u8>, n: i64) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    let schema =
        Schema::parse_str(r#"{"type":"array","items":{"type":"array","items":"null"}}"#).unwrap();

    // 20 inner arrays of a million nulls each: about a hundred bytes.
    let mut bomb = Vec::new();
    long(&mut bomb, 20);
    for _ in 0..20 {
        long(&mut bomb, 1_000_000);
        long(&mut bomb, 0);
    }
    long(&mut bomb, 0);
    assert!(bomb.len() < 128);
    let error = decode_exact(&schema, &bomb).unwrap_err();
    assert!(
        matches!(error.kind(), DecodeErrorKind::LengthTooLarge(_)),
        "{error}"
    );

    // Many small arrays that add up past the budget are refused too.
    let mut sneaky = Vec::new();
    long(&mut sneaky, 100);
    for _ in 0..100 {
        long(&mut sneaky, 1_000);
        long(&mut sneaky, 0);
    }
    long(&mut sneaky, 0);
    assert!(decode_exact(&schema, &sneaky).is_err());

    // A reasonable value still decodes.
    let mut fine = Vec::new();
    long(&mut fine, 3);
    for _ in 0..3 {
        long(&mut fine, 100);
        long(&mut fine, 0);
    }
    long(&mut fine, 0);
    let value = decode_exact(&schema, &fine).unwrap();
    assert_eq!(value.as_array().unwrap().len(), 3);
    assert_eq!(value[2].as_array().unwrap().len(), 100);
}

#[test]
fn identity_form_ignores_spelling_but_keeps_meaning() {
    let form = |text: &str| Schema::parse_str(text).unwrap().identity_form();
    // Spelling: a primitive as an object, whitespace, key order, docs, and a
    // namespace written apart or in the full name.
    assert_eq!(form(r#"{"type":"string"}"#), form(r#""string""#));
    let apart = r#"{"type":"record","name":"Claim","namespace":"org.example","doc":"a claim",
        "fields":[{"name":"id","type":"string","default":"x"},
                  {"name":"status","type":{"type":"enum","name":"Status","symbols":["A","B"],"default":"A"}}]}"#;
    let full = r#"{"fields":[{"type":"string","name":"id","default":"x"},
        {"type":{"symbols":["A","B"],"type":"enum","name":"Status","default":"A"},"name":"status"}],
        "name":"org.example.Claim","type":"record"}"#;
    assert_eq!(form(apart), form(full));
    // Meaning: a default, an enum default, an alias and a decimal's scale
    // each make a different schema, though the canonical form is the same.
    let base = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
    let variants = [
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":0}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","aliases":["b"]}]}"#,
        r#"{"type":"record","name":"R","aliases":["Q"],"fields":[{"name":"a","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"int","logicalType":"date"}}]}"#,
    ];
    for variant in variants {
        assert_eq!(
            Schema::parse_str(variant).unwrap().canonical_form(),
            Schema::parse_str(base).unwrap().canonical_form()
        );
        assert_ne!(form(variant), form(base), "{variant}");
    }
    let decimal = |scale: u32| {
        form(&format!(
            r#"{{"type":"bytes","logicalType":"decimal","precision":9,"scale":{scale}}}"#
        ))
    };
    assert_ne!(decimal(2), decimal(3));
    assert_eq!(
        decimal(0),
        form(r#"{"type":"bytes","logicalType":"decimal","precision":9}"#)
    );
    // Object keys inside a default are sorted.
    assert_eq!(
        form(
            r#"{"type":"record","name":"R","fields":[{"name":"m","type":{"type":"map","values":"int"},"default":{"a":1,"b":2}}]}"#
        ),
        form(
            r#"{"type":"record","name":"R","fields":[{"name":"m","type":{"type":"map","values":"int"},"default":{"b":2,"a":1}}]}"#
        )
    );
}

/// Decoding straight to JSON text gives what decoding to a value and
/// printing it gives, on good input and bad: every truncation and many
/// single-byte corruptions of a value of the interop schema (records,
/// arrays, maps, unions, every scalar).
#[test]
fn text_decoding_matches_the_value_on_any_input() {
    let (interop, bytes) = interop_sample();
    let both = |input: &[u8]| {
        let text = decode_exact_to_text(&interop, input);
        let tree = decode_exact(&interop, input).map(|v| v.to_string());
        assert_eq!(text, tree, "input {input:?}");
        text.is_ok()
    };
    every_truncation_and_corruption(&bytes, both);
}

/// Decoding some top-level fields gives the whole value cut down to them,
/// and fails where and how decoding the whole value fails, on the same
/// inputs as above: a route filter sees what it would see in the whole
/// object, and an event it cannot decode is refused for the same reason.
#[test]
fn decoding_some_fields_matches_the_whole_value_on_any_input() {
    let (interop, bytes) = interop_sample();
    let keeps: [&[&str]; 5] = [
        &[],
        &["stringField"],
        &["mapField", "recordField"],
        &[
            "intField",
            "boolField",
            "doubleField",
            "nullField",
            "unionField",
            "fixedField",
        ],
        &[
            "intField",
            "longField",
            "stringField",
            "boolField",
            "floatField",
            "doubleField",
            "bytesField",
            "nullField",
            "arrayField",
            "mapField",
            "unionField",
            "enumField",
            "fixedField",
            "recordField",
        ],
    ];
    let same = |input: &[u8]| {
        let whole = decode_exact(&interop, input);
        for keep in keeps {
            let cut = decode_exact_fields(&interop, input, |name| keep.contains(&name));
            let expected = whole
                .as_ref()
                .map(|v| only_fields(v, keep))
                .map_err(Clone::clone);
            assert_eq!(cut, expected, "fields {keep:?} of input {input:?}");
        }
        whole.is_ok()
    };
    every_truncation_and_corruption(&bytes, same);
}

/// The interop schema and one value of it with every kind of node.
fn interop_sample() -> (Schema, Vec<u8>) {
    let interop = schema(&String::from_utf8(read(data!("avro__schemas__interop.avsc"))).unwrap());
    let value = json!({
        "intField": -7, "longField": 1_234_567_890_123_i64, "stringField": "quote \" tab \t é 😀",
        "boolField": true, "floatField": 1.5, "doubleField": -2.25e-300, "bytesField": "\u{0}\u{ff}",
        "nullField": null, "arrayField": [1.0, -0.0, 1e300],
        "mapField": {"a": {"label": "x"}, "b": {"label": "y"}},
        "unionField": 3.5, "enumField": "B", "fixedField": "0123456789abcdef",
        "recordField": {"label": "root", "children": [
            {"label": "leaf", "children": []},
            {"label": "inner", "children": [{"label": "deep", "children": []}]}
        ]}
    });
    let bytes = round_trip(&interop, &value);
    (interop, bytes)
}

/// Calls `decode` (which says whether the input decoded) on every
/// truncation of `bytes`, of which only the whole must decode, and on
/// seven one-byte corruptions at every position.
fn every_truncation_and_corruption(bytes: &[u8], decode: impl Fn(&[u8]) -> bool) {
    let mut decoded = 0;
    for end in 0..=bytes.len() {
        decoded += usize::from(decode(&bytes[..end]));
    }
    assert_eq!(decoded, 1, "only the whole input decodes");
    for at in 0..bytes.len() {
        for replacement in [0x00, 0x01, 0x02, 0x7f, 0x80, 0xc3, 0xff] {
            let mut corrupt = bytes.to_vec();
            corrupt[at] = replacement;
            decode(&corrupt);
        }
    }
}
