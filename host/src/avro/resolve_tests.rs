//! Tests for schema resolution: the spec's rules one by one, agreement with
//! the single-schema decoder when reader and writer are the same (including
//! the Apache Avro samples in `/work/shared/data/avro`), the shared
//! compatibility cases, and hostile input.

use serde_json::{Value, json};

use super::super::*;

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

fn encode(s: &Schema, v: &Value) -> Vec<u8> {
    encode_json(s, v).unwrap_or_else(|e| panic!("encode {v}: {e}"))
}

/// Encodes `v` with the writer schema and reads it back with the reader's.
fn resolve(writer: &str, reader: &str, v: &Value) -> Result<Value, ResolveError> {
    let w = schema(writer);
    decode_resolved_exact(&w, &schema(reader), &encode(&w, v))
}

fn resolved(writer: &str, reader: &str, v: &Value) -> Value {
    resolve(writer, reader, v).unwrap_or_else(|e| panic!("resolve {v}: {e}"))
}

fn resolve_err(writer: &str, reader: &str, v: &Value) -> String {
    match resolve(writer, reader, v) {
        Ok(out) => panic!("resolving {v} should fail, gave {out}"),
        Err(e) => e.to_string(),
    }
}

/// The resolved value is what the plain decoder gives for `expected`
/// written with the reader schema itself: same JSON shape, wrappers included.
fn assert_reads_as(writer: &str, reader: &str, v: &Value, expected: &Value) {
    let out = resolved(writer, reader, v);
    assert_eq!(&out, expected, "resolved {v}");
    let r = schema(reader);
    let direct = decode_exact(&r, &encode(&r, expected)).expect("decode with the reader");
    assert_eq!(out, direct, "shape differs from decode_to_json");
}

/// With reader == writer, resolution must be the identity on
/// `decode_to_json`'s output.
fn assert_identity(s: &Schema, bytes: &[u8]) {
    let expected = decode_exact(s, bytes).unwrap_or_else(|e| panic!("decode: {e}"));
    let same = decode_resolved_exact(s, s, bytes).unwrap_or_else(|e| panic!("resolve: {e}"));
    assert_eq!(same, expected);
}

/// The same with two separately parsed copies of the schema text (distinct
/// arenas, nothing shared).
fn assert_identity_text(text: &str, bytes: &[u8]) {
    let (w, r) = (schema(text), schema(text));
    assert_identity(&w, bytes);
    let expected = decode_exact(&w, bytes).unwrap();
    assert_eq!(decode_resolved_exact(&w, &r, bytes).unwrap(), expected);
}

/// Writer values that exercise a schema: variant `k` picks branch `k` of
/// every union and symbol `k` of every enum (modulo their sizes), so a few
/// variants reach every branch of a small schema.
fn sample(s: &Schema, id: NodeId, k: usize, depth: usize) -> Option<Value> {
    let node = s.node(id);
    Some(match &node.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Boolean => json!(k % 2 == 1),
        NodeKind::Int | NodeKind::Long => json!(k as i64 - 1),
        NodeKind::Float | NodeKind::Double => json!(k as f64 + 0.5),
        NodeKind::Bytes if node.logical.is_some() => json!("1.5"),
        NodeKind::String if node.logical.is_some() => {
            json!(format!("{k:08}-e89b-12d3-a456-426614174000"))
        }
        NodeKind::Bytes | NodeKind::String => json!(format!("s{k}")),
        NodeKind::Fixed(f) => match node.logical {
            Some(LogicalType::Duration) => json!({"months": 1, "days": 2, "milliseconds": 3}),
            Some(LogicalType::Decimal { .. }) => json!("1"),
            _ => Value::String("\u{1}".repeat(f.size)),
        },
        NodeKind::Enum(e) => json!(e.symbols[k % e.symbols.len()]),
        NodeKind::Array(items) if depth < 4 => json!([sample(s, *items, k, depth + 1)?]),
        NodeKind::Map(values) if depth < 4 => json!({"key": sample(s, *values, k, depth + 1)?}),
        NodeKind::Array(_) => json!([]),
        NodeKind::Map(_) => json!({}),
        NodeKind::Record(r) => {
            let mut m = serde_json::Map::new();
            for f in &r.fields {
                m.insert(f.name.clone(), sample(s, f.schema, k, depth + 1)?);
            }
            Value::Object(m)
        }
        NodeKind::Union(branches) => {
            if branches.is_empty() {
                return None;
            }
            // Deep down, prefer a branch that ends recursion.
            let pick = if depth >= 4 {
                branches
                    .iter()
                    .position(|&b| !matches!(s.node(b).kind, NodeKind::Record(_)))
                    .unwrap_or(0)
            } else {
                k % branches.len()
            };
            let b = branches[pick];
            json!({ s.node(b).type_name(): sample(s, b, k, depth + 1)? })
        }
    })
}

fn samples(s: &Schema) -> Vec<Vec<u8>> {
    (0..6)
        .filter_map(|k| sample(s, s.root(), k, 0))
        .map(|v| encode(s, &v))
        .collect()
}

// ------------------------------------------------------------------- enums

const STATUS_V1: &str = r#"{"type":"record","name":"Claim","fields":[
    {"name":"status","type":{"type":"enum","name":"Status","symbols":["OPEN","PAID","DENIED","X"]}}]}"#;

#[test]
fn unknown_enum_symbol_takes_the_reader_default() {
    let reader = r#"{"type":"record","name":"Claim","fields":[
        {"name":"status","type":{"type":"enum","name":"Status",
            "symbols":["UNKNOWN","OPEN","PAID","DENIED"],"default":"UNKNOWN"}}]}"#;
    assert_reads_as(
        STATUS_V1,
        reader,
        &json!({"status": "X"}),
        &json!({"status": "UNKNOWN"}),
    );
    assert_reads_as(
        STATUS_V1,
        reader,
        &json!({"status": "PAID"}),
        &json!({"status": "PAID"}),
    );

    // Without a default only the unknown symbol fails, and it says why.
    let strict = r#"{"type":"record","name":"Claim","fields":[
        {"name":"status","type":{"type":"enum","name":"Status","symbols":["OPEN","PAID","DENIED"]}}]}"#;
    assert_eq!(
        resolved(STATUS_V1, strict, &json!({"status": "OPEN"})),
        json!({"status": "OPEN"})
    );
    assert_eq!(
        resolve_err(STATUS_V1, strict, &json!({"status": "X"})),
        "field `status`: writer symbol `X` is unknown to the reader enum `Status`, which has no default"
    );
    let err = resolve(STATUS_V1, strict, &json!({"status": "X"})).unwrap_err();
    assert_eq!(err.path(), "$.status");
    assert!(matches!(err.kind(), ResolveErrorKind::Mismatch(_)));
}

#[test]
fn enum_symbols_resolve_by_name_not_position() {
    let reader = r#"{"type":"record","name":"Claim","fields":[
        {"name":"status","type":{"type":"enum","name":"Status","symbols":["X","DENIED","PAID","OPEN"]}}]}"#;
    for symbol in ["OPEN", "PAID", "DENIED", "X"] {
        assert_reads_as(
            STATUS_V1,
            reader,
            &json!({ "status": symbol }),
            &json!({ "status": symbol }),
        );
    }
    // A writer index past the writer's symbols is bad input, not a mismatch.
    let w = schema(STATUS_V1);
    let err = decode_resolved_exact(&w, &schema(reader), &[8]).unwrap_err();
    assert_eq!(
        err.kind(),
        &ResolveErrorKind::Decode(DecodeErrorKind::InvalidEnumIndex { index: 4, count: 4 })
    );
}

// ------------------------------------------------------------ names, aliases

#[test]
fn reader_field_aliases_read_old_field_names() {
    let writer = r#"{"type":"record","name":"R","fields":[
        {"name":"id","type":"long"},{"name":"amt","type":"string"}]}"#;
    let reader = r#"{"type":"record","name":"R","fields":[
        {"name":"amount","type":"string","aliases":["amount_text","amt"]},
        {"name":"id","type":"long"}]}"#;
    // Output follows the reader's field order and names.
    let out = resolved(writer, reader, &json!({"id": 7, "amt": "12.50"}));
    assert_eq!(out, json!({"amount": "12.50", "id": 7}));
    assert_eq!(
        out.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["amount", "id"]
    );

    // A field whose own name is in the writer is not taken by another
    // reader field's alias.
    let reader = r#"{"type":"record","name":"R","fields":[
        {"name":"amt","type":"string"},
        {"name":"amount","type":"string","aliases":["amt"],"default":"none"},
        {"name":"id","type":"long"}]}"#;
    assert_eq!(
        resolved(writer, reader, &json!({"id": 7, "amt": "1"})),
        json!({"amt": "1", "amount": "none", "id": 7})
    );
}

#[test]
fn reader_record_aliases_read_old_record_names() {
    let writer = r#"{"type":"record","name":"Payer","namespace":"old.ns","fields":[
        {"name":"name","type":"string"}]}"#;
    let reader = r#"{"type":"record","name":"Party","namespace":"new.ns",
        "aliases":["old.ns.Payer"],"fields":[{"name":"name","type":"string"}]}"#;
    assert_eq!(
        resolved(writer, reader, &json!({"name": "Acme"})),
        json!({"name": "Acme"})
    );
    // Same unqualified name in another namespace matches (spec: unqualified).
    let moved = r#"{"type":"record","name":"Payer","namespace":"new.ns","fields":[
        {"name":"name","type":"string"}]}"#;
    assert_eq!(
        resolved(writer, moved, &json!({"name": "Acme"})),
        json!({"name": "Acme"})
    );
    // Neither name nor alias: refused before any byte is read.
    let other = r#"{"type":"record","name":"Party","fields":[{"name":"name","type":"string"}]}"#;
    let err = Resolver::new(&schema(writer), &schema(other)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "at `$`: writer record `old.ns.Payer` does not match reader record `Party` by name or alias"
    );
}

#[test]
fn nested_names_inherit_the_enclosing_namespace() {
    // `Kind` and the alias `Old` carry no namespace: they take `ns`'s.
    let writer = r#"{"type":"record","name":"Old","namespace":"ns","fields":[
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}}]}"#;
    let reader = r#"{"type":"record","name":"New","namespace":"ns","aliases":["Old"],"fields":[
        {"name":"kind","type":[
            {"type":"enum","name":"Kind","namespace":"other","symbols":["B"]},
            {"type":"enum","name":"Kind","symbols":["A","B"]}]}]}"#;
    let r = schema(reader);
    assert!(r.named("ns.Kind").is_some());
    // The exact fullname `ns.Kind` is preferred to the earlier `other.Kind`,
    // whose name only matches unqualified (it would not know `A`).
    let out = resolved(writer, reader, &json!({"kind": "A"}));
    assert_eq!(out, json!({"kind": "A"}));
    assert_eq!(
        out,
        decode_exact(&r, &encode(&r, &json!({"kind": {"ns.Kind": "A"}}))).unwrap()
    );

    // The alias `Old` also matches by its unqualified name, as the
    // registry's compatibility checker has it: `elsewhere.Old` reads too.
    let stranger = r#"{"type":"record","name":"Old","namespace":"elsewhere","fields":[
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}}]}"#;
    assert_eq!(
        resolved(stranger, reader, &json!({"kind": "B"})),
        json!({"kind": "B"})
    );
    assert!(
        super::super::compat::can_read(&r, &schema(stranger)).is_empty(),
        "the checker agrees"
    );
    // A record of another name and no alias is not matched.
    let unrelated = r#"{"type":"record","name":"Other","namespace":"ns","fields":[
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}}]}"#;
    let err = Resolver::new(&schema(unrelated), &r).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match reader record `ns.New`"),
        "{err}"
    );
}

// --------------------------------------------------------- added, removed

#[test]
fn added_reader_fields_take_their_defaults() {
    let writer = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"int"}]}"#;
    let reader = r#"{"type":"record","name":"R","namespace":"n","fields":[
        {"name":"id","type":"int"},
        {"name":"count","type":"int","default":3},
        {"name":"note","type":["null","int"],"default":null},
        {"name":"first","type":["int","null"],"default":5},
        {"name":"tag","type":["string","bytes"],"default":"x"},
        {"name":"blob","type":"bytes","default":"\u00ff\u0000"},
        {"name":"hash","type":{"type":"fixed","name":"H","size":2},"default":"\u00e9a"},
        {"name":"ratio","type":"float","default":0.1},
        {"name":"nan","type":"double","default":"NaN"},
        {"name":"color","type":{"type":"enum","name":"C","symbols":["RED","BLUE"]},"default":"BLUE"},
        {"name":"tags","type":{"type":"array","items":"string"},"default":["a"]},
        {"name":"attrs","type":{"type":"map","values":"long"},"default":{"k":1}},
        {"name":"payer","type":{"type":"record","name":"Payer","fields":[
            {"name":"name","type":"string"},
            {"name":"tier","type":"int","default":1},
            {"name":"alt","type":["null","Payer"],"default":null}]},
         "default":{"name":"nobody"}}]}"#;
    let expected = json!({
        "id": 1, "count": 3, "note": null, "first": 5, "tag": "x",
        "blob": "\u{ff}\u{0}", "hash": "\u{e9}a", "ratio": f64::from(0.1f32),
        "nan": "NaN", "color": "BLUE", "tags": ["a"], "attrs": {"k": 1},
        "payer": {"name": "nobody", "tier": 1, "alt": null}
    });
    assert_reads_as(writer, reader, &json!({"id": 1}), &expected);

    // A reader field the writer lacks and that has no default is an error
    // naming both records, raised when such a record is read.
    let strict = r#"{"type":"record","name":"R","fields":[
        {"name":"id","type":"int"},{"name":"total","type":"long"}]}"#;
    let err = Resolver::new(&schema(writer), &schema(strict)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "at `$`: reader field `total` of record `R` is missing from the writer record `R` and has no default"
    );
    let nested_w = format!(
        r#"{{"type":"record","name":"Outer","fields":[{{"name":"inner","type":{writer}}}]}}"#
    );
    let nested_r = format!(
        r#"{{"type":"record","name":"Outer","fields":[{{"name":"inner","type":{strict}}}]}}"#
    );
    let err = resolve_err(&nested_w, &nested_r, &json!({"inner": {"id": 1}}));
    assert!(
        err.starts_with("field `inner`: reader field `total`"),
        "{err}"
    );
}

/// Defaults of logical types are given in the underlying type (spec JSON
/// form) and come out as the decoder renders that value.
#[test]
fn logical_type_defaults_render_like_decoded_values() {
    let writer = r#"{"type":"record","name":"R","fields":[]}"#;
    let reader = r#"{"type":"record","name":"R","fields":[
        {"name":"day","type":{"type":"int","logicalType":"date"},"default":19000},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"},"default":0},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":6,"scale":2},
         "default":"\u0004\u00d2"},
        {"name":"span","type":{"type":"fixed","name":"D","size":12,"logicalType":"duration"},
         "default":"\u0001\u0000\u0000\u0000\u0002\u0000\u0000\u0000\u0003\u0000\u0000\u0000"},
        {"name":"maybe_at","type":["null",{"type":"long","logicalType":"timestamp-micros"}],
         "default":null}]}"#;
    let out = resolved(writer, reader, &json!({}));
    assert_eq!(out["day"], "2022-01-08");
    assert_eq!(out["price"], "12.34");
    assert_eq!(
        out["span"],
        json!({"months": 1, "days": 2, "milliseconds": 3})
    );
    assert_eq!(out["maybe_at"], Value::Null);
    // Everything, the timestamp text included, is what the decoder gives
    // for the same values written with the reader schema.
    let r = schema(reader);
    let plain = json!({
        "day": "2022-01-08", "at": 0, "price": "12.34",
        "span": {"months": 1, "days": 2, "milliseconds": 3}, "maybe_at": null
    });
    assert_eq!(out, decode_exact(&r, &encode(&r, &plain)).unwrap());
    assert!(
        out["at"]
            .as_str()
            .unwrap()
            .starts_with("1970-01-01T00:00:00")
    );
}

/// Mismatches every value would meet are refused before any data, with
/// the path of the field; data-dependent ones wait for the data.
#[test]
fn certain_mismatches_fail_up_front() {
    let writer = r#"{"type":"record","name":"R","fields":[
        {"name":"id","type":"long"},
        {"name":"payer","type":{"type":"record","name":"P","fields":[{"name":"amount","type":"string"}]}}]}"#;
    let reader = r#"{"type":"record","name":"R","fields":[
        {"name":"id","type":"long"},
        {"name":"payer","type":{"type":"record","name":"P","fields":[{"name":"amount","type":"int"}]}}]}"#;
    let err = Resolver::new(&schema(writer), &schema(reader)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `payer.amount`: writer `string` cannot be read as reader `int`"
    );
    assert_eq!(err.path(), "$.payer.amount");
    // In a union branch or inside an array the same mismatch only fails
    // when a value actually takes that way.
    let w = r#"{"type":"array","items":["null","string"]}"#;
    let res = Resolver::new(&schema(w), &schema(r#"{"type":"array","items":"int"}"#)).unwrap();
    let w = schema(w);
    assert_eq!(
        res.decode_exact(&encode(&w, &json!([]))).unwrap(),
        json!([])
    );
    assert_eq!(
        res.decode_exact(&encode(&w, &json!([null])))
            .unwrap_err()
            .to_string(),
        "at `$[0]`: writer `null` cannot be read as reader `int`"
    );
}

#[test]
fn removed_writer_fields_are_skipped() {
    let writer = r#"{"type":"record","name":"R","fields":[
        {"name":"a","type":"string"},
        {"name":"list","type":{"type":"array","items":{"type":"map","values":"int"}}},
        {"name":"attrs","type":{"type":"map","values":{"type":"array","items":"null"}}},
        {"name":"sub","type":{"type":"record","name":"Sub","fields":[
            {"name":"x","type":["null","string"]},{"name":"f","type":{"type":"fixed","name":"F","size":3}},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["P","Q"]}},
            {"name":"d","type":"double"},{"name":"b","type":"boolean"}]}},
        {"name":"z","type":"long"}]}"#;
    let reader = r#"{"type":"record","name":"R","fields":[
        {"name":"z","type":"long"},{"name":"a","type":"string"}]}"#;
    let v = json!({
        "a": "keep", "list": [{"k": 1, "l": 2}, {}], "attrs": {"n": [null, null]},
        "sub": {"x": "y", "f": "abc", "e": "Q", "d": 1.5, "b": true}, "z": -9
    });
    assert_reads_as(writer, reader, &v, &json!({"z": -9, "a": "keep"}));

    // Skipped fields are checked like read ones; the path names the writer
    // field.
    let w = schema(writer);
    let bytes = encode(&w, &v);
    let r = schema(reader);
    for cut in 0..bytes.len() {
        let err = decode_resolved_exact(&w, &r, &bytes[..cut]).unwrap_err();
        assert!(matches!(err.kind(), ResolveErrorKind::Decode(_)), "{err}");
    }
    let mut bad_bool = bytes.clone();
    let b = bad_bool.len() - 2; // the boolean sits just before `z`
    bad_bool[b] = 7;
    let err = decode_resolved_exact(&w, &r, &bad_bool).unwrap_err();
    assert_eq!(err.to_string(), "field `sub.b`: invalid boolean byte 0x07");
}

// ------------------------------------------------------------- promotions

#[test]
fn every_promotion() {
    let cases: [(&str, &str, Value, Value); 8] = [
        ("int", "long", json!(-5), json!(-5)),
        ("int", "float", json!(16_777_217), json!(16_777_216.0)),
        ("int", "double", json!(7), json!(7.0)),
        (
            "long",
            "float",
            json!(1_i64 << 40),
            json!((1_i64 << 40) as f64),
        ),
        (
            "long",
            "double",
            json!(-(1_i64 << 53)),
            json!(-(1_i64 << 53) as f64),
        ),
        ("float", "double", json!(0.1), json!(f64::from(0.1f32))),
        ("string", "bytes", json!("é"), json!("\u{c3}\u{a9}")),
        ("bytes", "string", json!("\u{c3}\u{a9}"), json!("é")),
    ];
    for (w, r, v, expected) in cases {
        let (w, r) = (format!("\"{w}\""), format!("\"{r}\""));
        assert_reads_as(&w, &r, &v, &expected);
        // Inside containers and records too.
        let wa = format!(r#"{{"type":"array","items":{w}}}"#);
        let ra = format!(r#"{{"type":"array","items":{r}}}"#);
        assert_eq!(
            resolved(&wa, &ra, &json!([v.clone(), v.clone()])),
            json!([expected.clone(), expected.clone()])
        );
        let wm = format!(r#"{{"type":"map","values":{w}}}"#);
        let rm = format!(r#"{{"type":"map","values":{r}}}"#);
        assert_eq!(resolved(&wm, &rm, &json!({"k": v})), json!({"k": expected}));
    }
    // Bytes that are not UTF-8 cannot become a string.
    assert_eq!(
        resolve_err(r#""bytes""#, r#""string""#, &json!("\u{ff}")),
        "at `$`: string is not valid utf-8"
    );
    // No demotions.
    for (w, r) in [
        ("long", "int"),
        ("double", "float"),
        ("float", "long"),
        ("string", "int"),
    ] {
        let err =
            Resolver::new(&schema(&format!("\"{w}\"")), &schema(&format!("\"{r}\""))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("at `$`: writer `{w}` cannot be read as reader `{r}`")
        );
    }
}

// ----------------------------------------------------------------- unions

#[test]
fn union_branches_resolve() {
    // Writer union to a wider reader union.
    let w = r#"["null","string"]"#;
    let r = r#"["null","string","int"]"#;
    assert_reads_as(w, r, &json!(null), &json!(null));
    assert_reads_as(w, r, &json!("s"), &json!("s"));

    // Plain writer type into a reader union, by promotion.
    assert_reads_as(r#""int""#, r#"["null","long"]"#, &json!(4), &json!(4));
    // An exact branch beats an earlier promotion.
    let r = r#"["null","long","int"]"#;
    let rs = schema(r);
    let expected_exact = decode_exact(&rs, &encode(&rs, &json!({"int": 4}))).unwrap();
    assert_eq!(resolved(r#""int""#, r, &json!(4)), expected_exact);
    // Among promotions the first fitting branch wins.
    assert_reads_as(
        r#""int""#,
        r#"["string","double","long"]"#,
        &json!(2),
        &json!(2.0),
    );
    // The reader's wrapper rules apply: a string read into a union whose
    // `bytes` branch comes first must say it is a string.
    let r = r#"["null","bytes","string"]"#;
    assert_reads_as(r#""string""#, r, &json!("abc"), &json!({"string": "abc"}));

    // Writer union to a reader non-union: each written branch resolves on
    // its own, and only a branch with no match fails.
    let w = r#"["null","int","string"]"#;
    assert_eq!(resolved(w, r#""long""#, &json!(3)), json!(3));
    assert_eq!(
        resolve_err(w, r#""long""#, &json!("x")),
        "at `$`: writer `string` cannot be read as reader `long`"
    );
    assert_eq!(
        resolve_err(w, r#"["long","boolean"]"#, &json!(null)),
        "at `$`: writer `null` matches no branch of the reader union [`long`, `boolean`]"
    );
    // A writer union index out of range is bad input.
    let err = decode_resolved_exact(&schema(w), &schema(r#""long""#), &[6]).unwrap_err();
    assert_eq!(
        err.kind(),
        &ResolveErrorKind::Decode(DecodeErrorKind::InvalidUnionIndex { index: 3, count: 3 })
    );

    // Records in unions, matched by name through the branches.
    let w = r#"["null",{"type":"record","name":"Cat","fields":[{"name":"lives","type":"int"}]}]"#;
    let r = r#"[{"type":"record","name":"Dog","fields":[{"name":"bark","type":"string"}]},
        {"type":"record","name":"Cat","fields":[{"name":"lives","type":"long"},
            {"name":"name","type":"string","default":"tom"}]},"null"]"#;
    assert_reads_as(
        w,
        r,
        &json!({"lives": 9}),
        &json!({"lives": 9, "name": "tom"}),
    );
    assert_reads_as(w, r, &json!(null), &json!(null));
}

// ------------------------------------------------------- logical and fixed

#[test]
fn decimals_need_equal_scales() {
    let dec = |scale: Option<u32>| match scale {
        Some(s) => {
            format!(r#"{{"type":"bytes","logicalType":"decimal","precision":9,"scale":{s}}}"#)
        }
        None => r#"{"type":"bytes","logicalType":"decimal","precision":9}"#.to_owned(),
    };
    assert_eq!(
        resolve_err(&dec(Some(2)), &dec(Some(3)), &json!("1.25")),
        "at `$`: writer decimal scale 2 differs from reader decimal scale 3"
    );
    // A decimal without scale has scale 0.
    assert_reads_as(&dec(None), &dec(Some(0)), &json!("125"), &json!("125"));
    assert_reads_as(&dec(Some(0)), &dec(None), &json!("-7"), &json!("-7"));
    // Precision may differ; a value the reader's precision cannot hold fails.
    let narrow = r#"{"type":"bytes","logicalType":"decimal","precision":3,"scale":2}"#;
    assert_reads_as(&dec(Some(2)), narrow, &json!("1.25"), &json!("1.25"));
    let err = resolve(&dec(Some(2)), narrow, &json!("12.25")).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ResolveErrorKind::Decode(DecodeErrorKind::InvalidValue(_))
        ),
        "{err}"
    );
    // Fixed decimals follow the same rule, inside a field.
    let fixed = |scale: u32| {
        format!(
            r#"{{"type":"record","name":"R","fields":[{{"name":"amount","type":
            {{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":12,"scale":{scale}}}}}]}}"#
        )
    };
    assert_reads_as(
        &fixed(2),
        &fixed(2),
        &json!({"amount": "8513.88"}),
        &json!({"amount": "8513.88"}),
    );
    assert_eq!(
        resolve_err(&fixed(2), &fixed(4), &json!({"amount": "8513.88"})),
        "field `amount`: writer decimal scale 2 differs from reader decimal scale 4"
    );
    // Only one side annotated: the underlying bytes decide.
    assert_reads_as(&dec(Some(2)), r#""bytes""#, &json!("1.00"), &json!("d"));
}

#[test]
fn other_logical_types_and_fixed() {
    let micros = r#"{"type":"long","logicalType":"timestamp-micros"}"#;
    let millis = r#"{"type":"long","logicalType":"timestamp-millis"}"#;
    let err = Resolver::new(&schema(micros), &schema(millis)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "at `$`: writer logical type `timestamp-micros` cannot be read as reader logical type `timestamp-millis`"
    );
    // A plain long read as a timestamp is rendered as one.
    let r = schema(millis);
    assert_eq!(
        resolved(r#""long""#, millis, &json!(86_400_000)),
        decode_exact(&r, &encode(&r, &json!(86_400_000))).unwrap()
    );
    // `date` promoted from int to a plain long stays a number.
    assert_eq!(
        resolved(
            r#"{"type":"int","logicalType":"date"}"#,
            r#""long""#,
            &json!("1970-01-02")
        ),
        json!(1)
    );

    let f =
        |name: &str, size: usize| format!(r#"{{"type":"fixed","name":"{name}","size":{size}}}"#);
    assert_reads_as(&f("F", 2), &f("F", 2), &json!("ab"), &json!("ab"));
    assert_eq!(
        Resolver::new(&schema(&f("F", 2)), &schema(&f("F", 3)))
            .unwrap_err()
            .to_string(),
        "at `$`: writer fixed `F` has size 2 but reader fixed `F` has size 3"
    );
    assert_eq!(
        Resolver::new(&schema(&f("F", 2)), &schema(&f("G", 2)))
            .unwrap_err()
            .to_string(),
        "at `$`: writer fixed `F` does not match reader fixed `G` by name or alias"
    );
}

// ------------------------------------------------------------ reader == writer

#[test]
fn same_schema_matches_the_decoder_on_shared_data() {
    for file in [
        data!("avro__weather.avro"),
        data!("avro__weather-deflate.avro"),
        data!("avro__schemas__simple__data.avro"),
    ] {
        let (s, records) = read_container(&read(file)).expect("container");
        assert!(!records.is_empty());
        for r in &records {
            assert_identity(&s, &encode(&s, r));
        }
    }
    let text = String::from_utf8(read(data!("avro__messageV1__test_schema.avsc"))).unwrap();
    let msg = read(data!("avro__messageV1__test_message.bin"));
    assert_identity_text(&text, &msg[10..]);

    for file in [
        data!("avro__schemas__interop.avsc"),
        data!("avro__schemas__FooBarSpecificRecord.avsc"),
        data!("avro__schemas__RecordWithRequiredFields.avsc"),
        data!("avro__schemas__fooBar.avsc"),
        data!("avro__schemas__weather.avsc"),
    ] {
        let text = String::from_utf8(read(file)).unwrap();
        let all = samples(&schema(&text));
        assert_eq!(all.len(), 6, "{file}");
        for bytes in &all {
            assert_identity_text(&text, bytes);
        }
    }
}

#[test]
fn same_schema_matches_the_decoder_on_every_type() {
    let text = r#"{"type":"record","name":"All","namespace":"t","fields":[
        {"name":"n","type":"null"},{"name":"b","type":"boolean"},{"name":"i","type":"int"},
        {"name":"l","type":"long"},{"name":"f","type":"float"},{"name":"d","type":"double"},
        {"name":"by","type":"bytes"},{"name":"s","type":"string"},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"ms","type":{"type":"int","logicalType":"time-millis"}},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"local","type":{"type":"long","logicalType":"local-timestamp-millis"}},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":8,"scale":3}},
        {"name":"id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"span","type":{"type":"fixed","name":"Span","size":12,"logicalType":"duration"}},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
        {"name":"a","type":{"type":"array","items":["null","E","Span"]}},
        {"name":"m","type":{"type":"map","values":["string","bytes","double","long"]}},
        {"name":"next","type":["null","All"]}]}"#;
    let s = schema(text);
    let value = json!({
        "n": null, "b": true, "i": -3, "l": 1_i64 << 50, "f": 1.5, "d": "NaN",
        "by": "\u{0}\u{ff}", "s": "ü", "day": "2024-01-31", "ms": 1000,
        "at": "2024-01-31T10:00:00.000001Z", "local": "2024-01-31T10:00:00.000",
        "price": "-12.345", "id": "123e4567-e89b-12d3-a456-426614174000",
        "span": {"months": 1, "days": 2, "milliseconds": 3}, "e": "C",
        "a": [null, "B", {"t.Span": "abcdefghijkl"}],
        "m": {"s": "x", "b": {"bytes": "y"}, "d": 2.5, "l": {"long": 3}},
        "next": null
    });
    let bytes = encode(&s, &value);
    assert_identity_text(text, &bytes);
    let mut outer = value.clone();
    outer["next"] = value;
    assert_identity_text(text, &encode(&s, &outer));
    for bytes in samples(&s) {
        assert_identity_text(text, &bytes);
    }
}

// --------------------------------------------------- shared compatibility

/// The shared reader/writer pairs: a compatible pair reads every sample the
/// writer can produce; an incompatible one fails up front or on a sample.
#[test]
fn shared_compatibility_cases() {
    let text =
        String::from_utf8(read(data!("avro_schema_compatibility_cases.shared.json"))).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let cases = file["cases"].as_array().expect("cases");
    assert!(cases.len() >= 80);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let w = Schema::parse_value(&case["writer_schema"]).unwrap();
        let r = Schema::parse_value(&case["reader_schema"]).unwrap();
        for s in [&w, &r] {
            for bytes in samples(s) {
                assert_identity(s, &bytes);
            }
        }
        let outcome = Resolver::new(&w, &r).and_then(|res| {
            samples(&w)
                .iter()
                .try_for_each(|b| res.decode_exact(b).map(drop))
        });
        match case["expected"].as_str().unwrap() {
            "compatible" => {
                if let Err(e) = outcome {
                    panic!("{id} should resolve: {e}");
                }
            }
            _ => assert!(outcome.is_err(), "{id} should fail to resolve"),
        }
    }
}

// ----------------------------------------------------------- hostile input

#[test]
fn truncated_and_hostile_input_fails_cleanly() {
    let writer = schema(
        r#"{"type":"record","name":"R","fields":[
        {"name":"keep","type":{"type":"array","items":"int"}},
        {"name":"drop","type":{"type":"map","values":"string"}},
        {"name":"u","type":["null","long"]}]}"#,
    );
    let reader = schema(
        r#"{"type":"record","name":"R","fields":[
        {"name":"keep","type":{"type":"array","items":"double"}},
        {"name":"u","type":["null","double"]}]}"#,
    );
    let res = Resolver::new(&writer, &reader).unwrap();
    let bytes = encode(
        &writer,
        &json!({"keep": [1, 2], "drop": {"a": "b"}, "u": 5}),
    );
    assert_eq!(
        res.decode_exact(&bytes).unwrap(),
        json!({"keep": [1.0, 2.0], "u": 5.0})
    );
    for cut in 0..bytes.len() {
        assert!(
            res.decode_exact(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes"
        );
    }
    // Trailing bytes: refused by the exact variant, left by the other.
    let mut longer = bytes.clone();
    longer.push(9);
    assert_eq!(
        res.decode_exact(&longer).unwrap_err().kind(),
        &ResolveErrorKind::Decode(DecodeErrorKind::TrailingBytes(1))
    );
    let mut input = longer.as_slice();
    res.decode(&mut input).unwrap();
    assert_eq!(input, [9]);

    // Counts of 2^62 in a read array and a skipped map.
    let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    let err = res.decode_exact(&huge).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ResolveErrorKind::Decode(DecodeErrorKind::LengthTooLarge(_))
        ),
        "{err}"
    );
    assert_eq!(err.path(), "$.keep");
    let mut skipped = vec![0];
    skipped.extend_from_slice(&huge);
    let err = res.decode_exact(&skipped).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ResolveErrorKind::Decode(DecodeErrorKind::LengthTooLarge(_))
        ),
        "{err}"
    );
    assert_eq!(err.to_string(), format!("field `drop`: {}", err.kind()));
    // Negative block count with a negative byte size.
    let err = res.decode_exact(&[1, 1]).unwrap_err();
    assert_eq!(
        err.kind(),
        &ResolveErrorKind::Decode(DecodeErrorKind::NegativeLength(-1))
    );
}

#[test]
fn zero_size_items_share_one_budget() {
    fn long(out: &mut Vec<u8>, n: i64) {
        out.extend(encode(&schema(r#""long""#), &json!(n)));
    }
    // Writer items take no bytes; the reader even fills in a default for
    // each, so an unbounded count would be an unbounded output.
    let writer = r#"{"type":"array","items":{"type":"array","items":
        {"type":"record","name":"E","fields":[]}}}"#;
    let reader = r#"{"type":"array","items":{"type":"array","items":
        {"type":"record","name":"E","fields":[{"name":"pad","type":"string","default":"xxxxxxxx"}]}}}"#;
    let (w, r) = (schema(writer), schema(reader));
    let mut bomb = Vec::new();
    long(&mut bomb, 20);
    for _ in 0..20 {
        long(&mut bomb, 1_000_000);
        long(&mut bomb, 0);
    }
    long(&mut bomb, 0);
    assert!(bomb.len() < 128);
    let err = decode_resolved_exact(&w, &r, &bomb).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ResolveErrorKind::Decode(DecodeErrorKind::LengthTooLarge(_))
        ),
        "{err}"
    );

    // The same through a skipped field.
    let ws =
        format!(r#"{{"type":"record","name":"S","fields":[{{"name":"gone","type":{writer}}}]}}"#);
    let rs = r#"{"type":"record","name":"S","fields":[]}"#;
    let err = decode_resolved_exact(&schema(&ws), &schema(rs), &bomb).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ResolveErrorKind::Decode(DecodeErrorKind::LengthTooLarge(_))
        ),
        "{err}"
    );

    let mut fine = Vec::new();
    long(&mut fine, 2);
    for _ in 0..2 {
        long(&mut fine, 3);
        long(&mut fine, 0);
    }
    long(&mut fine, 0);
    let out = decode_resolved_exact(&w, &r, &fine).unwrap();
    assert_eq!(out[1][2], json!({"pad": "xxxxxxxx"}));
}

#[test]
fn hostile_nesting_is_bounded() {
    let s = r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#;
    // The reader drops nothing but adds a field, so the plan is not the
    // identity; the writer's recursion still ends at the depth limit.
    let r = r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]},
        {"name":"n","type":"int","default":0}]}"#;
    let deep = vec![2u8; 10_000];
    for reader in [s, r] {
        let err = decode_resolved_exact(&schema(s), &schema(reader), &deep).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ResolveErrorKind::Decode(DecodeErrorKind::TooDeep(_))
            ),
            "{err}"
        );
    }
    // Skipping a deep value is bounded too.
    let ws = format!(r#"{{"type":"record","name":"W","fields":[{{"name":"gone","type":{s}}}]}}"#);
    let err = decode_resolved_exact(
        &schema(&ws),
        &schema(r#"{"type":"record","name":"W","fields":[]}"#),
        &deep,
    )
    .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ResolveErrorKind::Decode(DecodeErrorKind::TooDeep(_))
        ),
        "{err}"
    );
    // A short list resolves.
    assert_eq!(
        resolved(s, r, &json!({"next": {"next": null}})),
        json!({"next": {"next": null, "n": 0}, "n": 0})
    );
}

#[test]
fn resolver_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Resolver>();
    let res = Resolver::new(&schema(r#""int""#), &schema(r#""long""#)).unwrap();
    assert_eq!(res.writer().canonical_form(), r#""int""#);
    assert_eq!(res.reader().canonical_form(), r#""long""#);
    let shared = res.clone();
    let out = std::thread::spawn(move || shared.decode_exact(&[4]).unwrap())
        .join()
        .unwrap();
    assert_eq!(out, json!(2));
}

/// The registry's checker and this decoder agree on the choices the spec
/// leaves open, so what the registry accepts is what the host can read.
#[test]
fn checker_and_decoder_agree_on_open_choices() {
    use super::super::compat::can_read;
    let cases = [
        // (writer, reader, value, compatible)
        (
            r#"{"type":"long","logicalType":"timestamp-micros"}"#,
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            json!("2026-01-01T00:00:00.000001Z"),
            false,
        ),
        (
            r#""long""#,
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            json!(5),
            true,
        ),
        (
            r#"{"type":"bytes","logicalType":"decimal","precision":5,"scale":2}"#,
            r#"{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}"#,
            json!("123.45"),
            true,
        ),
        (
            r#"{"type":"bytes","logicalType":"decimal","precision":5,"scale":2}"#,
            r#"{"type":"bytes","logicalType":"decimal","precision":5,"scale":3}"#,
            json!("123.45"),
            false,
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#,
            r#"{"type":"enum","name":"E","symbols":["B","A"],"default":"A"}"#,
            json!("C"),
            true,
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#,
            r#"{"type":"enum","name":"E","symbols":["B","A"]}"#,
            json!("C"),
            false,
        ),
    ];
    for (writer, reader, value, compatible) in cases {
        let (w, r) = (schema(writer), schema(reader));
        let checked = can_read(&r, &w).is_empty();
        assert_eq!(checked, compatible, "checker: {writer} -> {reader}");
        let decoded = decode_resolved_exact(&w, &r, &encode(&w, &value));
        assert_eq!(
            decoded.is_ok(),
            compatible,
            "decoder: {writer} -> {reader}: {decoded:?}"
        );
    }
}
