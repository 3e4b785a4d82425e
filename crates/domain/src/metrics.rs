//! Prometheus metrics: counters and a latency histogram the daemon keeps as it works, rendered
//! with the gauges read at scrape time in the text exposition format. (The HTTP middleware that
//! feeds the request series is the api crate's.)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the request latency histogram's buckets.
const LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric family: name, type and help line.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "kalpana_http_requests_total",
        "counter",
        "HTTP requests answered, by method, route template and status.",
    ),
    (
        "kalpana_http_request_duration_seconds",
        "histogram",
        "Time from request to response head (a streamed body may go on after), by method and route template.",
    ),
    (
        "kalpana_events_total",
        "counter",
        "Bucket events published (status changes, image pulls, domain links, deletes), by kind and status.",
    ),
    (
        "kalpana_container_events_total",
        "counter",
        "Docker events about bucket containers going down, by action (die, oom, destroy).",
    ),
    (
        "kalpana_reconcile_passes_total",
        "counter",
        "Full reconcile passes over every bucket.",
    ),
    (
        "kalpana_reconcile_failures_total",
        "counter",
        "Reconcile steps of one bucket that failed (retried later).",
    ),
    (
        "kalpana_orphans",
        "gauge",
        "Managed containers and volumes without a bucket record at the last pass, by kind.",
    ),
    (
        "kalpana_buckets",
        "gauge",
        "Bucket records by status.",
    ),
    (
        "kalpana_wake_duration_seconds",
        "histogram",
        "Time a sleeping bucket took to wake: from the first request held to the engine's first answer.",
    ),
    (
        "kalpana_buckets_asleep",
        "gauge",
        "Managed buckets whose container is stopped while they sleep.",
    ),
    (
        "kalpana_buckets_kept_awake",
        "gauge",
        "Buckets with a sleep setting that do not sleep, by reason (attachments: a workspace container reaches them by a name that goes with a stopped container).",
    ),
    (
        "kalpana_requests_held",
        "gauge",
        "Client requests (connections and API calls) waiting for a bucket to wake.",
    ),
    (
        "kalpana_requests_held_total",
        "counter",
        "Client requests that waited for a bucket to wake, by outcome (served, refused: the queue was full, failed: the wake failed).",
    ),
    (
        "kalpana_docker_up",
        "gauge",
        "1 when Docker answered a ping at this scrape.",
    ),
    (
        "kalpana_store_up",
        "gauge",
        "1 when the store answered a ping at this scrape.",
    ),
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations at or under each bound (not cumulative; summed when rendered).
    buckets: [u64; LATENCY_BOUNDS.len()],
    sum: f64,
    count: u64,
}

/// Values keyed by metric name and rendered label set.
type Series<T> = BTreeMap<(&'static str, String), T>;

/// What the daemon counts while it runs.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Series<u64>>,
    gauges: Mutex<Series<f64>>,
    latency: Mutex<BTreeMap<(&'static str, String), Histogram>>,
}

/// Gauges read at scrape time.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Bucket records per status word.
    pub buckets: BTreeMap<&'static str, u64>,
    /// Docker answered.
    pub docker_up: bool,
    /// The store answered.
    pub store_up: bool,
    /// Events published, by (kind, status).
    pub events: BTreeMap<(crate::events::EventKind, &'static str), u64>,
}

/// `{a="x",b="y"}` with Prometheus escaping.
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

impl Metrics {
    /// Adds one to counter `name` with `pairs` as labels.
    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)]) {
        let mut c = lock(&self.counters);
        *c.entry((name, labels(pairs))).or_default() += 1;
    }

    /// Sets gauge `name` with `pairs` as labels.
    pub fn set(&self, name: &'static str, pairs: &[(&str, &str)], value: f64) {
        let mut g = lock(&self.gauges);
        g.insert((name, labels(pairs)), value);
    }

    /// Records one answered request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.inc(
            "kalpana_http_requests_total",
            &[("method", method), ("route", route), ("status", &status)],
        );
        let key = labels(&[("method", method), ("route", route)]);
        self.observe("kalpana_http_request_duration_seconds", key, seconds);
    }

    /// Records how long a bucket took to wake.
    pub fn observe_wake(&self, seconds: f64) {
        self.observe("kalpana_wake_duration_seconds", String::new(), seconds);
    }

    fn observe(&self, family: &'static str, key: String, seconds: f64) {
        let mut l = lock(&self.latency);
        let h = l.entry((family, key)).or_default();
        if let Some(i) = LATENCY_BOUNDS.iter().position(|b| seconds <= *b) {
            h.buckets[i] += 1;
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// The text exposition of everything counted plus `scrape`.
    pub fn render(&self, scrape: &Scrape) -> String {
        // Sample lines per family, so each family is written under its HELP and TYPE.
        let mut lines: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut add =
            |family: &'static str, series: &str, l: &str, value: &dyn std::fmt::Display| {
                lines
                    .entry(family)
                    .or_default()
                    .push(format!("{series}{l} {value}"));
            };
        let counters = lock(&self.counters).clone();
        for ((name, l), v) in &counters {
            add(name, name, l, v);
        }
        let gauges = lock(&self.gauges).clone();
        for ((name, l), v) in &gauges {
            add(name, name, l, v);
        }
        let latency = lock(&self.latency).clone();
        for ((name, l), h) in &latency {
            let name: &'static str = name;
            let (bucket, sum, count) = (
                format!("{name}_bucket"),
                format!("{name}_sum"),
                format!("{name}_count"),
            );
            // `{method="GET",route="/x"}` → `method="GET",route="/x",` to add `le`.
            let inner = l.trim_start_matches('{').trim_end_matches('}');
            let sep = if inner.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BOUNDS.iter().zip(h.buckets) {
                cumulative += n;
                add(
                    name,
                    &bucket,
                    &format!("{{{inner}{sep}le=\"{bound}\"}}"),
                    &cumulative,
                );
            }
            add(
                name,
                &bucket,
                &format!("{{{inner}{sep}le=\"+Inf\"}}"),
                &h.count,
            );
            add(name, &sum, l, &h.sum);
            add(name, &count, l, &h.count);
        }
        for ((kind, status), n) in &scrape.events {
            let l = labels(&[("kind", kind.as_str()), ("status", status)]);
            add("kalpana_events_total", "kalpana_events_total", &l, n);
        }
        for (status, n) in &scrape.buckets {
            let l = labels(&[("status", status)]);
            add("kalpana_buckets", "kalpana_buckets", &l, n);
        }
        for (name, up) in [
            ("kalpana_docker_up", scrape.docker_up),
            ("kalpana_store_up", scrape.store_up),
        ] {
            add(name, name, "", &u8::from(up));
        }
        let mut text = String::new();
        for (name, kind, help) in FAMILIES {
            let Some(samples) = lines.get(name) else {
                continue;
            };
            let _ = writeln!(text, "# HELP {name} {help}");
            let _ = writeln!(text, "# TYPE {name} {kind}");
            for s in samples {
                let _ = writeln!(text, "{s}");
            }
        }
        text
    }
}

/// The guarded value, also after a panic elsewhere (counters stay usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges_in_the_text_format() {
        let m = Metrics::default();
        m.observe_request("GET", "/api/buckets/{id}", 200, 0.003);
        m.observe_request("GET", "/api/buckets/{id}", 404, 0.2);
        m.inc("kalpana_container_events_total", &[("action", "die")]);
        m.set("kalpana_orphans", &[("kind", "volume")], 2.0);
        let scrape = Scrape {
            buckets: [("RUNNING", 3), ("STOPPED", 0)].into_iter().collect(),
            docker_up: true,
            store_up: false,
            events: [((crate::events::EventKind::BucketStatus, "RUNNING"), 4)]
                .into_iter()
                .collect(),
        };
        let text = m.render(&scrape);
        for line in [
            "# TYPE kalpana_http_requests_total counter",
            "kalpana_http_requests_total{method=\"GET\",route=\"/api/buckets/{id}\",status=\"404\"} 1",
            "kalpana_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/buckets/{id}\",le=\"0.005\"} 1",
            "kalpana_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/buckets/{id}\",le=\"0.25\"} 2",
            "kalpana_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/buckets/{id}\",le=\"+Inf\"} 2",
            "kalpana_http_request_duration_seconds_count{method=\"GET\",route=\"/api/buckets/{id}\"} 2",
            "kalpana_container_events_total{action=\"die\"} 1",
            "kalpana_orphans{kind=\"volume\"} 2",
            "kalpana_buckets{status=\"STOPPED\"} 0",
            "kalpana_events_total{kind=\"bucket.status\",status=\"RUNNING\"} 4",
            "kalpana_docker_up 1",
            "kalpana_store_up 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // A family with no sample yet is not announced.
        assert!(!text.contains("kalpana_reconcile_passes_total"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("a", "x\"y\\z\n")]), "{a=\"x\\\"y\\\\z\\n\"}");
        assert_eq!(labels(&[]), "");
    }
}
