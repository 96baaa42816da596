//! The route store: every route, kept as records of a compacted topic
//! (`routing.topic`, default `_switchyard_routes`) keyed by route id, and
//! materialized by every host instance. A tombstone removes a route.
//!
//! A change made through one instance is applied by every instance as soon
//! as its reader sees the record, well within the two seconds the design
//! allows; the routing engine takes each change between two records.
//!
//! Writes are checked writes of the table ([`GlobalTable::write_checked`]):
//! an `If-Match` condition, or a delete's "the route exists", is checked
//! against every write committed before, through whichever instance. Two
//! admins changing the same route at the same moment through two instances
//! with the same `If-Match` get one success and one `precondition-failed`.

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
        Ok(RouteStore { table, live })
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
        let mut stored = StoredRoute {
            route,
            revision: 0,
            updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let value = serde_json::to_vec(&stored).map_err(|e| ApiError::internal(&e))?;
        let id = stored.route.id.clone();
        // Whether the route was new, as of the write's check.
        let created = std::sync::atomic::AtomicBool::new(false);
        let offset = self
            .table
            .write_checked(&id, Some(&value), || {
                let current = self.live_revision(&id);
                created.store(current == 0, std::sync::atomic::Ordering::Relaxed);
                let Some(expected) = if_revision else {
                    return Ok(());
                };
                // -1 stands for `If-Match: *`: any stored revision.
                let holds = if expected == ANY_REVISION {
                    current != 0
                } else {
                    current == expected
                };
                if holds {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        Code::PreconditionFailed,
                        format!(
                            "route `{id}` is at revision {current}, not {expected}; read it again and reapply your change"
                        ),
                    ))
                }
            })
            .await?;
        stored.revision = offset + 1;
        Ok((stored, created.into_inner()))
    }

    /// Removes a route.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        self.table
            .write_checked(id, None, || match self.live_revision(id) {
                0 => Err(not_found(id)),
                _ => Ok(()),
            })
            .await?;
        Ok(())
    }

    /// The revision of a route as applied now; 0 when there is none.
    fn live_revision(&self, id: &str) -> i64 {
        self.live
            .routes
            .read()
            .expect("routes lock")
            .get(id)
            .map_or(0, |r| r.revision)
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        Code::NotFound,
        format!("there is no route `{id}`; `switchyard route list` shows the routes"),
    )
}
