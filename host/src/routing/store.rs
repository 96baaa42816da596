//! The route store: every route, kept as records of a compacted topic
//! (`routing.topic`, default `_switchyard_routes`) keyed by route id, and
//! materialized by every host instance. A tombstone removes a route.
//!
//! A change made through one instance is applied by every instance as soon
//! as its reader sees the record, well within the two seconds the design
//! allows; the routing engine takes each change between two records.
//!
//! Known limit: two admins changing the same route at the same moment on two
//! instances both succeed, and the later record wins. `If-Match` with the
//! revision narrows the window to the time one write takes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::route::{Route, StoredRoute};
use crate::error::{ApiError, Code};
use crate::kafka::Kafka;
use crate::table::GlobalTable;

/// Every route, by id, as this instance knows them.
pub type Routes = BTreeMap<String, Arc<StoredRoute>>;

/// See the module docs.
pub struct RouteStore {
    table: GlobalTable,
    routes_rx: watch::Receiver<Arc<Routes>>,
}

impl RouteStore {
    /// Reads the routes topic to its end and follows it.
    pub async fn start(kafka: Arc<Kafka>, topic: &str) -> anyhow::Result<RouteStore> {
        let (routes_tx, routes_rx) = watch::channel(Arc::new(Routes::new()));
        let routes = Arc::new(RwLock::new(Routes::new()));
        let apply = Box::new(move |key: &str, value: Option<&[u8]>, offset: i64| {
            let mut routes = routes.write().expect("routes lock");
            match value {
                None => {
                    routes.remove(key);
                }
                Some(value) => {
                    let mut stored: StoredRoute = serde_json::from_slice(value)?;
                    // Offset + 1: revision 0 means "no such route".
                    stored.revision = offset + 1;
                    anyhow::ensure!(
                        stored.route.id == key,
                        "record key `{key}` holds route `{}`",
                        stored.route.id
                    );
                    routes.insert(key.to_string(), Arc::new(stored));
                }
            }
            // Readers get an immutable snapshot: the engine evaluates one
            // record against one consistent set of routes.
            routes_tx.send_replace(Arc::new(routes.clone()));
            Ok(())
        });
        let table = GlobalTable::start(kafka, topic, apply).await?;
        Ok(RouteStore { table, routes_rx })
    }

    /// The routes now.
    pub fn snapshot(&self) -> Arc<Routes> {
        self.routes_rx.borrow().clone()
    }

    /// A receiver that sees every new snapshot.
    pub fn watch(&self) -> watch::Receiver<Arc<Routes>> {
        self.routes_rx.clone()
    }

    /// One route.
    pub fn get(&self, id: &str) -> Result<Arc<StoredRoute>, ApiError> {
        self.snapshot()
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// Creates or replaces a route, checked by the caller. With
    /// `if_revision`, refuses unless the stored revision is that one (0:
    /// unless there is no such route). Returns the stored route and whether
    /// it is new.
    pub async fn put(
        &self,
        route: Route,
        if_revision: Option<i64>,
    ) -> Result<(StoredRoute, bool), ApiError> {
        let existing = self.snapshot().get(&route.id).cloned();
        if let Some(expected) = if_revision {
            let current = existing.as_ref().map_or(0, |r| r.revision);
            if current != expected {
                return Err(ApiError::new(
                    Code::Conflict,
                    format!(
                        "route `{}` is at revision {current}, not {expected}; read it again and reapply your change",
                        route.id
                    ),
                ));
            }
        }
        let mut stored = StoredRoute {
            route,
            revision: 0,
            updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let value = serde_json::to_vec(&stored).map_err(|e| ApiError::internal(&e))?;
        let offset = self.table.write(&stored.route.id, Some(&value)).await?;
        stored.revision = offset + 1;
        Ok((stored, existing.is_none()))
    }

    /// Removes a route.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        self.get(id)?;
        self.table.write(id, None).await?;
        Ok(())
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        Code::NotFound,
        format!("there is no route `{id}`; `switchyard route list` shows the routes"),
    )
}
