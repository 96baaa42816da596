//! The `switchyard plugin` commands that talk to a running host's admin API.
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
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("http client builds");
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
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            eprintln!("switchyard: cannot reach the host at `{server}`: {error}");
            return ExitCode::from(4);
        }
    };
    if matches!(action, Action::Push { .. })
        && output == Output::Text
        && std::io::stderr().is_terminal()
    {
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
        Output::Text => print_text(&action, &body),
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
