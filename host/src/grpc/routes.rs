//! The `switchyard.v1.Routes` service: the gRPC face of
//! [`crate::route_admin`]. A route arrives as a typed message, becomes the
//! same JSON the REST API takes, and passes the same checks, so both
//! transports refuse the same routes with the same words.

use std::sync::Arc;

use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use super::proto;
use super::proto::routes_server::{Routes, RoutesServer};
use crate::App;
use crate::error::{ApiError, Code};
use crate::route_admin::{self, DryRunRequest, ExplainEvent, ExplainPosition, ExplainRequest};
use crate::routing::StoredRoute;
use crate::routing::preview::RouteVerdict;

/// See the module docs.
pub struct RoutesService {
    app: Arc<App>,
}

/// Builds the service.
pub fn routes_service(app: Arc<App>) -> RoutesServer<RoutesService> {
    let limit = app.config.http.max_body_bytes;
    RoutesServer::new(RoutesService { app }).max_decoding_message_size(limit)
}

fn invalid(field: &str, detail: String) -> ApiError {
    ApiError::new(Code::InvalidRoute, detail).with_field(field.to_string())
}

/// The route message as the JSON the REST API takes.
fn route_json(route: Option<proto::Route>) -> Result<Value, ApiError> {
    let route = route.ok_or_else(|| invalid("route", "give the route".to_string()))?;
    let mut value = json!({
        "id": route.id,
        "owner": route.owner,
        "description": route.description,
        "destinations": route.destinations,
        "enabled": route.enabled.unwrap_or(true),
    });
    if let Some(source) = route.source {
        let verbs = if source.verbs.is_empty() {
            vec!["*".to_string()]
        } else {
            source.verbs
        };
        value["source"] = json!({"nouns": source.nouns, "verbs": verbs});
    }
    if !route.filter_json.is_empty() {
        let filter: Value = serde_json::from_str(&route.filter_json)
            .map_err(|error| invalid("filter_json", format!("filter_json is not JSON: {error}")))?;
        value["filter"] = filter;
    }
    if let Some(plugin) = route.plugin {
        value["plugin"] = json!({"name": plugin.name, "config": plugin.config});
    }
    Ok(value)
}

fn route_message(app: &App, stored: &StoredRoute, created: bool) -> proto::StoredRoute {
    let route = &stored.route;
    let body = route_admin::route_body(app, stored);
    let counter = |name: &str| body["counters"][name].as_u64().unwrap_or_default();
    proto::StoredRoute {
        route: Some(proto::Route {
            id: route.id.clone(),
            owner: route.owner.clone(),
            description: route.description.clone(),
            source: Some(proto::RouteSource {
                nouns: route.source.nouns.clone(),
                verbs: route.source.verbs.clone(),
            }),
            filter_json: route
                .filter
                .as_ref()
                .map(|f| f.as_json().to_string())
                .unwrap_or_default(),
            plugin: route.plugin.as_ref().map(|p| proto::RoutePlugin {
                name: p.name.clone(),
                config: p.config.clone().into_iter().collect(),
            }),
            destinations: route.destinations.clone(),
            enabled: Some(route.enabled),
        }),
        revision: stored.revision,
        updated_at: stored.updated_at.clone(),
        counters: Some(proto::RouteCounters {
            matched: counter("matched"),
            forwarded: counter("forwarded"),
            dead_lettered: counter("dead_lettered"),
        }),
        created,
    }
}

fn verdict_message(verdict: RouteVerdict) -> proto::RouteVerdict {
    proto::RouteVerdict {
        route: verdict.route,
        decision: verdict.decision.to_string(),
        destinations: verdict.destinations,
        class: verdict.class.unwrap_or_default().to_string(),
        summary: verdict.reasons.summary,
        filter_json: verdict
            .reasons
            .filter
            .map(|f| json!(f).to_string())
            .unwrap_or_default(),
        plugin: verdict.reasons.plugin.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Routes for RoutesService {
    async fn set(
        &self,
        request: Request<proto::SetRouteRequest>,
    ) -> Result<Response<proto::StoredRoute>, Status> {
        let request = request.into_inner();
        let value = route_json(request.route)?;
        let id = value["id"].as_str().unwrap_or_default().to_string();
        let route = route_admin::parse_route(value)?;
        let (stored, created) =
            route_admin::set_route(&self.app, &id, route, request.if_revision).await?;
        Ok(Response::new(route_message(&self.app, &stored, created)))
    }

    async fn get(
        &self,
        request: Request<proto::RouteRef>,
    ) -> Result<Response<proto::StoredRoute>, Status> {
        let stored = self.app.routes.get(&request.into_inner().id)?;
        Ok(Response::new(route_message(&self.app, &stored, false)))
    }

    async fn list(
        &self,
        request: Request<proto::ListRoutesRequest>,
    ) -> Result<Response<proto::ListRoutesResponse>, Status> {
        let request = request.into_inner();
        let page = route_admin::list_page(
            &self.app,
            Some(request.owner.as_str()).filter(|o| !o.is_empty()),
            Some(request.limit as usize).filter(|l| *l > 0),
            Some(request.next.as_str()).filter(|n| !n.is_empty()),
        )?;
        Ok(Response::new(proto::ListRoutesResponse {
            routes: page
                .routes
                .iter()
                .map(|stored| route_message(&self.app, stored, false))
                .collect(),
            next: page.next.unwrap_or_default(),
        }))
    }

    async fn delete(
        &self,
        request: Request<proto::RouteRef>,
    ) -> Result<Response<proto::RouteDeleted>, Status> {
        let id = request.into_inner().id;
        self.app.routes.delete(&id).await?;
        tracing::info!(route = id, "route deleted");
        Ok(Response::new(proto::RouteDeleted { id }))
    }

    async fn explain(
        &self,
        request: Request<proto::ExplainRequest>,
    ) -> Result<Response<proto::ExplainResponse>, Status> {
        let request = match request.into_inner().target {
            Some(proto::explain_request::Target::Event(event)) => {
                let object = serde_json::from_str(&event.object_json).map_err(|error| {
                    ApiError::new(
                        Code::MalformedRequest,
                        format!("object_json is not JSON: {error}"),
                    )
                    .with_field("event.object_json")
                })?;
                ExplainRequest {
                    event: Some(ExplainEvent {
                        noun: event.noun,
                        verb: event.verb,
                        key: event.key,
                        object,
                        source: Some(event.source).filter(|s| !s.is_empty()),
                    }),
                    position: None,
                }
            }
            Some(proto::explain_request::Target::Position(position)) => ExplainRequest {
                event: None,
                position: Some(ExplainPosition {
                    topic: position.topic,
                    partition: position.partition,
                    offset: position.offset,
                }),
            },
            None => ExplainRequest {
                event: None,
                position: None,
            },
        };
        let explained = route_admin::explain(&self.app, request).await?;
        Ok(Response::new(proto::ExplainResponse {
            r#type: explained.event_type,
            key: explained.key,
            routes: explained.routes.into_iter().map(verdict_message).collect(),
        }))
    }

    async fn dry_run(
        &self,
        request: Request<proto::DryRunRequest>,
    ) -> Result<Response<proto::DryRunResponse>, Status> {
        let request = request.into_inner();
        let route = route_json(request.route)?;
        let limit = if request.limit == 0 {
            100
        } else {
            request.limit as usize
        };
        let result = route_admin::dry_run(&self.app, DryRunRequest { route, limit }).await?;
        Ok(Response::new(proto::DryRunResponse {
            topics: result.topics,
            read: result.read as u64,
            forwarded: result.forwarded as u64,
            skipped: result.skipped as u64,
            dead_lettered: result.dead_lettered as u64,
            destinations: result
                .destinations
                .into_iter()
                .map(|(topic, count)| (topic, count as u64))
                .collect(),
            events: result
                .events
                .into_iter()
                .map(|event| proto::DryRunEvent {
                    id: event.id,
                    r#type: event.event_type,
                    key: event.key,
                    position: event.position,
                    verdict: Some(verdict_message(event.verdict)),
                })
                .collect(),
        }))
    }
}
