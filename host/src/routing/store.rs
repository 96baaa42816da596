//! The route store: every route, kept as records of a compacted topic
//! (`routing.topic`, default `_switchyard_routes`) keyed by route id, and
//! materialized by every host instance. A tombstone removes a route.
//!
//! A change made through one instance is applied by every instance as soon
//! as its reader sees the record, well within the two seconds the design
//! allows; the routing engine takes each change between two records.
//!
//! Known limit: writes are serialized per instance only; two admins
//! changing the same route at the same moment through two instances both
//! succeed, and the later record wins (`If-Match` narrows that window to
//! the time one write takes).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::route::{Route, StoredRoute};
use crate::error::{ApiError, Code};
use crate::kafka::Kafka;
use crate::table::GlobalTable;

/// The `if_revision` of [`RouteStore::put`] meaning "whatever revision,
/// as long as the route exists" (`If-Match: *`).
pub const ANY_REVISION: i64 = -1;

/// Every route, by id, as this instance knows them.
pub type Routes = BTreeMap<String, Arc<StoredRoute>>;

/// See the module docs.
pub struct RouteStore {
    table: GlobalTable,
    live: Arc<Live>,
    /// Serializes this instance's writes, so a conditional write checks and
    /// writes without another write of this instance in between.
    writes: tokio::sync::Mutex<()>,
}

/// The routes as applied, and the last snapshot handed out. Applying a
/// record only bumps a version; a snapshot is copied when someone asks for
/// it after a change, so reading a long routes topic at start-up stays
/// linear.
struct Live {
    routes: RwLock<Routes>,
    version: std::sync::atomic::AtomicU64,
    snapshot: std::sync::Mutex<(u64, Arc<Routes>)>,
}

impl RouteStore {
    /// Reads the routes topic to its end and follows it.
    pub async fn start(kafka: Arc<Kafka>, topic: &str) -> anyhow::Result<RouteStore> {
        let live = Arc::new(Live {
            routes: RwLock::new(Routes::new()),
            version: std::sync::atomic::AtomicU64::new(0),
            snapshot: std::sync::Mutex::new((0, Arc::new(Routes::new()))),
        });
        let applied = Arc::clone(&live);
        let apply = Box::new(move |key: &str, value: Option<&[u8]>, offset: i64| {
            let mut routes = applied.routes.write().expect("routes lock");
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
            applied
                .version
                .fetch_add(1, std::sync::atomic::Ordering::Release);
            Ok(())
        });
        let table = GlobalTable::start(kafka, topic, apply).await?;
        Ok(RouteStore {
            table,
            live,
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// The routes now, as an immutable snapshot: the engine evaluates one
    /// record against one consistent set of routes.
    pub fn snapshot(&self) -> Arc<Routes> {
        let mut cached = self.live.snapshot.lock().expect("snapshot lock");
        let routes = self.live.routes.read().expect("routes lock");
        let version = self.live.version.load(std::sync::atomic::Ordering::Acquire);
        if cached.0 != version {
            *cached = (version, Arc::new(routes.clone()));
        }
        Arc::clone(&cached.1)
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.live.routes.read().expect("routes lock").len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let _serialized = self.writes.lock().await;
        let existing = self.snapshot().get(&route.id).cloned();
        if let Some(expected) = if_revision {
            let current = existing.as_ref().map_or(0, |r| r.revision);
            // -1 stands for `If-Match: *`: any stored revision.
            let holds = if expected == ANY_REVISION {
                current != 0
            } else {
                current == expected
            };
            if !holds {
                return Err(ApiError::new(
                    Code::PreconditionFailed,
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
        let _serialized = self.writes.lock().await;
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
