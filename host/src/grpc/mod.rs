//! The gRPC API (tonic), with server reflection and the standard health
//! service so `grpcurl` works without the proto files.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::App;
use crate::error::{ApiError, Code, Stored};
use crate::publish::{EventInput, Published};
use crate::subscribe::{self, Delivery, Position, Start, Subscription};

/// Generated protobuf and service code.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("switchyard.v1");

    /// Encoded file descriptors, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("switchyard_descriptor");
}

mod routes;
pub use routes::{RoutesService, routes_service};

use proto::events_server::{Events, EventsServer};

/// The `switchyard.v1.Events` service.
pub struct EventsService {
    app: Arc<App>,
}

/// Builds the service.
pub fn events_service(app: Arc<App>) -> EventsServer<EventsService> {
    let limit = app.config.http.max_body_bytes;
    EventsServer::new(EventsService { app }).max_decoding_message_size(limit.saturating_mul(2))
}

fn input(
    event: proto::EventInput,
    trace: &[(String, Option<Vec<u8>>)],
) -> Result<EventInput, ApiError> {
    let object = serde_json::from_str(&event.object_json).map_err(|error| {
        ApiError::new(
            Code::MalformedRequest,
            format!("`object_json` is not valid JSON: {error}"),
        )
        .with_field("object_json")
        .with_stored(Stored::No)
    })?;
    let time = if event.time.is_empty() {
        None
    } else {
        let parsed = chrono::DateTime::parse_from_rfc3339(&event.time).map_err(|error| {
            ApiError::new(
                Code::MalformedRequest,
                format!("`time` is not RFC 3339: {error}"),
            )
            .with_field("time")
            .with_stored(Stored::No)
        })?;
        Some(parsed.with_timezone(&chrono::Utc))
    };
    Ok(EventInput {
        noun: event.noun,
        verb: event.verb,
        key: event.key,
        object,
        id: Some(event.id).filter(|id| !id.is_empty()),
        source: Some(event.source).filter(|source| !source.is_empty()),
        time,
        extensions: trace.to_vec(),
        idempotency_key: None,
    })
}

fn result(published: Published) -> proto::PublishResult {
    proto::PublishResult {
        id: published.id,
        topic: published.topic,
        partition: published.partition,
        offset: published.offset,
        schema_id: published.schema_id,
        duplicate: published.duplicate,
    }
}

/// The W3C trace headers of a call, validated (malformed ones are dropped).
fn trace<T>(request: &Request<T>) -> Vec<(String, Option<Vec<u8>>)> {
    let text = |name: &str| request.metadata().get(name).and_then(|v| v.to_str().ok());
    crate::trace_context::carried(text("traceparent"), text("tracestate"), text("baggage"))
}

type DeliveryStream = Pin<Box<dyn Stream<Item = Result<proto::Delivery, Status>> + Send>>;

#[tonic::async_trait]
impl Events for EventsService {
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResult>, Status> {
        let trace = trace(&request);
        let idempotency_key = request
            .metadata()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string());
        let event = request.into_inner().event.ok_or_else(|| {
            ApiError::new(Code::MalformedRequest, "`event` is missing").with_field("event")
        })?;
        let mut event = input(event, &trace)?;
        event.idempotency_key = idempotency_key;
        let published = self.app.publisher.publish(event).await?;
        Ok(Response::new(result(published)))
    }

    async fn publish_batch(
        &self,
        request: Request<proto::PublishBatchRequest>,
    ) -> Result<Response<proto::PublishBatchResponse>, Status> {
        let trace = trace(&request);
        let events = request.into_inner().events;
        if events.is_empty() {
            return Err(ApiError::new(Code::MalformedRequest, "batch has no events")
                .with_field("events")
                .into());
        }
        let limit = self.app.config.http.max_batch_events;
        if events.len() > limit {
            return Err(ApiError::new(
                Code::BatchTooLarge,
                format!(
                    "batch has {} events, more than the limit of {limit}; split it",
                    events.len()
                ),
            )
            .into());
        }
        let parsed: Vec<Result<EventInput, ApiError>> = events
            .into_iter()
            .map(|event| input(event, &trace))
            .collect();
        let valid: Vec<EventInput> = parsed
            .iter()
            .filter_map(|e| e.as_ref().ok().cloned())
            .collect();
        let mut outcomes = self.app.publisher.publish_batch(valid).await.into_iter();
        let mut failed = 0;
        let results = parsed
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let outcome = match entry {
                    Ok(_) => outcomes.next().expect("one outcome per valid entry"),
                    Err(error) => Err(error),
                };
                let outcome = match outcome {
                    Ok(published) => proto::batch_result::Outcome::Ok(result(published)),
                    Err(error) => {
                        failed += 1;
                        proto::batch_result::Outcome::Error(proto::Problem {
                            code: error.code.as_str().to_string(),
                            detail: error.detail,
                            field: error.field.map_or_else(
                                || format!("events[{index}]"),
                                |field| format!("events[{index}].{field}"),
                            ),
                            stored: match error.stored {
                                Some(Stored::No) => "no".to_string(),
                                Some(Stored::Maybe) => "maybe".to_string(),
                                None => String::new(),
                            },
                        })
                    }
                };
                proto::BatchResult {
                    outcome: Some(outcome),
                }
            })
            .collect();
        Ok(Response::new(proto::PublishBatchResponse {
            failed,
            results,
        }))
    }

    type SubscribeStream = DeliveryStream;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        let topic = match request.target {
            Some(proto::subscribe_request::Target::Noun(noun)) => {
                let noun = crate::nvo::Noun::parse(&noun)?;
                if !self.app.catalog.has_noun(noun.as_str()) {
                    return Err(ApiError::new(
                        Code::UnknownNoun,
                        format!("no schema is registered for noun `{noun}`"),
                    )
                    .with_field("noun")
                    .into());
                }
                noun.as_str().to_string()
            }
            Some(proto::subscribe_request::Target::Topic(topic)) => {
                crate::nvo::check_topic(&topic)?;
                topic
            }
            None => {
                return Err(ApiError::new(
                    Code::MalformedRequest,
                    "give `noun` or `topic` to subscribe to",
                )
                .into());
            }
        };
        let start = match request.start {
            None | Some(proto::subscribe_request::Start::Latest(_)) => Start::Latest,
            Some(proto::subscribe_request::Start::Earliest(_)) => Start::Earliest,
            Some(proto::subscribe_request::Start::After(position)) => {
                if position.trim().is_empty() {
                    return Err(ApiError::new(
                        Code::InvalidPosition,
                        "`after` is empty; give a `position` from the stream, or use `latest` or `earliest`",
                    )
                    .with_field("after")
                    .into());
                }
                Start::After(Position::parse(&position)?)
            }
        };
        for verb in &request.verbs {
            crate::nvo::Verb::parse(verb)?;
        }
        let subscription = Subscription {
            topic,
            verbs: request.verbs,
            key: Some(request.key).filter(|key| !key.is_empty()),
            start,
            api: "grpc",
        };
        let deliveries = subscribe::open(
            Arc::clone(&self.app.kafka),
            Arc::clone(&self.app.registry),
            subscription,
            self.app.shutdown_tx.subscribe(),
        )
        .await?;
        let stream = deliveries.map(|delivery| Ok(to_proto(delivery)));
        Ok(Response::new(Box::pin(stream)))
    }
}

fn to_proto(delivery: Delivery) -> proto::Delivery {
    use proto::delivery::Kind;
    match delivery {
        Delivery::Subscribed { position } => proto::Delivery {
            position: position.to_string(),
            kind: Some(Kind::Subscribed(proto::Subscribed {})),
        },
        Delivery::Reset { position, reason } => proto::Delivery {
            position: position.to_string(),
            kind: Some(Kind::Reset(proto::Reset { reason })),
        },
        Delivery::Event { position, event } => proto::Delivery {
            position: position.to_string(),
            kind: Some(Kind::Event(proto::Event {
                id: event.id,
                r#type: event.event_type,
                noun: event.noun,
                verb: event.verb,
                key: event.key,
                time: event.time,
                source: event.source,
                schema_id: event.schema_id,
                topic: event.topic,
                partition: event.partition,
                offset: event.offset,
                object_json: event.object.to_string(),
                extensions: event
                    .extensions
                    .into_iter()
                    .map(|(name, value)| (name, value.as_str().unwrap_or_default().to_string()))
                    .collect(),
            })),
        },
        Delivery::Undecodable { position, record } => proto::Delivery {
            position: position.to_string(),
            kind: Some(Kind::Undecodable(proto::Undecodable {
                partition: record.partition,
                offset: record.offset,
                reason: record.reason,
            })),
        },
    }
}

use proto::plugins_server::{Plugins, PluginsServer};

/// The `switchyard.v1.Plugins` admin service: the gRPC face of
/// [`crate::admin`].
pub struct PluginsService {
    app: Arc<App>,
}

/// Builds the admin service; messages may be large (components are
/// streamed in chunks, each within the limit).
pub fn plugins_service(app: Arc<App>) -> PluginsServer<PluginsService> {
    PluginsServer::new(PluginsService { app }).max_decoding_message_size(8 * 1024 * 1024)
}

fn plugin_summary(entry: &crate::plugin::store::PluginEntry) -> proto::PluginSummary {
    let value = crate::admin::summary(entry);
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
    proto::PluginSummary {
        name: text("name"),
        active_version: text("active_version"),
        status: text("status"),
        paused_reason: text("paused_reason"),
        kind: text("kind"),
        versions: entry.versions.keys().cloned().collect(),
    }
}

/// The reply of every call that changes a plugin's state.
fn summary_response(
    result: Result<crate::plugin::store::PluginEntry, crate::plugin::store::StoreError>,
) -> Result<Response<proto::PluginSummary>, Status> {
    let entry = result.map_err(ApiError::from)?;
    Ok(Response::new(plugin_summary(&entry)))
}

#[tonic::async_trait]
impl Plugins for PluginsService {
    async fn push(
        &self,
        request: Request<tonic::Streaming<proto::PushChunk>>,
    ) -> Result<Response<proto::Uploaded>, Status> {
        let mut stream = request.into_inner();
        let mut manifest = None;
        let mut activate = false;
        let mut component = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if manifest.is_none() {
                manifest = Some(chunk.manifest);
                activate = chunk.activate;
            }
            if component.len() + chunk.component.len() > crate::plugin::store::MAX_COMPONENT_BYTES {
                return Err(ApiError::new(
                    Code::PayloadTooLarge,
                    format!(
                        "the component is larger than the {} bytes allowed",
                        crate::plugin::store::MAX_COMPONENT_BYTES
                    ),
                )
                .into());
            }
            component.extend_from_slice(&chunk.component);
        }
        let manifest = manifest.filter(|m| !m.is_empty()).ok_or_else(|| {
            ApiError::new(
                Code::MalformedRequest,
                "the first message must carry the manifest",
            )
            .with_field("manifest")
        })?;
        let uploaded =
            crate::admin::upload_component(&self.app, &manifest, &component, activate).await?;
        Ok(Response::new(proto::Uploaded {
            name: uploaded.name,
            version: uploaded.version,
            sha256: uploaded.sha256,
            size: uploaded.size as u64,
            kind: uploaded.kind.to_string(),
            active_version: uploaded.active_version.unwrap_or_default(),
        }))
    }

    async fn list(
        &self,
        _request: Request<proto::ListPluginsRequest>,
    ) -> Result<Response<proto::ListPluginsResponse>, Status> {
        let plugins = self.app.store.list().iter().map(plugin_summary).collect();
        Ok(Response::new(proto::ListPluginsResponse { plugins }))
    }

    async fn get(
        &self,
        request: Request<proto::PluginRef>,
    ) -> Result<Response<proto::PluginDetails>, Status> {
        let name = request.into_inner().name;
        let entry = self.app.store.get(&name).map_err(ApiError::from)?;
        let running = match self.app.supervisor.running(&name).await {
            Some(plugin) => crate::admin::running_stats(&plugin).to_string(),
            None => String::new(),
        };
        Ok(Response::new(proto::PluginDetails {
            summary: Some(plugin_summary(&entry)),
            history: entry.state.history.clone(),
            versions: entry
                .versions
                .values()
                .map(|v| proto::VersionDetails {
                    version: v.version.clone(),
                    sha256: v.sha256.clone(),
                    size: v.size as u64,
                    uploaded_at: v.uploaded_at.clone(),
                })
                .collect(),
            running_json: running,
        }))
    }

    async fn activate(
        &self,
        request: Request<proto::ActivateRequest>,
    ) -> Result<Response<proto::PluginSummary>, Status> {
        let request = request.into_inner();
        summary_response(
            self.app
                .store
                .activate(&request.name, &request.version)
                .await,
        )
    }

    async fn rollback(
        &self,
        request: Request<proto::PluginRef>,
    ) -> Result<Response<proto::PluginSummary>, Status> {
        summary_response(self.app.store.rollback(&request.into_inner().name).await)
    }

    async fn pause(
        &self,
        request: Request<proto::PauseRequest>,
    ) -> Result<Response<proto::PluginSummary>, Status> {
        let request = request.into_inner();
        let reason = Some(request.reason)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| crate::plugin::store::DEFAULT_PAUSE_REASON.to_string());
        summary_response(self.app.store.set_paused(&request.name, Some(reason)).await)
    }

    async fn resume(
        &self,
        request: Request<proto::PluginRef>,
    ) -> Result<Response<proto::PluginSummary>, Status> {
        summary_response(
            self.app
                .store
                .set_paused(&request.into_inner().name, None)
                .await,
        )
    }

    async fn delete(
        &self,
        request: Request<proto::PluginRef>,
    ) -> Result<Response<proto::Deleted>, Status> {
        self.app
            .store
            .delete(&request.into_inner().name)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(proto::Deleted {}))
    }

    async fn skip(
        &self,
        request: Request<proto::SkipRequest>,
    ) -> Result<Response<proto::PluginSummary>, Status> {
        let request = request.into_inner();
        let position = crate::plugin::store::RecordPosition {
            topic: request.topic,
            partition: request.partition,
            offset: request.offset,
        };
        summary_response(self.app.store.skip(&request.name, position).await)
    }
}
