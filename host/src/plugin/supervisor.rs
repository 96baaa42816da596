//! The supervisor keeps the running pipelines in line with the plugin store:
//! it starts a pipeline for every active, unpaused plugin, hot-swaps a
//! pipeline's plugin when another version is activated, and stops pipelines
//! of paused or deleted plugins. It reacts to every change of the store, so a
//! change made through any instance reaches all of them within moments.
//!
//! Plugins loaded from `plugins.dir` are fixed for the life of the process
//! and run beside the stored ones; a stored plugin with the same name as a
//! folder plugin is not started on this instance (the folder wins), and a
//! warning says so.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::store::{PluginStore, VersionRecord};
use super::{Manifest, Plugin, Runtime};
use crate::pipeline::{self, PipelineContext};

struct Running {
    version: String,
    sources: Vec<String>,
    plugin_tx: watch::Sender<Arc<Plugin>>,
    stop_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// See the module docs.
pub struct Supervisor {
    runtime: Arc<Runtime>,
    store: Arc<PluginStore>,
    context: Arc<PipelineContext>,
    folder: Vec<Arc<Plugin>>,
    running: Mutex<HashMap<String, Running>>,
    /// Compiled versions, by `name@version`, so a rollback swaps instantly.
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
}

impl Supervisor {
    /// A supervisor over these parts.
    pub fn new(
        runtime: Arc<Runtime>,
        store: Arc<PluginStore>,
        context: Arc<PipelineContext>,
        folder: Vec<Arc<Plugin>>,
    ) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            runtime,
            store,
            context,
            folder,
            running: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The plugin running under a name right now, folder or store.
    pub async fn running(&self, name: &str) -> Option<Arc<Plugin>> {
        if let Some(plugin) = self.folder.iter().find(|p| p.manifest().name == name) {
            return Some(Arc::clone(plugin));
        }
        self.running
            .lock()
            .await
            .get(name)
            .map(|r| r.plugin_tx.borrow().clone())
    }

    /// Every plugin running on this instance: the folder's and the active
    /// stored versions.
    pub async fn plugins(&self) -> Vec<Arc<Plugin>> {
        let mut plugins: Vec<Arc<Plugin>> = self.folder.clone();
        plugins.extend(
            self.running
                .lock()
                .await
                .values()
                .map(|r| r.plugin_tx.borrow().clone()),
        );
        plugins
    }

    /// Runs until `shutdown_rx` turns true, then stops every pipeline after
    /// its current record.
    pub async fn run(self: Arc<Self>, mut shutdown_rx: watch::Receiver<bool>) {
        let mut folder_tasks = Vec::new();
        for plugin in &self.folder {
            let (plugin_tx, plugin_rx) = watch::channel(Arc::clone(plugin));
            let context = Arc::clone(&self.context);
            let stop = shutdown_rx.clone();
            folder_tasks.push(tokio::spawn(async move {
                // Kept alive for the life of the pipeline.
                let _plugin_tx = plugin_tx;
                pipeline::run(context, plugin_rx, stop).await;
            }));
        }
        let mut changes = self.store.changes();
        loop {
            changes.borrow_and_update();
            self.reconcile().await;
            tokio::select! {
                () = crate::shutdown::stopped(&mut shutdown_rx) => break,
                changed = changes.changed() => if changed.is_err() { break },
            }
        }
        let running: Vec<Running> = self.running.lock().await.drain().map(|(_, r)| r).collect();
        for r in &running {
            r.stop_tx.send_replace(true);
        }
        for r in running {
            let _ = r.task.await;
        }
        for task in folder_tasks {
            let _ = task.await;
        }
    }

    /// Compiles (or finds) a stored version.
    pub async fn load(&self, record: &VersionRecord) -> anyhow::Result<Arc<Plugin>> {
        let label = format!("{}@{}", record.name, record.version);
        if let Some(plugin) = self.loaded.lock().await.get(&label) {
            return Ok(Arc::clone(plugin));
        }
        let manifest = Manifest::parse(&record.manifest)?;
        let bytes = self.store.component(record).await?;
        let runtime = Arc::clone(&self.runtime);
        let plugin =
            Arc::new(tokio::task::spawn_blocking(move || runtime.load(manifest, &bytes)).await??);
        self.loaded.lock().await.insert(label, Arc::clone(&plugin));
        Ok(plugin)
    }

    async fn reconcile(&self) {
        let entries = self.store.list();
        let mut running = self.running.lock().await;
        for entry in &entries {
            let name = &entry.name;
            if self.folder.iter().any(|p| &p.manifest().name == name) {
                tracing::warn!(plugin = %name, "a stored plugin has the name of a folder plugin; the folder one runs here");
                continue;
            }
            let desired = if entry.state.paused.is_some() {
                None
            } else {
                entry.active_version()
            };
            let Some(record) = desired else {
                if let Some(r) = running.remove(name) {
                    r.stop_tx.send_replace(true);
                    tracing::info!(plugin = %name, reason = entry.state.paused.as_deref().unwrap_or("no active version"), "pipeline stopped");
                }
                continue;
            };
            if running
                .get(name)
                .is_some_and(|r| r.version == record.version)
            {
                continue;
            }
            let plugin = match self.load(record).await {
                Ok(plugin) => plugin,
                Err(error) => {
                    tracing::error!(plugin = %name, version = %record.version, error = format!("{error:#}"), "cannot load the active version; the previous one keeps running");
                    continue;
                }
            };
            let sources = plugin.manifest().source_nouns();
            match running.get_mut(name) {
                // Same topics: swap in place, between two records.
                Some(r) if r.sources == sources => {
                    r.plugin_tx.send_replace(Arc::clone(&plugin));
                    r.version = record.version.clone();
                    tracing::info!(plugin = %plugin.label(), "activated");
                }
                // New topics need a new subscription: stop, then start.
                other => {
                    if let Some(r) = other {
                        r.stop_tx.send_replace(true);
                    }
                    if let Some(old) = running.remove(name) {
                        let _ = old.task.await;
                    }
                    let (plugin_tx, plugin_rx) = watch::channel(Arc::clone(&plugin));
                    let (stop_tx, stop_rx) = watch::channel(false);
                    let task =
                        tokio::spawn(pipeline::run(Arc::clone(&self.context), plugin_rx, stop_rx));
                    running.insert(
                        name.clone(),
                        Running {
                            version: record.version.clone(),
                            sources,
                            plugin_tx,
                            stop_tx,
                            task,
                        },
                    );
                    tracing::info!(plugin = %plugin.label(), "activated");
                }
            }
        }
        let stale: Vec<String> = running
            .keys()
            .filter(|name| !entries.iter().any(|e| &e.name == *name))
            .cloned()
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                r.stop_tx.send_replace(true);
                tracing::info!(plugin = %name, "pipeline stopped: plugin deleted");
            }
        }
    }
}
