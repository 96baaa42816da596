//! Tests for schema compatibility, including the Apache Avro reader/writer
//! pairs shared in `/work/shared/data/avro` (reached relative to the crate
//! manifest).

use serde_json::{Value, json};

use super::*;

const SHARED_CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/avro/avro_schema_compatibility_cases.shared.json"
);

fn schema(v: &Value) -> Schema {
    Schema::parse_value(v).unwrap_or_else(|e| panic!("schema should parse: {e}\n{v}"))
}

fn problems(reader: &Value, writer: &Value) -> Vec<Incompatibility> {
    can_read(&schema(reader), &schema(writer))
}

fn assert_readable(reader: &Value, writer: &Value) {
    let found = problems(reader, writer);
    assert!(
        found.is_empty(),
        "expected compatible, got {found:#?}\nreader {reader}\nwriter {writer}"
    );
}

fn assert_unreadable(reader: &Value, writer: &Value) -> Vec<Incompatibility> {
    let found = problems(reader, writer);
    assert!(
        !found.is_empty(),
        "expected incompatible\nreader {reader}\nwriter {writer}"
    );
    found
}

fn record(name: &str, fields: Value) -> Value {
    let mut v = json!({"type": "record", "name": name});
    v["fields"] = fields;
    v
}

// ---------------------------------------------------------------- shared data

#[test]
fn shared_cases_give_the_expected_verdicts() {
    let text = std::fs::read_to_string(SHARED_CASES)
        .unwrap_or_else(|e| panic!("cannot read {SHARED_CASES}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("shared cases are json");
    let cases = doc["cases"].as_array().expect("`cases` array");
    let mut failures = Vec::new();
    let mut location_misses = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap_or("<no id>");
        let want_ok = match case["expected"].as_str() {
            Some("compatible") => true,
            Some("incompatible") => false,
            other => {
                failures.push(format!("{id}: unknown expected verdict {other:?}"));
                continue;
            }
        };
        let parsed = (
            Schema::parse_value(&case["reader_schema"]),
            Schema::parse_value(&case["writer_schema"]),
        );
        let (Ok(reader), Ok(writer)) = parsed else {
            failures.push(format!("{id}: schema does not parse: {parsed:?}"));
            continue;
        };
        let found = can_read(&reader, &writer);
        if found.is_empty() != want_ok {
            let want = if want_ok {
                "compatible"
            } else {
                "incompatible"
            };
            failures.push(format!("{id}: expected {want}, got {found:?}"));
            continue;
        }
        // Locations are informative in the data file (the Python checker's),
        // but this checker uses the same pointer convention, so at least one
        // of them should show up. Python lists a name mismatch at both `/`
        // and `/name`, hence "at least one" rather than "all".
        let expected: Vec<&str> = case["expected_locations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !expected.is_empty()
            && !found
                .iter()
                .any(|i| expected.contains(&i.location.as_str()))
        {
            location_misses.push(format!("{id}: none of {expected:?} in {found:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} shared cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 84, "only {} shared cases", cases.len());
    assert!(
        location_misses.is_empty(),
        "locations differ:\n{}",
        location_misses.join("\n")
    );
}

#[test]
fn messages_are_lowercase_without_trailing_period() {
    let pairs = [
        (json!("int"), json!("string")),
        (json!(["int"]), json!(["int", "long"])),
        (
            json!({"type": "fixed", "name": "F", "size": 4}),
            json!({"type": "fixed", "name": "F", "size": 8}),
        ),
        (
            json!({"type": "enum", "name": "E", "symbols": ["A"]}),
            json!({"type": "enum", "name": "E", "symbols": ["A", "B"]}),
        ),
        (
            record("R", json!([{"name": "a", "type": "int"}])),
            record("R", json!([])),
        ),
        (record("R", json!([])), record("S", json!([]))),
    ];
    for (reader, writer) in &pairs {
        for issue in assert_unreadable(reader, writer) {
            let m = &issue.message;
            assert!(m.starts_with(char::is_lowercase), "{m}");
            assert!(!m.ends_with('.'), "{m}");
            assert!(m.contains('`'), "message names nothing: {m}");
        }
    }
}

// ---------------------------------------------------------------- records

#[test]
fn record_in_union_gaining_required_field_breaks_backward() {
    let v1 = json!([
        "null",
        record("Payment", json!([{"name": "id", "type": "long"}]))
    ]);
    let required = json!([
        "null",
        record(
            "Payment",
            json!([
                {"name": "id", "type": "long"},
                {"name": "status", "type": "string"}
            ])
        )
    ]);
    let optional = json!([
        "null",
        record(
            "Payment",
            json!([
                {"name": "id", "type": "long"},
                {"name": "status", "type": ["null", "string"], "default": null}
            ])
        )
    ]);

    let reasons = check(
        CompatibilityLevel::Backward,
        &schema(&required),
        &[schema(&v1)],
    );
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("backward: "), "{}", reasons[0]);
    assert!(reasons[0].contains("`status`"), "{}", reasons[0]);
    assert!(reasons[0].contains("version 1 (latest)"), "{}", reasons[0]);

    // The detailed reason comes from the record branch, not "no branch".
    let found = problems(&required, &v1);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, IncompatibilityKind::MissingDefault);
    assert_eq!(found[0].location, "/1/fields/1");
    assert_eq!(
        found[0].message,
        "reader field `status` has no default and is missing from the writer"
    );

    assert!(
        check(
            CompatibilityLevel::Backward,
            &schema(&optional),
            &[schema(&v1)]
        )
        .is_empty()
    );
}

#[test]
fn missing_default_differs_from_default_null() {
    let writer = record("R", json!([{"name": "a", "type": "int"}]));
    let no_default = record(
        "R",
        json!([{"name": "a", "type": "int"}, {"name": "b", "type": ["null", "int"]}]),
    );
    let default_null = record(
        "R",
        json!([
            {"name": "a", "type": "int"},
            {"name": "b", "type": ["null", "int"], "default": null}
        ]),
    );
    let found = assert_unreadable(&no_default, &writer);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, IncompatibilityKind::MissingDefault);
    assert_eq!(found[0].location, "/fields/1");
    assert!(found[0].message.contains("`b`"), "{}", found[0].message);
    assert_readable(&default_null, &writer);
    // A plain `null` field with `"default": null` is fine as well.
    assert_readable(
        &record("R", json!([{"name": "n", "type": "null", "default": null}])),
        &record("R", json!([])),
    );
}

#[test]
fn nested_field_mismatch_names_the_field_path() {
    let reader = record(
        "Order",
        json!([{"name": "customer", "type": record("Customer", json!([{"name": "age", "type": "int"}]))}]),
    );
    let writer = record(
        "Order",
        json!([{"name": "customer", "type": record("Customer", json!([{"name": "age", "type": "long"}]))}]),
    );
    let found = assert_unreadable(&reader, &writer);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, IncompatibilityKind::TypeMismatch);
    assert_eq!(found[0].location, "/fields/0/type/fields/0/type");
    assert_eq!(
        found[0].message,
        "field `customer.age`: reader type `int` cannot read writer type `long`"
    );
}

#[test]
fn renames_through_aliases() {
    let writer = json!({"type": "record", "name": "org.old.Customer", "fields": [
        {"name": "fullName", "type": "string"},
        {"name": "age", "type": "int"}
    ]});
    // Record renamed (alias in another namespace) and field renamed.
    let reader = json!({"type": "record", "name": "org.new.Client",
        "aliases": ["org.old.Customer"], "fields": [
        {"name": "name", "type": "string", "aliases": ["fullName"]},
        {"name": "age", "type": "long"}
    ]});
    assert_readable(&reader, &writer);
    // A relative alias takes the reader's namespace; names still match
    // unqualified, so it reads the writer too.
    let relative = json!({"type": "record", "name": "org.new.Client",
        "aliases": ["Customer"], "fields": [{"name": "age", "type": "int"}]});
    assert_readable(&relative, &writer);
    // Without the aliases the renames break.
    let bare_record = json!({"type": "record", "name": "org.new.Client", "fields": [
        {"name": "age", "type": "int"}
    ]});
    let found = assert_unreadable(&bare_record, &writer);
    assert_eq!(found[0].kind, IncompatibilityKind::NameMismatch);
    assert_eq!(found[0].location, "/name");
    assert!(found[0].message.contains("`org.new.Client`"));
    assert!(found[0].message.contains("`org.old.Customer`"));
    let bare_field = json!({"type": "record", "name": "org.old.Customer", "fields": [
        {"name": "name", "type": "string"}
    ]});
    let found = assert_unreadable(&bare_field, &writer);
    assert_eq!(found[0].kind, IncompatibilityKind::MissingDefault);
    assert!(found[0].message.contains("`name`"));
    // Aliases belong to the reader: a writer alias does not help.
    let writer_alias = json!({"type": "enum", "name": "New", "aliases": ["Old"], "symbols": ["A"]});
    let reader_old = json!({"type": "enum", "name": "Old", "symbols": ["A"]});
    assert_unreadable(&reader_old, &writer_alias);
    assert_readable(&writer_alias, &reader_old);
}

#[test]
fn namespaces_are_ignored_when_matching_names() {
    assert_readable(
        &json!({"type": "fixed", "name": "a.F", "size": 2}),
        &json!({"type": "fixed", "name": "b.F", "size": 2}),
    );
}

#[test]
fn nested_named_type_inherits_enclosing_namespace() {
    // `Address` is defined without a namespace inside `com.acme.Person`, so
    // its fullname is `com.acme.Address` and the short reference in the
    // union resolves to it.
    let v1 = json!({"type": "record", "name": "Person", "namespace": "com.acme", "fields": [
        {"name": "home", "type": {"type": "record", "name": "Address", "fields": [
            {"name": "city", "type": "string"}
        ]}},
        {"name": "work", "type": ["null", "Address"], "default": null}
    ]});
    let s = schema(&v1);
    let home = s.named("com.acme.Address").expect("inherited namespace");
    assert!(s.named("Address").is_none());
    let NodeKind::Record(person) = &s.node(s.root()).kind else {
        panic!("record")
    };
    assert_eq!(person.fields[0].schema, home);
    let NodeKind::Union(branches) = &s.node(person.fields[1].schema).kind else {
        panic!("union")
    };
    assert_eq!(branches[1], home);

    // A new version whose nested record gains a required field is caught in
    // both places it is used, including through the short-name union branch.
    let v2 = json!({"type": "record", "name": "Person", "namespace": "com.acme", "fields": [
        {"name": "home", "type": {"type": "record", "name": "Address", "fields": [
            {"name": "city", "type": "string"},
            {"name": "zip", "type": "string"}
        ]}},
        {"name": "work", "type": ["null", "Address"], "default": null}
    ]});
    let found = assert_unreadable(&v2, &v1);
    let locations: Vec<&str> = found.iter().map(|i| i.location.as_str()).collect();
    assert_eq!(
        locations,
        ["/fields/0/type/fields/1", "/fields/1/type/1/fields/1"]
    );
    assert!(
        found
            .iter()
            .all(|i| i.message.contains("`home.zip`") || i.message.contains("`work.zip`"))
    );
    assert_readable(&v1, &v2);
}

// ---------------------------------------------------------------- primitives

#[test]
fn promotions_only_go_one_way() {
    let widen = [
        ("long", "int"),
        ("float", "int"),
        ("double", "int"),
        ("float", "long"),
        ("double", "long"),
        ("double", "float"),
        ("string", "bytes"),
        ("bytes", "string"),
    ];
    for (reader, writer) in widen {
        assert_readable(&json!(reader), &json!(writer));
    }
    for (writer, reader) in widen {
        if (reader, writer) == ("string", "bytes") || (reader, writer) == ("bytes", "string") {
            continue;
        }
        let found = assert_unreadable(&json!(reader), &json!(writer));
        assert_eq!(found[0].kind, IncompatibilityKind::TypeMismatch);
        assert_eq!(
            found[0].message,
            format!("reader type `{reader}` cannot read writer type `{writer}`")
        );
    }
    // Inside containers and record fields too.
    assert_readable(
        &json!({"type": "map", "values": {"type": "array", "items": "long"}}),
        &json!({"type": "map", "values": {"type": "array", "items": "int"}}),
    );
    let found = assert_unreadable(
        &record("R", json!([{"name": "n", "type": "int"}])),
        &record("R", json!([{"name": "n", "type": "long"}])),
    );
    assert_eq!(found[0].location, "/fields/0/type");
    assert!(found[0].message.contains("`n`"));
}

#[test]
fn other_logical_types_follow_the_underlying_type() {
    // Only one side annotated: the underlying types decide.
    assert_readable(
        &json!({"type": "long", "logicalType": "timestamp-millis"}),
        &json!("int"),
    );
    // Two different logical types would change every value's meaning,
    // though `int` promotes to `long`: refused, as the decoder does.
    let found = assert_unreadable(
        &json!({"type": "long", "logicalType": "timestamp-millis"}),
        &json!({"type": "int", "logicalType": "date"}),
    );
    assert!(found[0].message.contains("logical type"), "{found:?}");
    assert_readable(
        &json!("string"),
        &json!({"type": "string", "logicalType": "uuid"}),
    );
    let found = assert_unreadable(
        &json!({"type": "int", "logicalType": "date"}),
        &json!({"type": "long", "logicalType": "timestamp-millis"}),
    );
    assert!(found[0].message.contains("timestamp-millis"), "{found:?}");
}

// ---------------------------------------------------------------- decimals

fn dec(precision: u32, scale: Option<u32>) -> Value {
    let mut v = json!({"type": "bytes", "logicalType": "decimal", "precision": precision});
    if let Some(s) = scale {
        v["scale"] = json!(s);
    }
    v
}

#[test]
fn decimal_scale_must_match() {
    let found = assert_unreadable(&dec(10, Some(2)), &dec(10, Some(3)));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, IncompatibilityKind::DecimalMismatch);
    assert_eq!(
        found[0].message,
        "reader decimal scale 2 differs from writer decimal scale 3"
    );
    // Also for fixed decimals and inside a record field.
    let fixed = |scale: u32| {
        json!({"type": "fixed", "name": "Amount", "size": 8,
               "logicalType": "decimal", "precision": 12, "scale": scale})
    };
    let found = assert_unreadable(
        &record("R", json!([{"name": "amount", "type": fixed(2)}])),
        &record("R", json!([{"name": "amount", "type": fixed(4)}])),
    );
    assert_eq!(found[0].location, "/fields/0/type");
    assert!(found[0].message.starts_with("field `amount`: "));
}

#[test]
fn decimal_without_scale_means_scale_zero() {
    assert_readable(&dec(6, None), &dec(6, Some(0)));
    assert_readable(&dec(6, Some(0)), &dec(6, None));
    assert_unreadable(&dec(6, None), &dec(6, Some(1)));
}

#[test]
fn decimal_precision_may_only_widen() {
    assert_readable(&dec(12, Some(2)), &dec(10, Some(2)));
    let found = assert_unreadable(&dec(8, Some(2)), &dec(10, Some(2)));
    assert_eq!(
        found[0].message,
        "reader decimal precision 8 is smaller than writer decimal precision 10"
    );
    // A decimal on one side only falls back to plain bytes.
    assert_readable(&json!("bytes"), &dec(10, Some(2)));
    assert_readable(&dec(10, Some(2)), &json!("bytes"));
}

// ---------------------------------------------------------------- enums, fixed

#[test]
fn enum_default_and_symbol_order() {
    let writer = json!({"type": "enum", "name": "Suit",
        "symbols": ["HEARTS", "SPADES", "CLUBS", "JOKER"]});
    let strict = json!({"type": "enum", "name": "Suit", "symbols": ["CLUBS", "HEARTS", "SPADES"]});
    let found = assert_unreadable(&strict, &writer);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, IncompatibilityKind::MissingEnumSymbols);
    assert_eq!(found[0].location, "/symbols");
    assert_eq!(
        found[0].message,
        "reader enum `Suit` lacks writer symbol `JOKER` and has no default"
    );
    let with_default = json!({"type": "enum", "name": "Suit",
        "symbols": ["UNKNOWN", "CLUBS", "HEARTS", "SPADES"], "default": "UNKNOWN"});
    assert_readable(&with_default, &writer);
    // Reordered symbols resolve by name.
    let reordered = json!({"type": "enum", "name": "Suit",
        "symbols": ["JOKER", "CLUBS", "SPADES", "HEARTS"]});
    assert_readable(&reordered, &writer);
    assert_readable(&writer, &reordered);
}

#[test]
fn fixed_size_mismatch() {
    let found = assert_unreadable(
        &json!({"type": "fixed", "name": "Md5", "size": 16}),
        &json!({"type": "fixed", "name": "Md5", "size": 20}),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, IncompatibilityKind::FixedSizeMismatch);
    assert_eq!(found[0].location, "/size");
    assert_eq!(
        found[0].message,
        "reader fixed `Md5` has size 16 but writer fixed `Md5` has size 20"
    );
    // Fixed and bytes never mix.
    assert_unreadable(
        &json!("bytes"),
        &json!({"type": "fixed", "name": "Md5", "size": 16}),
    );
}

// ---------------------------------------------------------------- unions

#[test]
fn union_rules() {
    // Writer union: every branch must be readable; empty writer union is
    // vacuously readable, an empty reader union reads nothing.
    assert_readable(&json!("double"), &json!(["int", "float"]));
    assert_readable(&json!(["string"]), &json!([]));
    let found = assert_unreadable(&json!([]), &json!("int"));
    assert_eq!(found[0].kind, IncompatibilityKind::MissingUnionBranch);
    let found = assert_unreadable(&json!(["null", "string"]), &json!(["null", "int", "long"]));
    let locations: Vec<&str> = found.iter().map(|i| i.location.as_str()).collect();
    assert_eq!(locations, ["/1", "/2"]);
    assert_eq!(
        found[0].message,
        "reader union has no branch that can read writer type `int`"
    );
    // Reader union around a non-union writer, with promotion.
    assert_readable(&json!(["null", "double"]), &json!("int"));
}

// ---------------------------------------------------------------- recursion

fn linked_list(value: &str) -> Value {
    json!({"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": value},
        {"name": "next", "type": ["null", "Node"], "default": null}
    ]})
}

#[test]
fn recursive_linked_list_terminates() {
    assert_readable(&linked_list("int"), &linked_list("int"));
    assert_readable(&linked_list("long"), &linked_list("int"));
    let found = assert_unreadable(&linked_list("int"), &linked_list("long"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].location, "/fields/0/type");
    assert!(found[0].message.contains("`value`"));

    // Mutual recursion through a second record and a map.
    let tree = |leaf: &str| {
        json!({"type": "record", "name": "Tree", "fields": [
            {"name": "leaf", "type": leaf},
            {"name": "kids", "type": {"type": "map", "values": {"type": "record",
                "name": "Edge", "fields": [
                    {"name": "to", "type": "Tree"},
                    {"name": "weight", "type": leaf}
                ]}}}
        ]})
    };
    assert_readable(&tree("double"), &tree("float"));
    assert_unreadable(&tree("float"), &tree("double"));
}

#[test]
fn shared_subtrees_are_checked_once() {
    // Thirty levels, each using the next record twice: without memoizing
    // finished record pairs this would take 2^30 comparisons.
    let mut level = record("L30", json!([{"name": "x", "type": "int"}]));
    for i in (0..30).rev() {
        level = record(
            &format!("L{i}"),
            json!([
                {"name": "left", "type": level},
                {"name": "right", "type": format!("L{}", i + 1)}
            ]),
        );
    }
    let s = schema(&level);
    assert!(can_read(&s, &s).is_empty());
}

// ---------------------------------------------------------------- levels

#[test]
fn level_names_round_trip() {
    for level in CompatibilityLevel::ALL {
        assert_eq!(level.to_string().parse::<CompatibilityLevel>(), Ok(level));
    }
    assert_eq!(
        "full_transitive".parse::<CompatibilityLevel>(),
        Ok(CompatibilityLevel::FullTransitive)
    );
    assert_eq!(CompatibilityLevel::default(), CompatibilityLevel::Backward);
    let err = "SIDEWAYS".parse::<CompatibilityLevel>().unwrap_err();
    assert_eq!(err.to_string(), "unknown compatibility level `SIDEWAYS`");
}

#[test]
fn levels_on_a_version_history() {
    use CompatibilityLevel as L;

    // v1: `name` is required.
    let v1 = schema(&record(
        "User",
        json!([{"name": "id", "type": "long"}, {"name": "name", "type": "string"}]),
    ));
    // v2: adds optional `email`, gives `name` a default.
    let v2 = schema(&record(
        "User",
        json!([
            {"name": "id", "type": "long"},
            {"name": "name", "type": "string", "default": ""},
            {"name": "email", "type": ["null", "string"], "default": null}
        ]),
    ));
    // v3: removes `name`, which v1 still requires.
    let v3 = schema(&record(
        "User",
        json!([
            {"name": "id", "type": "long"},
            {"name": "email", "type": ["null", "string"], "default": null}
        ]),
    ));
    // v3b: makes `email` required, which v1 data lacks.
    let v3b = schema(&record(
        "User",
        json!([
            {"name": "id", "type": "long"},
            {"name": "name", "type": "string", "default": ""},
            {"name": "email", "type": ["null", "string"]}
        ]),
    ));
    let history = [v1, v2];

    let verdicts = |proposed: &Schema| -> Vec<(L, Vec<String>)> {
        L::ALL
            .into_iter()
            .map(|level| (level, check(level, proposed, &history)))
            .collect()
    };

    for (level, reasons) in verdicts(&v3) {
        let ok = matches!(
            level,
            L::None | L::Backward | L::BackwardTransitive | L::Forward | L::Full
        );
        assert_eq!(reasons.is_empty(), ok, "v3 under {level}: {reasons:?}");
        for r in &reasons {
            assert_eq!(
                r,
                "forward: existing version 1 cannot read data written with the proposed schema: \
                 reader field `name` has no default and is missing from the writer (at `/fields/1`)"
            );
        }
    }
    for (level, reasons) in verdicts(&v3b) {
        let ok = matches!(
            level,
            L::None | L::Backward | L::Forward | L::ForwardTransitive | L::Full
        );
        assert_eq!(reasons.is_empty(), ok, "v3b under {level}: {reasons:?}");
        for r in &reasons {
            assert!(r.starts_with("backward: "), "{r}");
            assert!(r.contains("existing version 1:"), "{r}");
            assert!(r.contains("`email`"), "{r}");
        }
    }
    // The first version has nothing to be compatible with.
    for level in L::ALL {
        assert!(check(level, &history[0], &[]).is_empty());
    }
    // NONE accepts anything, even a different type.
    assert!(check(L::None, &schema(&json!("int")), &history).is_empty());
    let reasons = check(L::Full, &schema(&json!("int")), &history);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("version 2 (latest)"));
}

#[test]
fn absurd_nesting_is_reported_not_followed() {
    let mut nested = json!("int");
    for _ in 0..300 {
        nested = json!({"type": "array", "items": nested});
    }
    let s = schema(&nested);
    let found = can_read(&s, &s);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, IncompatibilityKind::TooComplex);
    assert_eq!(found[0].location, "/");
}
