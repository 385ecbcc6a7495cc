//! Logs and traces through `tracing`.
//!
//! - Logs: human-readable lines, or one JSON object per line
//!   (`CARDIO_LOG_FORMAT=json`, for ELK and friends) carrying the `trace_id`
//!   and `span_id` of the span they were written in.
//! - Traces: spans (`graphql.request` → `bus.deliver` on the node hosting the
//!   actor → `actor.handle` → `journal.append`, …) become OpenTelemetry spans,
//!   exported over OTLP/HTTP when `CARDIO_OTLP_ENDPOINT` is set. The W3C trace
//!   context crosses nodes in the bus envelope ([`current_traceparent`],
//!   [`continue_trace`]).
//!
//! Log and span fields carry ids, paths, kinds and reasons, never message
//! payloads or patient data (PHI).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::dispatcher::WeakDispatch;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, SecretUrl};

/// What [`init`] set up; [`Telemetry::shutdown`] flushes spans not yet exported.
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("cardio: trace export did not finish: {e}");
            }
        }
    }
}

/// Where trace ids come from: the dispatcher the JSON formatter asks.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// Whether spans are traced (exported or logged with ids): the runtime's
/// per-message spans are only made then.
static TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported to a collector.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans become OpenTelemetry spans in this process.
pub fn tracing_on() -> bool {
    TRACING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether spans are exported: the spans inside a node's handling of one
/// message (`actor.local`, `actor.handle`, `journal.append`) are only made
/// then. With JSON logs and no collector they would only be dropped, at
/// about 6 % of a node's CPU under pushes (issue 15); a line logged where
/// one would be carries the ids of the span around it (the request's, or
/// the delivery's), so it still names its trace.
pub fn spans_exported() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the global subscriber; a second call installs nothing.
///
/// `otlp`: the collector's base URL (`/v1/traces` is appended unless the path
/// already ends so); it may carry credentials, so it is never printed whole. The protocol is OTLP/HTTP with protobuf, or JSON when
/// `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`; batching follows the standard
/// `OTEL_BSP_*` variables. An `https://` collector is verified against
/// `otlp_ca` (a PEM CA file) or the public roots, over rustls with ring; if
/// that cannot be set up this fails (the node must not start), where a plain
/// exporter that fails to build only means traces are not exported.
pub fn init(
    format: LogFormat,
    filter: &str,
    otlp: Option<&SecretUrl>,
    otlp_ca: Option<&std::path::Path>,
    node: &str,
) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Spans only, and cardio's own at info and above, whatever the log
    // filter: log events stay out of traces (their fields may name ids).
    let spans_only = tracing_subscriber::filter::filter_fn(|m| {
        m.is_span() && m.target().starts_with("cardio") && *m.level() <= tracing::Level::INFO
    });
    // Spans get OpenTelemetry ids when they are exported or logged as JSON.
    let mut exporting = false;
    let provider = match (otlp, format) {
        (Some(url), _) => match exporting_provider(url, otlp_ca, node) {
            Ok(p) => {
                exporting = true;
                Some(p)
            }
            Err(e) if url.scheme() == "https" => {
                return Err(format!("cannot export traces over https: {e}"))
            }
            Err(e) => {
                eprintln!("cardio: traces will not be exported: {e}");
                Some(local_provider(node))
            }
        },
        (None, LogFormat::Json) => Some(local_provider(node)),
        (None, LogFormat::Pretty) => None,
    };
    // Entering and leaving a span (each poll of an instrumented future)
    // does no OpenTelemetry work: nothing here reads the OpenTelemetry
    // context of the current thread (ids come from the span itself, see
    // [`ids_of`] and [`current_traceparent`]), and the busy/idle times are
    // not exported. Both were about 3 % of a node's CPU under pushes with
    // JSON logs (issue 15).
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("cardio"))
            .with_location(false)
            .with_threads(false)
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            .with_filter(spans_only)
    });
    let stdout = std::io::stdout;
    let fmt = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(stdout)
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(stdout)
            // Lines name their span by trace and span id, not by its fields:
            // spans' fields are not even formatted (a cost on every request).
            .fmt_fields(NoSpanFields)
            .event_format(JsonWithTrace(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            ))
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter));
    let dispatch = tracing::Dispatch::new(subscriber);
    let weak = dispatch.downgrade();
    let traced = provider.is_some();
    if tracing::dispatcher::set_global_default(dispatch).is_ok() {
        let _ = DISPATCH.set(weak);
        TRACING.store(traced, std::sync::atomic::Ordering::Relaxed);
        EXPORTING.store(exporting, std::sync::atomic::Ordering::Relaxed);
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Telemetry { provider })
    } else {
        Ok(Telemetry { provider: None })
    }
}

fn resource(node: &str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name("cardio")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            node.to_owned(),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// Ids for logs, nothing exported.
fn local_provider(node: &str) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_resource(resource(node))
        .build()
}

/// opentelemetry-otlp's blocking reqwest client, on rustls with ring and
/// `ca` (or the public roots): reqwest's own rustls would bring aws-lc-rs.
fn https_client(ca: Option<&std::path::Path>) -> Result<reqwest::blocking::Client, String> {
    let tls = crate::tls::client_config(ca, None).map_err(|e| e.to_string())?;
    // A blocking client starts a runtime of its own: build it off any runtime.
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .build()
            .map_err(|e| format!("cannot build the https client: {e}"))
    })
    .join()
    .map_err(|_| "building the https client panicked".to_owned())?
}

fn exporting_provider(
    url: &SecretUrl,
    ca: Option<&std::path::Path>,
    node: &str,
) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let base = url.expose().trim_end_matches('/');
    let endpoint = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.clone());
    if url.scheme() == "https" {
        builder = builder.with_http_client(https_client(ca)?);
    }
    let exporter = builder
        .build()
        // The exporter's error quotes the endpoint, credentials and all.
        .map_err(|e| {
            e.to_string()
                .replace(&endpoint, &SecretUrl::new(endpoint.as_str()).to_string())
        })?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource(node))
        .with_batch_exporter(exporter)
        .build())
}

/// Formats no span fields (JSON lines do not print them).
struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _: Writer<'writer>,
        _: R,
    ) -> std::fmt::Result {
        Ok(())
    }
}

/// The JSON line format with the current span's `trace_id` and `span_id`.
struct JsonWithTrace(Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let ids = ctx
            .lookup_current()
            .and_then(|span| ids_of(&span.id()))
            .filter(|_| line.trim_end().ends_with('}'));
        if let Some((trace, span)) = ids {
            let end = line.trim_end().len() - 1;
            let mut tail = String::new();
            let _ = write!(tail, ",\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"");
            line.insert_str(end, &tail);
        }
        writer.write_str(&line)
    }
}

/// The OpenTelemetry ids of a span of the global subscriber.
fn ids_of(id: &tracing::span::Id) -> Option<(String, String)> {
    let dispatch = DISPATCH.get()?.upgrade()?;
    let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The W3C `traceparent` of the current span, when spans are traced.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote span `traceparent` (from a bus
/// envelope), so a trace continues across nodes. A malformed one is ignored.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_continues_under_the_remote_parent() {
        let provider = local_provider("n-test");
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let span = tracing::info_span!("bus.deliver");
            continue_trace(&span, parent);
            let inner = span.in_scope(current_traceparent).expect("traced");
            assert!(
                inner.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{inner}"
            );
            assert!(
                !inner.contains("00f067aa0ba902b7"),
                "a span of its own: {inner}"
            );
            // Garbage leaves the span a root of its own.
            let other = tracing::info_span!("bus.deliver");
            continue_trace(&other, "00-zz-not-a-trace");
            let own = other.in_scope(current_traceparent).expect("traced");
            assert!(!own.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
        });
        assert_eq!(
            current_traceparent(),
            None,
            "no trace without a tracing layer"
        );
    }
}
