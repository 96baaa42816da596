//! Logs and traces.
//!
//! Logs are `tracing` events, as text for people or JSON for log pipelines,
//! on stderr. Every event logged inside a traced span carries the span
//! list, and the spans that start or continue a trace record its
//! `trace_id`, so a log line can be looked up in Jaeger.
//!
//! Traces are `tracing` spans turned into OpenTelemetry spans and exported
//! over OTLP/gRPC. The host's spans follow events, so they are at debug
//! level like per-event log lines: without export they cost next to
//! nothing unless debug logging is on. When exporting, the host's own spans
//! (target `switchyard…`) are recorded whatever the log level; a log line
//! that passes the log filter inside one of them is recorded as an event of
//! that span too.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// What [`init`] set up; [`Telemetry::shutdown`] sends the spans still
/// buffered.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the exporter. Blocking; call it
    /// after the host stopped, inside the async runtime's context.
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "the span exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber: logs by `log`, and span export by
/// `telemetry`. `RUST_LOG` wins over the configured log filter. Must run
/// inside a Tokio runtime's context when spans are exported (the gRPC
/// channel of the exporter lives there). A second call keeps the first
/// subscriber and exports nothing.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) -> Telemetry {
    let provider = match tracer_provider(telemetry) {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("switchyard: traces are not exported: {error:#}");
            None
        }
    };
    // One global filter, no per-layer filters: with tracing-subscriber 0.3,
    // per-layer filters lost the first spans of a callsite under
    // concurrency (a publish whose trace never reached Jaeger) and some
    // events their directives allow. With export, the filter also lets the
    // host's own spans through whatever the log level; log lines that pass
    // it become events of the span they are in.
    let installed = match &provider {
        Some(provider) => tracing_subscriber::registry()
            .with(Selection {
                logs: log_filter(log),
                host_spans: true,
            })
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("switchyard")))
            .with(fmt_layer(log))
            .try_init(),
        None => tracing_subscriber::registry()
            .with(Selection {
                logs: log_filter(log),
                host_spans: false,
            })
            .with(fmt_layer(log))
            .try_init(),
    }
    .is_ok();
    if !installed {
        // Tests start several hosts in one process; the first wins.
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Telemetry::default();
    }
    if provider.is_some() {
        tracing::info!(
            endpoint = telemetry.otlp_endpoint,
            service = telemetry.service_name,
            sample_ratio = telemetry.sample_ratio,
            "exporting traces over OTLP"
        );
    }
    Telemetry { provider }
}

/// The global filter: what the log filter allows, and (when spans are
/// exported) every span of the host's own, at any log level.
struct Selection {
    logs: EnvFilter,
    host_spans: bool,
}

impl Selection {
    fn host_span(&self, meta: &tracing::Metadata<'_>) -> bool {
        self.host_spans && meta.is_span() && meta.target().starts_with("switchyard")
    }
}

impl<S> Layer<S> for Selection
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.host_span(meta) {
            tracing::subscriber::Interest::always()
        } else {
            Layer::<S>::register_callsite(&self.logs, meta)
        }
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.host_span(meta) || Layer::<S>::enabled(&self.logs, meta, ctx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        let logs = Layer::<S>::max_level_hint(&self.logs);
        if self.host_spans {
            Some(
                logs.map_or(tracing::level_filters::LevelFilter::TRACE, |level| {
                    level.max(tracing::level_filters::LevelFilter::DEBUG)
                }),
            )
        } else {
            logs
        }
    }

    // The log filter follows spans for directives that name them.
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.logs.on_new_span(attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.logs.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.logs.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.logs.on_exit(id, ctx);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.logs.on_close(id, ctx);
    }
}

/// `RUST_LOG`, else the configured filter.
fn log_filter(log: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The log output, text or JSON, on stderr.
fn fmt_layer<S>(log: &LogConfig) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    }
}

fn tracer_provider(config: &TelemetryConfig) -> anyhow::Result<Option<SdkTracerProvider>> {
    if config.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&config.otlp_endpoint)
        .with_timeout(Duration::from_millis(config.export_timeout_ms))
        .build()?;
    let exporter = Reported {
        inner: exporter,
        endpoint: config.otlp_endpoint.clone(),
        failing: AtomicBool::new(false),
    };
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    // A replay or a burst makes spans faster than one export a few seconds
    // apart carries away; the SDK's default queue (2,048 spans) would drop
    // most of them. Spans that still find the queue full are dropped, never
    // waited for: tracing must not slow the events down.
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(config.max_queued_spans)
                .with_max_export_batch_size(1_024)
                .with_scheduled_delay(Duration::from_secs(1))
                .build(),
        )
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(sampler)
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build(),
    ))
}

/// The OTLP exporter, saying when export starts and stops failing. A
/// collector that is down costs spans, never events, and it is logged once
/// per outage rather than once per batch.
#[derive(Debug)]
struct Reported {
    inner: opentelemetry_otlp::SpanExporter,
    endpoint: String,
    failing: AtomicBool,
}

impl SpanExporter for Reported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        endpoint = self.endpoint,
                        spans,
                        %error,
                        "cannot export spans; they are dropped until the collector answers"
                    );
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = self.endpoint, "exporting spans again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
