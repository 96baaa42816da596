//! External mode: every registry call goes to another Confluent-compatible
//! registry over its REST API, with the configured headers (credentials).
//!
//! Schemas by id never change, so they are cached for good; the latest
//! version of a subject (what the publish path asks on every event) is
//! reused for a configured time. Decoding asks for ids from synchronous
//! code (Kafka loops on threads of their own, and inside async tasks), so
//! the HTTP client runs on a small runtime of its own thread, and both
//! kinds of caller wait on it the same way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Value, json};

use super::{RegisteredSchema, RegistryError, SubjectVersion};
use crate::avro::Schema;

/// Longest wait for one call to the external registry.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The client of an external registry.
pub struct External {
    base: String,
    headers: HeaderMap,
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
    by_id: RwLock<HashMap<u32, Arc<RegisteredSchema>>>,
    latest: Mutex<HashMap<String, (Instant, SubjectVersion)>>,
    ttl: Duration,
}

/// A response from the external registry, passed on as it came.
pub struct Forwarded {
    /// HTTP status.
    pub status: u16,
    /// Content type, if any.
    pub content_type: Option<String>,
    /// Body.
    pub body: bytes::Bytes,
}

impl External {
    /// A client for `url` (no trailing slash needed) sending `headers`.
    pub fn new(
        url: &str,
        headers: &BTreeMap<String, String>,
        ttl: Duration,
    ) -> anyhow::Result<External> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                HeaderName::from_bytes(name.as_bytes())
                    .with_context(|| format!("`{name}` is not a header name"))?,
                HeaderValue::from_str(value)
                    .with_context(|| format!("the value of header `{name}` is not valid"))?,
            );
        }
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("registry-client".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the registry client runtime starts");
                let _ = handle_tx.send(runtime.handle().clone());
                // Lives as long as the process: callers hold its handle.
                runtime.block_on(std::future::pending::<()>());
            })
            .context("cannot start the registry client thread")?;
        let handle = handle_rx
            .recv()
            .context("the registry client thread did not start")?;
        Ok(External {
            base: url.trim_end_matches('/').to_string(),
            headers: map,
            client: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .build()
                .context("cannot build the registry client")?,
            handle,
            by_id: RwLock::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            ttl,
        })
    }

    /// Sends one request on the client's own runtime and returns the
    /// response as it came.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: bytes::Bytes,
    ) -> Result<Forwarded, RegistryError> {
        let mut request = self
            .client
            .request(method, format!("{}{path_and_query}", self.base))
            .headers(self.headers.clone())
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let base = self.base.clone();
        let call = async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(Forwarded {
                status,
                content_type,
                body,
            })
        };
        self.handle
            .spawn(call)
            .await
            .map_err(|error| {
                RegistryError::Forward(format!("the call to `{base}` stopped: {error}"))
            })?
            .map_err(|error| RegistryError::Forward(format!("cannot reach `{base}`: {error}")))
    }

    /// A JSON call; an error answer becomes a [`RegistryError::Remote`]
    /// with the external registry's own code and message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RegistryError> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let answer = self
            .forward(
                method,
                path,
                Some(super::rest::CONTENT_TYPE),
                bytes::Bytes::from(body),
            )
            .await?;
        let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if (200..300).contains(&answer.status) {
            return Ok(value);
        }
        Err(RegistryError::Remote {
            status: answer.status,
            code: value["error_code"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(u32::from(answer.status)),
            message: value["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {}", answer.status), str::to_string),
        })
    }

    /// [`External::call`] for synchronous callers: waits on the client's
    /// runtime from any thread.
    fn call_blocking(&self, path: &str) -> Result<Value, RegistryError> {
        let (tx, rx) = std::sync::mpsc::channel();
        // The future borrows nothing: the client and headers are cloned in.
        let this = ExternalCall {
            client: self.client.clone(),
            headers: self.headers.clone(),
            url: format!("{}{path}", self.base),
        };
        self.handle.spawn(async move {
            let _ = tx.send(this.get().await);
        });
        rx.recv_timeout(CALL_TIMEOUT + Duration::from_secs(1))
            .map_err(|_| RegistryError::Forward(format!("no answer from `{}`", self.base)))?
    }

    fn schema(id: u32, text: &str) -> Result<Arc<RegisteredSchema>, RegistryError> {
        let schema = Schema::parse_str(text).map_err(|error| {
            RegistryError::Forward(format!(
                "schema {id} of the external registry cannot be read: {error}"
            ))
        })?;
        Ok(Arc::new(RegisteredSchema {
            id,
            text: text.to_string(),
            identity: schema.identity_form(),
            schema,
        }))
    }

    fn remember(&self, id: u32, text: &str) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(known) = self.by_id.read().expect("id cache lock").get(&id) {
            return Ok(Arc::clone(known));
        }
        let schema = Self::schema(id, text)?;
        self.by_id
            .write()
            .expect("id cache lock")
            .insert(id, Arc::clone(&schema));
        Ok(schema)
    }

    fn version_of(&self, answer: &Value) -> Result<SubjectVersion, RegistryError> {
        let field = |name: &str| {
            answer[name]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    RegistryError::Forward(format!(
                        "the external registry answered without `{name}`: {answer}"
                    ))
                })
        };
        let id = field("id")?;
        let version = field("version")?;
        let text = answer["schema"].as_str().unwrap_or_default();
        Ok(SubjectVersion {
            subject: answer["subject"].as_str().unwrap_or_default().to_string(),
            version,
            schema: self.remember(id, text)?,
            deleted: false,
        })
    }

    /// Registers (or finds) a schema under a subject.
    pub async fn register(
        &self,
        subject: &str,
        text: &str,
    ) -> Result<SubjectVersion, RegistryError> {
        let path = format!("/subjects/{}", encode(subject));
        let body = json!({"schema": text});
        self.call(Method::POST, &format!("{path}/versions"), Some(&body))
            .await?;
        // The registration answers only the id; the lookup gives the version.
        let found = self.call(Method::POST, &path, Some(&body)).await?;
        self.version_of(&found)
    }

    /// A schema by id: cached, or asked for once.
    pub fn by_id(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        if let Some(known) = self.by_id.read().expect("id cache lock").get(&id) {
            return Some(Arc::clone(known));
        }
        match self.call_blocking(&format!("/schemas/ids/{id}")) {
            Ok(answer) => self
                .remember(id, answer["schema"].as_str().unwrap_or_default())
                .map_err(|error| tracing::warn!(id, %error, "external schema unreadable"))
                .ok(),
            Err(error) => {
                tracing::warn!(id, %error, "cannot fetch a schema from the external registry");
                None
            }
        }
    }

    /// One version of a subject; `latest` is reused for the configured time.
    pub fn version(&self, subject: &str, version: &str) -> Result<SubjectVersion, RegistryError> {
        let latest = version == "latest" || version == "-1";
        if latest
            && let Some((at, found)) = self.latest.lock().expect("latest cache lock").get(subject)
            && at.elapsed() < self.ttl
        {
            return Ok(found.clone());
        }
        let answer = self.call_blocking(&format!(
            "/subjects/{}/versions/{}",
            encode(subject),
            encode(version)
        ))?;
        let found = self.version_of(&answer)?;
        if latest {
            self.latest
                .lock()
                .expect("latest cache lock")
                .insert(subject.to_string(), (Instant::now(), found.clone()));
        }
        Ok(found)
    }
}

/// What a blocking GET needs, owned, so it can run on the client's runtime.
struct ExternalCall {
    client: reqwest::Client,
    headers: HeaderMap,
    url: String,
}

impl ExternalCall {
    async fn get(self) -> Result<Value, RegistryError> {
        let response = self
            .client
            .get(&self.url)
            .headers(self.headers)
            .send()
            .await
            .map_err(|error| {
                RegistryError::Forward(format!("cannot reach `{}`: {error}", self.url))
            })?;
        let status = response.status().as_u16();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        Err(RegistryError::Remote {
            status,
            code: value["error_code"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(u32::from(status)),
            message: value["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), str::to_string),
        })
    }
}

/// Percent-encodes a path segment (subjects may hold any character).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
