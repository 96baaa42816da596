//! Routes claim statuses by their X12 status category code
//! (`status_category_code`, STC01-1 of a 277): a status whose category
//! starts with one of the configured prefixes goes to the configured topic,
//! any other goes nowhere. With `prefixes = "F"` it takes the finalized
//! statuses, the same decision as the built-in filter
//! `{"status_category_code": [{"prefix": "F"}]}`; the benchmark compares
//! the two.
//!
//! Configuration:
//! - `prefixes` (default `F`): comma-separated category prefixes.
//! - `topic` (default `claim.finalized`): the destination; the route must
//!   allow it.

use switchyard_plugin_sdk::{ConfigEntry, Event, PluginError, Router, config_value, export_router};

/// Default category prefixes: the finalized statuses.
pub const DEFAULT_PREFIXES: &str = "F";
/// Default destination.
pub const DEFAULT_TOPIC: &str = "claim.finalized";

/// The router.
pub struct StatusCategoryRouter;

#[derive(serde::Deserialize)]
struct ClaimStatus {
    status_category_code: String,
}

impl Router for StatusCategoryRouter {
    fn route(event: Event, config: Vec<ConfigEntry>) -> Result<Vec<String>, PluginError> {
        let status: ClaimStatus = event.object()?;
        let prefixes = config_value(&config, "prefixes").unwrap_or(DEFAULT_PREFIXES);
        let topic = config_value(&config, "topic").unwrap_or(DEFAULT_TOPIC);
        Ok(if matches(prefixes, &status.status_category_code) {
            vec![topic.to_string()]
        } else {
            Vec::new()
        })
    }
}

/// Whether `category` starts with one of the comma-separated `prefixes`
/// (blank prefixes are ignored, so a stray comma matches nothing extra).
pub fn matches(prefixes: &str, category: &str) -> bool {
    prefixes
        .split(',')
        .map(str::trim)
        .filter(|prefix| !prefix.is_empty())
        .any(|prefix| category.starts_with(prefix))
}

export_router!(StatusCategoryRouter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalized_categories_match_f() {
        for category in ["F0", "F1", "F2", "F3", "F4"] {
            assert!(matches("F", category), "{category}");
        }
        for category in ["A1", "P1", "R3", "E0", ""] {
            assert!(!matches("F", category), "{category}");
        }
    }

    #[test]
    fn several_prefixes_and_stray_commas() {
        assert!(matches("A, P", "P1"));
        assert!(matches("A,P", "A3"));
        assert!(!matches("A,,P,", "F1"));
        assert!(!matches(",", "F1"));
    }
}
