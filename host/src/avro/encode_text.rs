//! JSON text to Avro binary, without a JSON tree in between.
//!
//! Plugins hand their output objects over as text. Parsing that text into
//! a [`Value`] (a map per object, a string per key and value) and then
//! encoding the tree was about a sixth of an aggregator's thread in the
//! benchmark; this encoder reads the text once, guided by the schema, and
//! writes Avro as it goes.
//!
//! It is a fast path, never a second opinion: it answers only when the
//! answer is certain to be the bytes [`super::encode_json`] gives for the
//! parsed text, and `None` otherwise, and the caller then takes the tree
//! path, which also words any error. Records, arrays, strings, integers,
//! booleans, nulls and `["null", <one of those scalars>]` unions are read
//! natively; any other node (maps, other unions, logical types, bytes,
//! floats, enums) is read into a [`Value`] of its own and handed to the
//! tree encoder, so the two cannot disagree there. Anything unexpected (a
//! field the record does not have, a key given twice, a missing field with
//! no default, a number of the wrong kind) gives up.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::encode::{encode_node, write_long};
use super::schema::{MAX_DEPTH, NodeId, NodeKind, Schema};

/// Encodes the JSON text `text` as Avro for `schema` when that can be done
/// without building the JSON tree; `None` means "take the tree path".
pub fn encode_json_text(schema: &Schema, text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut deserializer = serde_json::Deserializer::from_str(text);
    Node {
        schema,
        id: schema.root(),
        depth: 0,
        out: &mut out,
    }
    .deserialize(&mut deserializer)
    .ok()?;
    deserializer.end().ok()?;
    Some(out)
}

/// The reason the fast path gave up; never shown to anyone.
fn give_up<E: de::Error>() -> E {
    E::custom("not for the fast path")
}

/// One schema node to read from the text, and where its bytes go.
struct Node<'s, 'o> {
    schema: &'s Schema,
    id: NodeId,
    depth: usize,
    out: &'o mut Vec<u8>,
}

impl Node<'_, '_> {
    /// Whether this node is read natively (else through a [`Value`]).
    fn native(&self) -> bool {
        let node = self.schema.node(self.id);
        if node.logical.is_some() {
            return false;
        }
        match &node.kind {
            NodeKind::Record(_)
            | NodeKind::Array(_)
            | NodeKind::String
            | NodeKind::Int
            | NodeKind::Long
            | NodeKind::Boolean
            | NodeKind::Null => true,
            NodeKind::Union(branches) => self.nullable_scalar(branches).is_some(),
            _ => false,
        }
    }

    /// For a union `["null", T]` with `T` a plain string, integer or
    /// boolean: `T`'s node. The tree encoder picks `null` for JSON null
    /// and `T` for anything `T` accepts, and nothing else can pass (a
    /// wrapper object is not a scalar), so the choice needs no trial.
    fn nullable_scalar(&self, branches: &[NodeId]) -> Option<NodeId> {
        let [null, other] = branches else {
            return None;
        };
        let scalar = self.schema.node(*other);
        (matches!(self.schema.node(*null).kind, NodeKind::Null)
            && scalar.logical.is_none()
            && matches!(
                scalar.kind,
                NodeKind::String | NodeKind::Int | NodeKind::Long | NodeKind::Boolean
            ))
        .then_some(*other)
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(give_up());
        }
        if self.native() {
            return deserializer.deserialize_any(self);
        }
        // Read into a tree of its own and let the tree encoder decide.
        let value = <Value as serde::Deserialize>::deserialize(deserializer)?;
        encode_node(self.schema, self.id, &value, false, self.depth, self.out)
            .map_err(|_| give_up())
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value of the schema")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        match &self.schema.node(self.id).kind {
            NodeKind::Null => Ok(()),
            NodeKind::Union(_) => {
                // `nullable_scalar` made sure branch 0 is `null`.
                write_long(self.out, 0);
                Ok(())
            }
            _ => Err(give_up()),
        }
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        match self.scalar() {
            (Some(index), NodeKind::Boolean) => {
                write_long(self.out, index);
                self.out.push(u8::from(b));
                Ok(())
            }
            (None, NodeKind::Boolean) => {
                self.out.push(u8::from(b));
                Ok(())
            }
            _ => Err(give_up()),
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        let (branch, kind) = self.scalar();
        let fits = match kind {
            NodeKind::Long => true,
            NodeKind::Int => i32::try_from(n).is_ok(),
            _ => false,
        };
        if !fits {
            return Err(give_up());
        }
        if let Some(index) = branch {
            write_long(self.out, index);
        }
        write_long(self.out, n);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        // Above `i64::MAX` the tree encoder refuses it as out of range.
        let n = i64::try_from(n).map_err(|_| give_up())?;
        self.visit_i64(n)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        // Only integer and boolean scalars are native; a float for one of
        // them is an error the tree path words.
        Err(give_up())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        let (branch, kind) = self.scalar();
        if !matches!(kind, NodeKind::String) {
            return Err(give_up());
        }
        if let Some(index) = branch {
            write_long(self.out, index);
        }
        write_long(self.out, s.len() as i64);
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let NodeKind::Array(items) = self.schema.node(self.id).kind else {
            return Err(give_up());
        };
        // Avro writes the count first: items go to a buffer of their own.
        let mut body = Vec::new();
        let mut count = 0_i64;
        loop {
            let item = Node {
                schema: self.schema,
                id: items,
                depth: self.depth + 1,
                out: &mut body,
            };
            if seq.next_element_seed(item)?.is_none() {
                break;
            }
            count += 1;
        }
        if count > 0 {
            write_long(self.out, count);
            self.out.extend_from_slice(&body);
        }
        self.out.push(0);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let NodeKind::Record(record) = &self.schema.node(self.id).kind else {
            return Err(give_up());
        };
        // Fields written in the schema's order (as a struct serializes)
        // go straight out. From the first one out of order on, each field
        // goes to a buffer of its own, and the buffers are joined in the
        // schema's order at the end. A repeated key (the tree keeps the
        // last) or an unknown one (the tree refuses it) gives up.
        let count = record.fields.len();
        let mut written = 0;
        let mut later: Vec<Option<Vec<u8>>> = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let index = record.field_index(&key).ok_or_else(give_up)?;
            if index < written {
                return Err(give_up());
            }
            let field = Node {
                schema: self.schema,
                id: record.fields[index].schema,
                depth: self.depth + 1,
                out: &mut *self.out,
            };
            if later.is_empty() && index == written {
                map.next_value_seed(field)?;
                written += 1;
                continue;
            }
            if later.is_empty() {
                later = vec![None; count];
            }
            if later[index].is_some() {
                return Err(give_up());
            }
            let mut bytes = Vec::new();
            map.next_value_seed(Node {
                out: &mut bytes,
                ..field
            })?;
            later[index] = Some(bytes);
        }
        for index in written..count {
            let field = &record.fields[index];
            match (later.get_mut(index).and_then(Option::take), &field.default) {
                (Some(bytes), _) => self.out.extend_from_slice(&bytes),
                (None, Some(default)) => {
                    encode_node(
                        self.schema,
                        field.schema,
                        default,
                        true,
                        self.depth + 1,
                        self.out,
                    )
                    .map_err(|_| give_up())?;
                }
                (None, None) => return Err(give_up()),
            }
        }
        Ok(())
    }
}

impl Node<'_, '_> {
    /// The scalar kind to write, and the union branch index to write
    /// before it when this node is a `["null", T]` union.
    fn scalar(&self) -> (Option<i64>, &NodeKind) {
        let node = self.schema.node(self.id);
        match &node.kind {
            NodeKind::Union(branches) => match self.nullable_scalar(branches) {
                Some(other) => (Some(1), &self.schema.node(other).kind),
                None => (None, &node.kind),
            },
            kind => (None, kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::encode_json;

    fn schema(text: &str) -> Schema {
        Schema::parse_str(text).expect("schema parses")
    }

    /// The fast path either agrees with the tree path or stays out.
    fn agrees(s: &Schema, text: &str) -> Option<Vec<u8>> {
        let fast = encode_json_text(s, text);
        let tree = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| encode_json(s, &v).ok());
        if let Some(fast) = &fast {
            assert_eq!(Some(fast), tree.as_ref(), "{text}");
        }
        fast
    }

    fn summary_schema() -> Schema {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/claim/appeal-summary-updated.avsc"
        ))
        .expect("summary schema");
        schema(&text)
    }

    const SUMMARY: &str = r#"{"claim_id":"C-1","provider_id":"P-9","current_status":{"category":"F1","code":"65","since":"2024-01-02T00:00:00.000Z"},"history":[{"category":"A1","code":"20","reported_at":"2024-01-01T00:00:00.000Z","effective_date":null},{"category":"F1","code":"65","reported_at":"2024-01-02T00:00:00.000Z","effective_date":"2024-01-02"}],"time_in_status":[{"status":"A1:20","millis":86400000}],"status_changes":2,"reconsiderations":1}"#;

    #[test]
    fn the_reference_summary_takes_the_fast_path() {
        let s = summary_schema();
        assert!(agrees(&s, SUMMARY).is_some());
        // Fields in another order, escapes, empty arrays, null unions.
        let reordered = r#"{"reconsiderations":0,"status_changes":0,"time_in_status":[],"history":[],"current_status":null,"provider_id":null,"claim_id":"C-\u00e9\"2\""}"#;
        assert!(agrees(&s, reordered).is_some());
    }

    #[test]
    fn what_the_fast_path_cannot_vouch_for_goes_to_the_tree() {
        let s = summary_schema();
        for text in [
            // A key given twice: the tree keeps the last.
            r#"{"claim_id":"a","claim_id":"b","provider_id":null,"current_status":null,"history":[],"time_in_status":[],"status_changes":0,"reconsiderations":0}"#,
            // An unknown field, a missing field, a float for an int.
            r#"{"claim_id":"a","extra":1,"provider_id":null,"current_status":null,"history":[],"time_in_status":[],"status_changes":0,"reconsiderations":0}"#,
            r#"{"provider_id":null,"current_status":null,"history":[],"time_in_status":[],"status_changes":0,"reconsiderations":0}"#,
            r#"{"claim_id":"a","provider_id":null,"current_status":null,"history":[],"time_in_status":[],"status_changes":1.0,"reconsiderations":0}"#,
            // A wrapped union branch, an int out of range, trailing text.
            r#"{"claim_id":"a","provider_id":{"string":"p"},"current_status":null,"history":[],"time_in_status":[],"status_changes":0,"reconsiderations":0}"#,
            r#"{"claim_id":"a","provider_id":null,"current_status":null,"history":[],"time_in_status":[],"status_changes":4294967296,"reconsiderations":0}"#,
            r#"{"claim_id":"a","provider_id":null,"current_status":null,"history":[],"time_in_status":[],"status_changes":0,"reconsiderations":0} x"#,
            "not json",
        ] {
            assert_eq!(agrees(&s, text), None, "{text}");
        }
    }

    /// Fields in order, out of order, repeated after a reorder, and left
    /// out where the schema has a default.
    #[test]
    fn field_order_repeats_and_defaults() {
        let s = schema(
            r#"{"type":"record","name":"R","fields":[
                {"name":"a","type":"string"},
                {"name":"b","type":"long","default":7},
                {"name":"c","type":["null","string"],"default":null},
                {"name":"d","type":{"type":"array","items":"int"}}]}"#,
        );
        for text in [
            r#"{"a":"x","b":1,"c":"y","d":[1,2]}"#,
            r#"{"a":"x","d":[1,2]}"#,
            r#"{"d":[],"c":null,"a":"x"}"#,
            r#"{"a":"x","c":"y","b":2,"d":[3]}"#,
        ] {
            assert!(agrees(&s, text).is_some(), "{text}");
        }
        for text in [
            r#"{"a":"x","d":[1],"c":"y","d":[2]}"#,
            r#"{"a":"x","c":"y","c":"z","d":[]}"#,
            r#"{"b":1,"c":null,"d":[]}"#,
        ] {
            assert_eq!(agrees(&s, text), None, "{text}");
        }
    }

    /// Every truncation of the summary and many one-character corruptions
    /// of it: wherever the fast path answers, the tree path gives the same
    /// bytes.
    #[test]
    fn corrupted_summaries_never_disagree() {
        let s = summary_schema();
        let mut answered = 0;
        for end in 0..=SUMMARY.len() {
            if SUMMARY.is_char_boundary(end) {
                answered += usize::from(agrees(&s, &SUMMARY[..end]).is_some());
            }
        }
        assert_eq!(answered, 1, "only the whole text encodes");
        let bytes = SUMMARY.as_bytes();
        for at in 0..bytes.len() {
            for replacement in [b'0', b'9', b'-', b'"', b'n', b'{', b'[', b',', b'.', b'e'] {
                let mut corrupt = bytes.to_vec();
                corrupt[at] = replacement;
                if let Ok(text) = std::str::from_utf8(&corrupt) {
                    agrees(&s, text);
                }
            }
        }
    }

    /// The interop schema's other node kinds (maps, floats, bytes, enums,
    /// fixed, a three-way union) go through trees of their own and still
    /// come out as the tree path writes them.
    #[test]
    fn other_node_kinds_come_out_as_the_tree_writes_them() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/avro/avro__schemas__interop.avsc"
        ))
        .expect("interop schema");
        let s = schema(&text);
        let value = r#"{"intField":-7,"longField":1234567890123,"stringField":"s","boolField":true,"floatField":1.5,"doubleField":-2.25,"bytesField":"\u0000\u00ff","nullField":null,"arrayField":[1.0,2],"mapField":{"a":{"label":"x"},"b":{"label":"y"}},"unionField":3.5,"enumField":"B","fixedField":"0123456789abcdef","recordField":{"label":"root","children":[{"label":"leaf","children":[]}]}}"#;
        assert!(agrees(&s, value).is_some());
    }
}
