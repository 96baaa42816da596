//! The `switchyard plugin` and `switchyard route` commands that talk to a
//! running host's API.
//!
//! Exit codes scripts can trust: 0 success; 1 the host refused (the problem
//! is printed); 2 bad usage or unreadable local files; 4 the host could not
//! be reached.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

/// Output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Lines for people.
    Text,
    /// The API's JSON, for scripts.
    Json,
}

/// A plugin admin action.
#[derive(Debug)]
pub enum Action<'a> {
    /// Upload a component and its manifest.
    Push {
        /// The component.
        wasm: &'a Path,
        /// Its manifest.
        manifest: &'a Path,
        /// Activate right away.
        activate: bool,
    },
    /// List plugins.
    List,
    /// Show one plugin.
    Show(&'a str),
    /// Activate a version.
    Activate(&'a str, &'a str),
    /// Roll back to the previous version.
    Rollback(&'a str),
    /// Pause, with an optional reason.
    Pause(&'a str, Option<&'a str>),
    /// Resume.
    Resume(&'a str),
    /// Delete with all versions.
    Delete(&'a str),
}

/// Runs an action against `server` (`http://host:port`).
pub async fn run(server: &str, action: Action<'_>, output: Output) -> ExitCode {
    let server = server.trim_end_matches('/');
    let client = client();
    let base = format!("{server}/v1/admin/plugins");
    let request = match &action {
        Action::Push {
            wasm,
            manifest,
            activate,
        } => {
            let manifest_text = match std::fs::read_to_string(manifest) {
                Ok(text) => text,
                Err(error) => {
                    return usage(&format!(
                        "cannot read manifest `{}`: {error}",
                        manifest.display()
                    ));
                }
            };
            let component = match std::fs::read(wasm) {
                Ok(bytes) => bytes,
                Err(error) => {
                    return usage(&format!(
                        "cannot read component `{}`: {error}",
                        wasm.display()
                    ));
                }
            };
            let total = component.len() as u64;
            let show = output == Output::Text && std::io::stderr().is_terminal();
            let mut sent = 0_u64;
            let chunks: Vec<Vec<u8>> = component.chunks(256 * 1024).map(<[u8]>::to_vec).collect();
            let stream = futures::stream::iter(chunks).map(move |chunk| {
                sent += chunk.len() as u64;
                if show {
                    eprint!(
                        "\ruploading component: {:>3}% of {} KiB",
                        sent * 100 / total.max(1),
                        total / 1024
                    );
                }
                Ok::<_, std::io::Error>(chunk)
            });
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::wrap_stream(stream),
                total,
            )
            .file_name("component.wasm")
            .mime_str("application/wasm")
            .expect("valid mime");
            let form = reqwest::multipart::Form::new()
                .text("manifest", manifest_text)
                .part("component", part);
            client
                .post(format!("{base}?activate={activate}"))
                .multipart(form)
        }
        Action::List => client.get(&base),
        Action::Show(name) => client.get(format!("{base}/{name}")),
        Action::Activate(name, version) => client
            .post(format!("{base}/{name}/activate"))
            .json(&serde_json::json!({"version": version})),
        Action::Rollback(name) => client.post(format!("{base}/{name}/rollback")),
        Action::Pause(name, reason) => {
            let body = reason.map_or_else(
                || serde_json::json!({}),
                |r| serde_json::json!({"reason": r}),
            );
            client.post(format!("{base}/{name}/pause")).json(&body)
        }
        Action::Resume(name) => client.post(format!("{base}/{name}/resume")),
        Action::Delete(name) => client.delete(format!("{base}/{name}")),
    };
    let uploading = matches!(action, Action::Push { .. });
    execute(server, request, output, uploading, |body| {
        print_text(&action, body);
    })
    .await
}

/// Sends a request and reports the answer: the body as JSON for scripts,
/// `print` for people, the problem on stderr with exit code 1 when the host
/// refused, exit code 4 when it could not be reached.
async fn execute(
    server: &str,
    request: reqwest::RequestBuilder,
    output: Output,
    uploading: bool,
    print: impl FnOnce(&Value),
) -> ExitCode {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            eprintln!("switchyard: cannot reach the host at `{server}`: {error}");
            return ExitCode::from(4);
        }
    };
    if uploading && output == Output::Text && std::io::stderr().is_terminal() {
        eprintln!();
    }
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        match output {
            Output::Json => println!("{body}"),
            Output::Text => eprintln!(
                "switchyard: {} ({}): {}",
                body["code"].as_str().unwrap_or("error"),
                status.as_u16(),
                body["detail"].as_str().unwrap_or("the host gave no reason")
            ),
        }
        return ExitCode::from(1);
    }
    match output {
        Output::Json => println!("{body}"),
        Output::Text => print(&body),
    }
    ExitCode::SUCCESS
}

fn usage(message: &str) -> ExitCode {
    eprintln!("switchyard: {message}");
    ExitCode::from(2)
}

fn print_text(action: &Action<'_>, body: &Value) {
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_string(), str::to_string);
    match action {
        Action::Push { .. } => println!(
            "uploaded {}@{} ({} bytes, sha256 {}); active version: {}",
            text(&body["name"]),
            text(&body["version"]),
            body["size"],
            text(&body["sha256"]),
            text(&body["active_version"])
        ),
        Action::List => {
            println!(
                "{:<32} {:<12} {:<10} {:<12} VERSIONS",
                "NAME", "KIND", "STATUS", "ACTIVE"
            );
            for plugin in body["plugins"].as_array().into_iter().flatten() {
                println!(
                    "{:<32} {:<12} {:<10} {:<12} {}",
                    text(&plugin["name"]),
                    text(&plugin["kind"]),
                    text(&plugin["status"]),
                    text(&plugin["active_version"]),
                    plugin["versions"].as_array().map_or(0, Vec::len)
                );
            }
        }
        Action::Delete(name) => println!("deleted {name}"),
        _ => println!("{}", serde_json::to_string_pretty(body).unwrap_or_default()),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("http client builds")
}

/// A route action.
#[derive(Debug)]
pub enum RouteAction<'a> {
    /// Create or replace a route from a JSON or TOML file.
    Set {
        /// The route file.
        file: &'a Path,
        /// Route id, when the file does not hold one.
        id: Option<&'a str>,
        /// Only if the stored route is at this revision (0: does not exist).
        if_revision: Option<i64>,
    },
    /// List routes, optionally of one owner, from a page cursor.
    List {
        /// Only this team's routes.
        owner: Option<&'a str>,
        /// Cursor of the page to show.
        next: Option<&'a str>,
    },
    /// Show one route.
    Show(&'a str),
    /// Delete one route.
    Delete(&'a str),
    /// Explain an event from a file (`{noun, verb, key, object}`) or the
    /// record at `topic:partition:offset`.
    Explain {
        /// Event file.
        event: Option<&'a Path>,
        /// Record position.
        position: Option<&'a str>,
    },
    /// Evaluate a proposed route against recent events.
    DryRun {
        /// The route file.
        file: &'a Path,
        /// How many recent events.
        limit: usize,
    },
}

/// The URL of one route, the id encoded as one path segment (an id such as
/// `../x` must not name another endpoint).
fn route_url(base: &str, id: &str) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.push(id);
            }
            url.to_string()
        }
        Err(_) => format!("{base}/{id}"),
    }
}

/// Reads a JSON or (by extension) TOML file into JSON.
fn read_document(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str::<Value>(&text)
            .map_err(|error| format!("`{}` is not valid TOML: {error}", path.display()))
    } else {
        serde_json::from_str(&text)
            .map_err(|error| format!("`{}` is not valid JSON: {error}", path.display()))
    }
}

/// Runs a route action against `server`.
pub async fn run_route(server: &str, action: RouteAction<'_>, output: Output) -> ExitCode {
    let server = server.trim_end_matches('/');
    let client = client();
    let base = format!("{server}/v1/routes");
    let request = match &action {
        RouteAction::Set {
            file,
            id,
            if_revision,
        } => {
            let route = match read_document(file) {
                Ok(route) => route,
                Err(message) => return usage(&message),
            };
            let Some(id) = id
                .map(str::to_string)
                .or_else(|| route["id"].as_str().map(str::to_string))
            else {
                return usage("the route file has no `id`; add one or pass --id");
            };
            let mut request = client.put(route_url(&base, &id)).json(&route);
            if let Some(revision) = if_revision {
                request = request.header("If-Match", format!("\"{revision}\""));
            }
            request
        }
        RouteAction::List { owner, next } => {
            let mut request = client.get(&base);
            if let Some(owner) = owner {
                request = request.query(&[("owner", owner)]);
            }
            if let Some(next) = next {
                request = request.query(&[("next", next)]);
            }
            request
        }
        RouteAction::Show(id) => client.get(route_url(&base, id)),
        RouteAction::Delete(id) => client.delete(route_url(&base, id)),
        RouteAction::Explain { event, position } => {
            let body = match (event, position) {
                (Some(file), None) => match read_document(file) {
                    Ok(event) => serde_json::json!({"event": event}),
                    Err(message) => return usage(&message),
                },
                (None, Some(text)) => {
                    let parts: Vec<&str> = text.rsplitn(3, ':').collect();
                    let parsed = match parts.as_slice() {
                        [offset, partition, topic] => offset
                            .parse::<i64>()
                            .ok()
                            .zip(partition.parse::<i32>().ok())
                            .map(|(o, p)| (topic.to_string(), p, o)),
                        _ => None,
                    };
                    let Some((topic, partition, offset)) = parsed else {
                        return usage(
                            "--position must be `topic:partition:offset`, such as `claim:0:42`",
                        );
                    };
                    serde_json::json!({"position": {"topic": topic, "partition": partition, "offset": offset}})
                }
                _ => return usage("give --event FILE or --position topic:partition:offset"),
            };
            client
                .post(format!("{server}/v1/routes:explain"))
                .json(&body)
        }
        RouteAction::DryRun { file, limit } => {
            let route = match read_document(file) {
                Ok(route) => route,
                Err(message) => return usage(&message),
            };
            client
                .post(format!("{server}/v1/routes:dry-run"))
                .json(&serde_json::json!({"route": route, "limit": limit}))
        }
    };
    execute(server, request, output, false, |body| {
        print_route_text(&action, body);
    })
    .await
}

fn print_route_text(action: &RouteAction<'_>, body: &Value) {
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_string(), str::to_string);
    let list = |v: &Value| {
        v.as_array()
            .map(|items| items.iter().map(text).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    match action {
        RouteAction::Set { .. } => println!(
            "route {} set (revision {}); live on every instance within seconds",
            text(&body["id"]),
            body["revision"]
        ),
        RouteAction::List { .. } => {
            println!(
                "{:<32} {:<20} {:<8} {:<32} DESTINATIONS",
                "ID", "OWNER", "ENABLED", "SOURCE"
            );
            for route in body["routes"].as_array().into_iter().flatten() {
                let source = format!(
                    "{}.{}",
                    list(&route["source"]["nouns"]),
                    list(&route["source"]["verbs"])
                );
                println!(
                    "{:<32} {:<20} {:<8} {:<32} {}",
                    text(&route["id"]),
                    text(&route["owner"]),
                    route["enabled"],
                    source,
                    list(&route["destinations"])
                );
            }
            if let Some(next) = body["next"].as_str() {
                println!("(more: switchyard route list --next {next})");
            }
        }
        RouteAction::Delete(id) => println!("deleted route {id}"),
        RouteAction::Explain { .. } => {
            println!("{} {}", text(&body["type"]), text(&body["key"]));
            for verdict in body["routes"].as_array().into_iter().flatten() {
                let destinations = list(&verdict["destinations"]);
                println!(
                    "  {:<12} {:<32} {}{}",
                    text(&verdict["decision"]),
                    text(&verdict["route"]),
                    text(&verdict["reasons"]["summary"]),
                    if destinations.is_empty() {
                        String::new()
                    } else {
                        format!(" -> {destinations}")
                    }
                );
                for check in verdict["reasons"]["filter"]["checks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    println!(
                        "      {} {}: {}",
                        if check["matched"].as_bool() == Some(true) {
                            "+"
                        } else {
                            "-"
                        },
                        text(&check["path"]),
                        text(&check["reason"])
                    );
                }
            }
        }
        RouteAction::DryRun { .. } => {
            println!(
                "read {} events from {}: {} forwarded, {} skipped, {} dead-lettered",
                body["read"],
                list(&body["topics"]),
                body["forwarded"],
                body["skipped"],
                body["dead_lettered"]
            );
            if let Some(destinations) = body["destinations"].as_object() {
                for (topic, count) in destinations {
                    println!("  {count:>6} -> {topic}");
                }
            }
        }
        RouteAction::Show(_) => {
            println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
        }
    }
}
