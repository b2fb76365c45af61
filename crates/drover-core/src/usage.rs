//! What an attempt used over time: memory and CPU sampled from its cell every few seconds, kept
//! as a small series stored with the attempt (`status --json`, the web page's plot, `top`).
//!
//! The series is bounded: at most [`UsageSeries::MAX_POINTS`] points whatever the job's length.
//! When it fills, neighbouring points are merged pairwise and the spacing doubles, so a day-long
//! job keeps its whole shape at a coarser grain, as a five-minute one keeps it at the finest.
//! Each point keeps the highest of the samples it stands for: a plot of a long job still shows
//! the peak that brushed its memory limit.

use serde::{Deserialize, Serialize};

/// One point: the tree's memory and CPU use at (or, once merged, highest around) a moment.
/// In JSON: `{"at_ms": 5000, "memory_bytes": 104857600, "cpus": 0.98}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "PointWire", from = "PointWire")]
pub struct UsagePoint {
    /// Milliseconds since the attempt started.
    pub at_ms: u64,
    /// Memory the whole tree used, in bytes, where the backend measures it.
    pub memory_bytes: Option<u64>,
    /// Thousandths of a CPU the tree kept busy since the sample before (2000: two CPUs'
    /// worth), where the backend measures CPU time. `cpus` in JSON, as a number of CPUs.
    pub cpu_millis: Option<u32>,
}

/// [`UsagePoint`] as the API spells it.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = UsagePoint)]
struct PointWire {
    /// Milliseconds since the attempt started.
    at_ms: u64,
    /// Memory the whole tree used, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory_bytes: Option<u64>,
    /// CPUs the tree kept busy since the sample before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpus: Option<f64>,
}

impl utoipa::PartialSchema for UsagePoint {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <PointWire as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for UsagePoint {
    fn name() -> std::borrow::Cow<'static, str> {
        "UsagePoint".into()
    }
}

impl From<UsagePoint> for PointWire {
    fn from(p: UsagePoint) -> Self {
        PointWire {
            at_ms: p.at_ms,
            memory_bytes: p.memory_bytes,
            cpus: p.cpu_millis.map(|m| f64::from(m) / 1000.0),
        }
    }
}

impl From<PointWire> for UsagePoint {
    fn from(w: PointWire) -> Self {
        UsagePoint {
            at_ms: w.at_ms,
            memory_bytes: w.memory_bytes,
            // Negative or absurd values (hand-edited JSON) read as none rather than wrap.
            cpu_millis: w
                .cpus
                .filter(|c| c.is_finite() && *c >= 0.0 && *c < 4_000_000.0)
                .map(|c| (c * 1000.0).round() as u32),
        }
    }
}

impl UsagePoint {
    /// The two as one: the later moment, the higher of each measure.
    fn merge(self, later: UsagePoint) -> UsagePoint {
        UsagePoint {
            at_ms: later.at_ms,
            memory_bytes: higher(self.memory_bytes, later.memory_bytes),
            cpu_millis: higher(
                self.cpu_millis.map(u64::from),
                later.cpu_millis.map(u64::from),
            )
            .and_then(|m| u32::try_from(m).ok()),
        }
    }
}

fn higher(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// An attempt's samples, oldest first, spaced at least `step_ms` apart.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageSeries {
    /// The spacing of the points: the sampling interval at first, doubled at each merge.
    pub step_ms: u64,
    /// The points.
    pub points: Vec<UsagePoint>,
}

impl UsageSeries {
    /// Most points a series keeps (about 3 KiB as JSON).
    pub const MAX_POINTS: usize = 120;

    /// An empty series for samples taken every `interval_ms`.
    pub fn new(interval_ms: u64) -> Self {
        UsageSeries {
            step_ms: interval_ms.max(1),
            points: Vec::new(),
        }
    }

    /// Adds a sample. The last point stands for the samples after the point before it, up to
    /// `step_ms` later: a sample within that span is merged into it (the step grows past the
    /// sampling interval once the series has been halved), one past it starts a new point. A
    /// series past [`Self::MAX_POINTS`] merges its points pairwise and doubles its step.
    pub fn push(&mut self, sample: UsagePoint) {
        let n = self.points.len();
        let merge = match n {
            0 => false,
            1 => sample.at_ms <= self.points[0].at_ms,
            _ => sample.at_ms < self.points[n - 2].at_ms.saturating_add(self.step_ms),
        };
        match self.points.last_mut() {
            Some(last) if merge => *last = last.merge(sample),
            _ => self.points.push(sample),
        }
        if self.points.len() > Self::MAX_POINTS {
            self.halve();
        }
    }

    /// Merges neighbours pairwise: half the points, twice the step.
    fn halve(&mut self) {
        let mut merged = Vec::with_capacity(self.points.len() / 2 + 1);
        let mut pairs = self.points.chunks(2);
        for pair in &mut pairs {
            merged.push(match pair {
                [a, b] => a.merge(*b),
                [a] => *a,
                _ => continue,
            });
        }
        self.points = merged;
        self.step_ms = self.step_ms.saturating_mul(2);
    }

    /// At most `n` points, merged evenly (for a sparkline in a list), the last point last.
    pub fn thinned(&self, n: usize) -> UsageSeries {
        let mut out = self.clone();
        while out.points.len() > n.max(1) {
            out.halve();
        }
        out
    }

    /// The highest memory of any point.
    pub fn peak_memory(&self) -> Option<u64> {
        self.points.iter().filter_map(|p| p.memory_bytes).max()
    }

    /// The newest point.
    pub fn latest(&self) -> Option<&UsagePoint> {
        self.points.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64, memory: u64) -> UsagePoint {
        UsagePoint {
            at_ms: s * 1000,
            memory_bytes: Some(memory),
            cpu_millis: u32::try_from(memory % 4000).ok(),
        }
    }

    #[test]
    fn samples_are_kept_in_order_at_their_step() {
        let mut series = UsageSeries::new(5000);
        for s in 0..10 {
            series.push(at(s * 5, s));
        }
        assert_eq!(series.points.len(), 10);
        assert_eq!(series.step_ms, 5000);
        assert_eq!(series.latest().map(|p| p.at_ms), Some(45_000));
        assert_eq!(series.peak_memory(), Some(9));
    }

    #[test]
    fn a_long_job_keeps_a_bounded_series_with_its_peak() {
        let mut series = UsageSeries::new(1000);
        // A day at one sample a second, with one spike.
        for s in 0..86_400u64 {
            let memory = if s == 40_000 { 1_000_000 } else { s % 100 };
            series.push(at(s, memory));
            assert!(series.points.len() <= UsageSeries::MAX_POINTS);
        }
        assert!(
            series.points.len() >= UsageSeries::MAX_POINTS / 2,
            "{}",
            series.points.len()
        );
        assert_eq!(
            series.peak_memory(),
            Some(1_000_000),
            "the spike survives every merge"
        );
        let times: Vec<u64> = series.points.iter().map(|p| p.at_ms).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(
            times.last(),
            Some(&86_399_000),
            "the newest sample is the last point"
        );
        // Evenly spaced: every gap is the step, give or take one merge's rounding.
        for gap in times.windows(2).map(|w| w[1] - w[0]) {
            assert!(
                gap <= series.step_ms * 2,
                "gap {gap} vs step {}",
                series.step_ms
            );
        }
    }

    #[test]
    fn samples_sooner_than_the_step_merge_into_their_bucket() {
        let mut series = UsageSeries::new(8000);
        series.push(at(0, 1));
        series.push(at(8, 2));
        series.push(at(10, 7)); // opens the span (8 s, 16 s)
        series.push(at(12, 3)); // within it: merged, the higher kept
        series.push(at(16, 4)); // past it: a new point
        let memory: Vec<_> = series.points.iter().map(|p| p.memory_bytes).collect();
        assert_eq!(memory, vec![Some(1), Some(2), Some(7), Some(4)]);
        let times: Vec<_> = series.points.iter().map(|p| p.at_ms).collect();
        assert_eq!(
            times,
            vec![0, 8000, 12_000, 16_000],
            "a merged point is at its newest sample"
        );
    }

    #[test]
    fn a_point_reads_as_cpus_in_json() {
        let point = UsagePoint {
            at_ms: 5000,
            memory_bytes: Some(100),
            cpu_millis: Some(980),
        };
        let json = serde_json::to_value(point).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"at_ms": 5000, "memory_bytes": 100, "cpus": 0.98})
        );
        assert_eq!(
            serde_json::from_value::<UsagePoint>(json).expect("back"),
            point
        );
        let bare: UsagePoint = serde_json::from_str(r#"{"at_ms": 1, "cpus": -3}"#).expect("reads");
        assert_eq!((bare.memory_bytes, bare.cpu_millis), (None, None));
    }

    #[test]
    fn a_thinned_series_has_at_most_n_points() {
        let mut series = UsageSeries::new(1000);
        for s in 0..100 {
            series.push(at(s, s));
        }
        let thin = series.thinned(24);
        assert!(thin.points.len() <= 24, "{}", thin.points.len());
        assert_eq!(thin.peak_memory(), Some(99));
        assert_eq!(thin.latest().map(|p| p.at_ms), Some(99_000));
    }
}
