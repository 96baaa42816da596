//! JSON paths for error messages, built lazily.
//!
//! Encoding and decoding walk deep values; formatting a path string at every
//! step would cost an allocation per field. Instead each level borrows its
//! parent's segment on the stack and the string is only rendered when an error
//! is actually reported.

use std::fmt::Write as _;

/// One step of a JSON path, linked to its parent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    /// `$`.
    Root,
    /// `.name` of a record field.
    Field(&'a Path<'a>, &'a str),
    /// `[i]` of an array item.
    Index(&'a Path<'a>, usize),
    /// `.key` or `["key"]` of a map entry.
    Key(&'a Path<'a>, &'a str),
}

impl Path<'_> {
    /// Renders the path in JSONPath-like syntax, e.g. `$.lines[2].charge`.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Path::Root => out.push('$'),
            Path::Field(p, name) => {
                p.write(out);
                out.push('.');
                out.push_str(name);
            }
            Path::Index(p, i) => {
                p.write(out);
                let _ = write!(out, "[{i}]");
            }
            Path::Key(p, key) => {
                p.write(out);
                let simple = key
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if simple {
                    out.push('.');
                    out.push_str(key);
                } else {
                    // Map keys are arbitrary strings; quote them so the path
                    // stays unambiguous.
                    out.push('[');
                    out.push_str(&serde_json::Value::String((*key).to_owned()).to_string());
                    out.push(']');
                }
            }
        }
    }
}
