//! `GET /metrics`: the gateway's figures in Prometheus' text format (0.0.4), for an NBK
//! operator's monitoring (Prometheus scrapes it with an operator's client certificate over
//! `up --tls`, or with an operator's access token).
//!
//! Counted by the access middleware around every route (`crate::access::authorize`): requests
//! by status class and their latency, refusals of authentication and access. Read at the scrape: the notary's commit index and
//! the transactions it committed since start, the revocation list in force.

use crate::routes::App;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, in microseconds (Prometheus' `le`, in seconds).
const LATENCY_BUCKETS_US: [u64; 12] =
    [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000];

/// The gateway's counters; every field is only ever incremented.
#[derive(Default)]
pub struct Metrics {
    /// Requests answered, by status class: 1xx-2xx, 3xx, 4xx, 5xx.
    answered: [AtomicU64; 4],
    unauthorized: AtomicU64,
    forbidden: AtomicU64,
    /// Requests by latency bucket (the last one: slower than every bound).
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Count one answer and its latency.
    pub fn record(&self, status: StatusCode, latency_us: u64) {
        let class = match status.as_u16() {
            0..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.answered[class].fetch_add(1, Ordering::Relaxed);
        match status {
            StatusCode::UNAUTHORIZED => self.unauthorized.fetch_add(1, Ordering::Relaxed),
            StatusCode::FORBIDDEN => self.forbidden.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let bucket =
            LATENCY_BUCKETS_US.iter().position(|bound| latency_us <= *bound).unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
    }

    /// The requests' lines of the text Prometheus reads: answers by status class, refusals,
    /// the latency histogram. A participant's own API (`dtenge-process`) serves them too.
    pub fn render_requests(&self, out: &mut String) {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        // Writing into a String cannot fail.
        let mut line = |text: std::fmt::Arguments<'_>| {
            let _ = out.write_fmt(text);
            out.push('\n');
        };
        line(format_args!("# HELP dtenge_http_requests_total Requests answered by the REST gateway, by status class."));
        line(format_args!("# TYPE dtenge_http_requests_total counter"));
        for (class, counter) in ["2xx", "3xx", "4xx", "5xx"].iter().zip(&self.answered) {
            line(format_args!("dtenge_http_requests_total{{class=\"{class}\"}} {}", get(counter)));
        }
        line(format_args!("# HELP dtenge_http_refused_total Requests refused for want of authentication or access."));
        line(format_args!("# TYPE dtenge_http_refused_total counter"));
        line(format_args!("dtenge_http_refused_total{{reason=\"unauthenticated\"}} {}", get(&self.unauthorized)));
        line(format_args!("dtenge_http_refused_total{{reason=\"forbidden\"}} {}", get(&self.forbidden)));
        line(format_args!("# HELP dtenge_http_request_duration_seconds Time from a request's arrival to its answer."));
        line(format_args!("# TYPE dtenge_http_request_duration_seconds histogram"));
        let mut cumulative = 0;
        for (bound_us, counter) in LATENCY_BUCKETS_US.iter().zip(&self.latency_buckets) {
            cumulative += get(counter);
            let bound_s = *bound_us as f64 / 1e6;
            line(format_args!("dtenge_http_request_duration_seconds_bucket{{le=\"{bound_s}\"}} {cumulative}"));
        }
        cumulative += get(&self.latency_buckets[LATENCY_BUCKETS_US.len()]);
        line(format_args!("dtenge_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"));
        line(format_args!("dtenge_http_request_duration_seconds_sum {}", get(&self.latency_sum_us) as f64 / 1e6));
        line(format_args!("dtenge_http_request_duration_seconds_count {cumulative}"));
    }

    /// The text Prometheus reads, with the figures read at the scrape.
    fn render(&self, app: &App) -> String {
        let mut out = String::with_capacity(4_096);
        self.render_requests(&mut out);
        // Writing into a String cannot fail.
        let mut line = |text: std::fmt::Arguments<'_>| {
            let _ = out.write_fmt(text);
            out.push('\n');
        };
        line(format_args!("# HELP dtenge_notary_commit_index The notary's last commit certificate number."));
        line(format_args!("# TYPE dtenge_notary_commit_index gauge"));
        line(format_args!("dtenge_notary_commit_index {}", app.assembly().notary().seq()));
        line(format_args!(
            "# HELP dtenge_notary_committed_total Transactions the notary committed since this process started."
        ));
        line(format_args!("# TYPE dtenge_notary_committed_total counter"));
        line(format_args!("dtenge_notary_committed_total {}", app.committed_transactions()));
        line(format_args!(
            "# HELP dtenge_revocation_list_number The number of the revocation list in force at the gateway."
        ));
        line(format_args!("# TYPE dtenge_revocation_list_number gauge"));
        line(format_args!("dtenge_revocation_list_number {}", app.authenticator().revocation_list_number()));
        out
    }
}

/// The gateway's figures in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "operator",
    description = "The gateway's figures in Prometheus' text format (0.0.4): requests by status class, their latency histogram, refusals, the notary's commit index, the revocation list in force. For NBK operators.",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(app): State<App>) -> Response {
    let text = app.metrics().render(&app);
    let mut response = (StatusCode::OK, text).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_in_their_class_and_bucket() {
        let metrics = Metrics::default();
        metrics.record(StatusCode::OK, 800);
        metrics.record(StatusCode::UNAUTHORIZED, 3_000);
        metrics.record(StatusCode::FORBIDDEN, 20_000_000);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(self::get_all(&metrics.answered), [1, 0, 2, 0]);
        assert_eq!((get(&metrics.unauthorized), get(&metrics.forbidden)), (1, 1));
        assert_eq!(get(&metrics.latency_buckets[0]), 1, "800 µs is under 1 ms");
        assert_eq!(get(&metrics.latency_buckets[2]), 1, "3 ms is under 5 ms");
        assert_eq!(get(&metrics.latency_buckets[LATENCY_BUCKETS_US.len()]), 1, "20 s is over every bound");
        assert_eq!(get(&metrics.latency_sum_us), 20_003_800);
    }

    fn get_all(counters: &[AtomicU64; 4]) -> [u64; 4] {
        [0, 1, 2, 3].map(|i| counters[i].load(Ordering::Relaxed))
    }
}
