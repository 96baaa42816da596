//! The catalog of nouns and verbs: which Avro schema governs each
//! `<noun>.<verb>` and under which registry subject.
//!
//! Schemas come from a folder laid out as `<noun>/<verb>.avsc`. Each noun has
//! one topic, named after the noun, and each schema is registered under the
//! topic-record subject `<noun>-<record full name>`, so one topic carries
//! many verbs while each verb's schema evolves on its own. Publishing always
//! uses the latest version of the verb's subject, so a compatible version
//! registered through the registry API takes effect without a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::avro::Schema;
use crate::error::{ApiError, Code};
use crate::nvo::{Noun, Verb};
use crate::registry::{RegisteredSchema, Registry};

/// The schema binding of one verb of a noun.
#[derive(Debug, Clone)]
pub struct VerbSchema {
    /// Registry subject, `<noun>-<record full name>`.
    pub subject: String,
}

/// Nouns, their verbs, and their schema subjects.
pub struct Catalog {
    registry: Arc<Registry>,
    nouns: BTreeMap<String, BTreeMap<String, VerbSchema>>,
}

impl Catalog {
    /// Reads the schema folder and registers every schema found.
    pub async fn load(dir: &Path, registry: Arc<Registry>) -> anyhow::Result<Catalog> {
        let mut nouns: BTreeMap<String, BTreeMap<String, VerbSchema>> = BTreeMap::new();
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read schema folder `{}`", dir.display()))?;
        let mut noun_dirs: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        noun_dirs.sort();
        for noun_dir in noun_dirs {
            let noun_name = noun_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let noun = Noun::parse(&noun_name).map_err(|error| {
                anyhow::anyhow!("schema folder `{}`: {}", noun_dir.display(), error.detail)
            })?;
            let mut files: Vec<_> = std::fs::read_dir(&noun_dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
                .collect();
            files.sort();
            for file in files {
                let verb_name = file
                    .file_stem()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let verb = Verb::parse(verb_name).map_err(|error| {
                    anyhow::anyhow!("schema file `{}`: {}", file.display(), error.detail)
                })?;
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read schema file `{}`", file.display()))?;
                let schema = Schema::parse_str(&text).map_err(|error| {
                    anyhow::anyhow!(
                        "schema file `{}` is not valid avro: {error}",
                        file.display()
                    )
                })?;
                let full_name = schema.node(schema.root()).fullname().with_context(|| {
                    format!(
                        "schema file `{}` must be a named record so it has a subject",
                        file.display()
                    )
                })?;
                let subject = format!("{noun}-{full_name}");
                let registered = registry.register(&subject, &text).await.map_err(|error| {
                    anyhow::anyhow!(
                        "cannot register `{}` as `{subject}`: {error}",
                        file.display()
                    )
                })?;
                tracing::info!(noun = %noun, verb = %verb, subject, id = registered.schema.id, "schema ready");
                nouns
                    .entry(noun.as_str().to_string())
                    .or_default()
                    .insert(verb.as_str().to_string(), VerbSchema { subject });
            }
        }
        Ok(Catalog { registry, nouns })
    }

    /// Every noun with at least one verb.
    pub fn nouns(&self) -> impl Iterator<Item = &str> {
        self.nouns.keys().map(String::as_str)
    }

    /// Every `(noun, verb)` pair.
    pub fn event_types(&self) -> Vec<(String, String)> {
        self.nouns
            .iter()
            .flat_map(|(noun, verbs)| verbs.keys().map(move |verb| (noun.clone(), verb.clone())))
            .collect()
    }

    /// Whether the noun exists.
    pub fn has_noun(&self, noun: &str) -> bool {
        self.nouns.contains_key(noun)
    }

    /// The latest schema of a noun and verb, with the reason when there is
    /// none.
    pub fn schema_for(&self, noun: &Noun, verb: &Verb) -> Result<Arc<RegisteredSchema>, ApiError> {
        let verbs = self.nouns.get(noun.as_str()).ok_or_else(|| {
            ApiError::new(
                Code::UnknownNoun,
                format!(
                    "no schema is registered for noun `{noun}`; known nouns: {}",
                    self.nouns
                        .keys()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_field("noun")
        })?;
        let binding = verbs.get(verb.as_str()).ok_or_else(|| {
            ApiError::new(
                Code::UnknownVerb,
                format!(
                    "noun `{noun}` has no verb `{verb}`; known verbs: {}",
                    verbs
                        .keys()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_field("verb")
        })?;
        let latest = self
            .registry
            .version(&binding.subject, "latest")
            .map_err(|error| {
                ApiError::new(
                    Code::RegistryUnavailable,
                    format!(
                        "schema subject `{}` cannot be read: {error}",
                        binding.subject
                    ),
                )
            })?;
        Ok(latest.schema)
    }

    /// The registry behind the catalog.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}
