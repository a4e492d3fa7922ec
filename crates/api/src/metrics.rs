//! `GET /metrics`: the gateway's figures in Prometheus' text format (0.0.4), for an NBK
//! operator's monitoring (Prometheus scrapes it with an operator's client certificate over
//! `up --tls`, or with an operator's access token).
//!
//! Counted by the access middleware around every route (`crate::access::authorize`): requests
//! by status class and their latency, refusals of authentication and access. Read at the scrape: the notary's commit index and
//! the transactions it committed since start, the revocation list in force, the unspent
//! tokens, the data directory's size on disk, and the process's resident memory and CPU time
//! (`dtenge bench --soak` reads them each interval).

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
        line(format_args!("# HELP dtenge_unspent_tokens Tokens the notary holds unspent."));
        line(format_args!("# TYPE dtenge_unspent_tokens gauge"));
        line(format_args!("dtenge_unspent_tokens {}", app.assembly().notary().notary().unspent_count()));
        line(format_args!("# HELP dtenge_notary_transactions_held Transaction ids the notary holds in memory."));
        line(format_args!("# TYPE dtenge_notary_transactions_held gauge"));
        line(format_args!("dtenge_notary_transactions_held {}", app.assembly().notary().notary().transactions_held()));
        line(format_args!("# HELP dtenge_data_bytes Disk space the data directory takes (allocated blocks)."));
        line(format_args!("# TYPE dtenge_data_bytes gauge"));
        line(format_args!("dtenge_data_bytes {}", disk_bytes(app.dir())));
        // The process's own figures, under Prometheus' standard names (Linux: /proc/self).
        if let Some(process) = ProcessFigures::read() {
            line(format_args!("# HELP process_resident_memory_bytes Resident memory size in bytes."));
            line(format_args!("# TYPE process_resident_memory_bytes gauge"));
            line(format_args!("process_resident_memory_bytes {}", process.resident_bytes));
            line(format_args!("# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds."));
            line(format_args!("# TYPE process_cpu_seconds_total counter"));
            line(format_args!("process_cpu_seconds_total {}", process.cpu_seconds));
        }
        out
    }
}

/// Files visited at most when the data directory's size is added up: a data directory holds
/// a few hundred (each role's store, the audit trail, keys, credentials), so the bound only
/// stops a scrape from walking a tree someone mounted inside it.
const DATA_FILES_MAX: usize = 100_000;
/// Directory levels walked at most, for the same reason.
const DATA_DEPTH_MAX: usize = 8;

/// Disk space under `dir`: each file's allocated 512-byte blocks (a sparse or preallocated
/// store counts what it takes, not its length), at most [`DATA_FILES_MAX`] files and
/// [`DATA_DEPTH_MAX`] levels down; what cannot be read counts 0.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut visited = 0usize;
    let mut pending = vec![(dir.to_path_buf(), 0usize)];
    // Bounded by DATA_FILES_MAX entries visited.
    while let Some((path, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else { continue };
        for entry in entries.flatten() {
            visited += 1;
            if visited > DATA_FILES_MAX {
                return total;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && depth < DATA_DEPTH_MAX {
                pending.push((entry.path(), depth + 1));
            } else if meta.is_file() {
                total = total.saturating_add(meta.blocks().saturating_mul(512));
            }
        }
    }
    total
}

/// The process's resident memory and CPU time, from `/proc/self` (`None` where there is none).
struct ProcessFigures {
    resident_bytes: u64,
    cpu_seconds: f64,
}

impl ProcessFigures {
    fn read() -> Option<ProcessFigures> {
        // statm: size resident shared ... in pages.
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf only reads a configuration value.
        let page_bytes = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok().filter(|p| *p > 0)?;
        // stat: after the command name in parentheses, utime and stime are fields 14 and 15.
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: as above.
        let ticks_per_s = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|t| *t > 0)?;
        Some(ProcessFigures {
            resident_bytes: resident_pages.saturating_mul(page_bytes),
            cpu_seconds: ticks as f64 / ticks_per_s as f64,
        })
    }
}

/// The gateway's figures in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "operator",
    description = "The gateway's figures in Prometheus' text format (0.0.4): requests by status class, their latency histogram, refusals, the notary's commit index, the revocation list in force, the unspent tokens, the data directory's size on disk, the process's resident memory and CPU time. For NBK operators.",
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
    fn the_process_figures_are_read() {
        let figures = ProcessFigures::read().expect("/proc/self on Linux");
        assert!(figures.resident_bytes > 1 << 20, "a test process holds more than a megabyte");
        assert!(figures.cpu_seconds >= 0.0);
    }

    #[test]
    fn a_directory_size_counts_its_files_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        std::fs::write(dir.path().join("store/a"), vec![1u8; 100_000]).unwrap();
        std::fs::write(dir.path().join("b"), vec![1u8; 10_000]).unwrap();
        let bytes = disk_bytes(dir.path());
        assert!((110_000..200_000).contains(&bytes), "{bytes}");
        assert_eq!(disk_bytes(&dir.path().join("missing")), 0);
    }

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
