//! `GET /metrics`: the node in Prometheus/OpenMetrics text.
//!
//! Counters and histograms are updated where things happen (the node loop: attempts ending,
//! claims); gauges that describe stored state (jobs by state, queue depth) and the machine
//! (pressure) are read when scraped, so they are never stale and cost nothing in between.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError, ApiState};
use std::sync::atomic::AtomicU64;

use drover_core::Resources;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `state="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// A job state.
    pub state: String,
}

/// `queue="...", phase="queued|deferred|running"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The queue.
    pub queue: String,
    /// `queued`, `waiting` (scheduled or blocked) or `running` (starting or running).
    pub phase: String,
}

/// `state="...", reason="..."` of an ended attempt (the reason's kind, without detail).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The attempt's end state.
    pub state: String,
    /// Its reason's kind (`exit_code`, `timeout`, `memory_limit`...).
    pub reason: String,
}

/// A floating-point gauge.
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the node exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Jobs by state (read at scrape).
    pub jobs: Family<StateLabel, Gauge>,
    /// Jobs by queue and phase (read at scrape).
    pub queue_jobs: Family<QueueLabels, Gauge>,
    /// Attempts that ended on this node, by state and reason.
    pub attempts: Family<OutcomeLabels, Counter>,
    /// How long attempts ran on this node.
    pub attempt_seconds: Histogram,
    /// How long a claim transaction took.
    pub claim_seconds: Histogram,
    /// Open event-stream subscribers.
    pub subscribers: Gauge,
    /// Attempts running or starting on this node.
    pub running: Gauge,
    /// Memory admission may hand out.
    pub capacity_memory: Gauge,
    /// CPUs admission may hand out.
    pub capacity_cpus: FloatGauge,
    /// Memory reserved by running and claimed attempts.
    pub reserved_memory: Gauge,
    /// CPUs reserved by running and claimed attempts.
    pub reserved_cpus: FloatGauge,
    /// Memory PSI `some` avg10, in percent (read at scrape).
    pub pressure_memory: FloatGauge,
    /// CPU PSI `some` avg10, in percent (read at scrape).
    pub pressure_cpu: FloatGauge,
    /// Age of the oldest snapshot another session holds on a shared database (read at scrape).
    pub oldest_snapshot: FloatGauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("drover");
        let metrics = Metrics {
            jobs: Family::default(),
            queue_jobs: Family::default(),
            attempts: Family::default(),
            attempt_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 12)),
            claim_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            subscribers: Gauge::default(),
            running: Gauge::default(),
            capacity_memory: Gauge::default(),
            capacity_cpus: FloatGauge::default(),
            reserved_memory: Gauge::default(),
            reserved_cpus: FloatGauge::default(),
            pressure_memory: FloatGauge::default(),
            pressure_cpu: FloatGauge::default(),
            oldest_snapshot: FloatGauge::default(),
            registry: Registry::default(),
        };
        registry.register("jobs", "Jobs by state", metrics.jobs.clone());
        registry.register(
            "queue_jobs",
            "Jobs by queue and phase (queued, deferred: scheduled or blocked, running)",
            metrics.queue_jobs.clone(),
        );
        registry.register(
            "attempts",
            "Attempts that ended on this node, by state and reason",
            metrics.attempts.clone(),
        );
        registry.register(
            "attempt_duration_seconds",
            "Run time of attempts on this node",
            metrics.attempt_seconds.clone(),
        );
        registry.register(
            "claim_duration_seconds",
            "Time to claim a batch of jobs (one transaction)",
            metrics.claim_seconds.clone(),
        );
        registry.register(
            "store_oldest_snapshot_seconds",
            "Age of the oldest snapshot another session holds on the shared database (PostgreSQL; 0 on SQLite): while one is held, vacuum removes nothing and claims slow down",
            metrics.oldest_snapshot.clone(),
        );
        registry.register(
            "event_subscribers",
            "Open event-stream subscribers",
            metrics.subscribers.clone(),
        );
        registry.register(
            "running_attempts",
            "Attempts starting or running on this node",
            metrics.running.clone(),
        );
        registry.register(
            "capacity_memory_bytes",
            "Memory admission may hand out",
            metrics.capacity_memory.clone(),
        );
        registry.register(
            "capacity_cpus",
            "CPUs admission may hand out",
            metrics.capacity_cpus.clone(),
        );
        registry.register(
            "reserved_memory_bytes",
            "Memory reserved by running and claimed attempts",
            metrics.reserved_memory.clone(),
        );
        registry.register(
            "reserved_cpus",
            "CPUs reserved by running and claimed attempts",
            metrics.reserved_cpus.clone(),
        );
        registry.register(
            "pressure_memory_percent",
            "Memory pressure (PSI some avg10)",
            metrics.pressure_memory.clone(),
        );
        registry.register(
            "pressure_cpu_percent",
            "CPU pressure (PSI some avg10)",
            metrics.pressure_cpu.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Records what the node reserves now.
    pub fn set_reserved(&self, reserved: Resources, running: usize) {
        self.reserved_memory
            .set(i64::try_from(reserved.memory_bytes).unwrap_or(i64::MAX));
        self.reserved_cpus.set(reserved.cpu_millis as f64 / 1000.0);
        self.running.set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `GET /metrics`: Prometheus/OpenMetrics text. Stored-state gauges are read now.
pub(crate) async fn scrape(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let m = &state.metrics;
    for (job_state, count) in state.store.counts().await? {
        m.jobs
            .get_or_create(&StateLabel {
                state: job_state.to_string(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    for queue in state.store.queues().await? {
        for (phase, count) in [
            ("queued", queue.queued),
            ("deferred", queue.deferred),
            ("running", queue.running),
        ] {
            m.queue_jobs
                .get_or_create(&QueueLabels {
                    queue: queue.name.clone(),
                    phase: phase.to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
    let pressure = drover_exec::host::pressures();
    m.pressure_memory
        .set(pressure.memory.map_or(0.0, |p| p.avg10));
    m.pressure_cpu.set(pressure.cpu.map_or(0.0, |p| p.avg10));
    m.oldest_snapshot.set(
        state
            .store
            .oldest_snapshot()
            .await?
            .map_or(0.0, |age| age.as_secs_f64()),
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response())
}
