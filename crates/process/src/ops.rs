//! A participant's operations endpoint: `GET /health` and Prometheus `GET /metrics` (text
//! format 0.0.4), read-only, plain HTTP. It changes nothing and tells figures, not clients'
//! data, so it is for the operator's network: bind it to loopback or an operations interface.
//!
//! `/health`: `200 {"role": …, "status": "serving"}`, or `503` with `"stopped"` when the role
//! stopped taking work (the notary after a failed commit: restart it).
//!
//! `/metrics`: the network's counters (frames and envelopes each way, refusals, revoked
//! connections, envelopes lost), the revocation list in force, the seconds until this
//! participant's certificate expires, and the role's figures: the notary's commit index and
//! unspent tokens; a bank's DT, accounts, tokens, batches and deliveries; central's DT liability
//! and outstanding work; and, where the node serves its own API, its answers by status class,
//! its refusals and their latency histogram (`dtenge_http_*`).

use crate::Hosted;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dtenge_api::serving::{Hosts, Limits};
use dtenge_core::Result;
use dtenge_net::Net;
use dtenge_wire::RoleId;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the endpoint reads at each request.
#[derive(Clone)]
pub(crate) struct Sources {
    pub role: RoleId,
    pub net: Arc<Net>,
    pub hosted: Arc<Hosted>,
    pub certificate_not_after_s: i64,
    /// The node's own API's answers, when it serves one.
    pub requests: Option<Arc<dtenge_api::metrics::Metrics>>,
}

/// The operations endpoint: one thread. It serves the Host names of its address, loopback and
/// `names` (the participant's certificate's), with the gateway's bounds on connections.
pub(crate) fn start(address: SocketAddr, names: &[String], sources: Sources) -> Result<crate::server::Server> {
    let app = axum::Router::new().route("/health", get(health)).route("/metrics", get(metrics)).with_state(sources);
    let hosts = Hosts::serving(address, names);
    crate::server::Server::start("ops", address, 1, move |listener, stop| {
        dtenge_api::serving::serve(app, listener, None, hosts, Limits::GATEWAY, stop)
    })
}

fn serving(hosted: &Hosted) -> bool {
    match hosted {
        Hosted::Notary(notary) => !notary.stopped(),
        Hosted::Replica(replica) => replica.status().role != dtenge_notary_raft::Role::Stopped,
        _ => true,
    }
}

async fn health(State(sources): State<Sources>) -> Response {
    let up = serving(&sources.hosted);
    let status = if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = format!("{{\"role\":\"{}\",\"status\":\"{}\"}}", sources.role, if up { "serving" } else { "stopped" });
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

async fn metrics(State(sources): State<Sources>) -> Response {
    let text = tokio::task::spawn_blocking(move || render(&sources)).await.unwrap_or_default();
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response()
}

fn render(sources: &Sources) -> String {
    let mut out = String::with_capacity(2_048);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        // Writing into a String cannot fail.
        let _ =
            writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{role=\"{}\"}} {value}", sources.role);
    };
    let net = sources.net.stats();
    metric("dtenge_net_frames_sent_total", "counter", "Signed frames sent to peers.", net.frames_sent.to_string());
    metric("dtenge_net_envelopes_sent_total", "counter", "Envelopes sent to peers.", net.envelopes_sent.to_string());
    metric("dtenge_net_frames_received_total", "counter", "Signed frames taken.", net.frames_received.to_string());
    metric(
        "dtenge_net_envelopes_received_total",
        "counter",
        "Envelopes taken from peers.",
        net.envelopes_received.to_string(),
    );
    metric(
        "dtenge_net_frames_refused_total",
        "counter",
        "Frames refused: altered, replayed, reordered or from an impostor.",
        net.frames_refused.to_string(),
    );
    metric(
        "dtenge_net_connections_refused_total",
        "counter",
        "Connections refused at the handshake (unknown root, revoked, expired) or naming another role.",
        net.connections_refused.to_string(),
    );
    metric(
        "dtenge_net_connections_revoked_total",
        "counter",
        "Live connections ended by a newer revocation list.",
        net.connections_revoked.to_string(),
    );
    metric(
        "dtenge_net_envelopes_lost_total",
        "counter",
        "Envelopes lost (resent by their role).",
        net.envelopes_lost.to_string(),
    );
    metric(
        "dtenge_revocation_list_number",
        "gauge",
        "The number of the revocation list in force.",
        sources.net.revocation_list_number().to_string(),
    );
    let expiry_s = sources.certificate_not_after_s.saturating_sub(crate::config::now_s());
    metric(
        "dtenge_certificate_expiry_seconds",
        "gauge",
        "Seconds until this participant's certificate expires.",
        expiry_s.to_string(),
    );
    match &*sources.hosted {
        Hosted::Notary(notary) => {
            metric(
                "dtenge_notary_commit_index",
                "gauge",
                "The notary's last certificate number.",
                notary.seq().to_string(),
            );
            metric(
                "dtenge_notary_unspent_tokens",
                "gauge",
                "Tokens the notary holds unspent.",
                notary.notary().unspent_count().to_string(),
            );
        }
        Hosted::Replica(replica) => {
            let status = replica.status();
            let (report, raft) = (status.report, &status);
            metric(
                "dtenge_notary_commit_index",
                "gauge",
                "The notary's last certificate number, as of the entries this replica applied.",
                report.seq.to_string(),
            );
            metric(
                "dtenge_notary_unspent_tokens",
                "gauge",
                "Tokens the notary holds unspent, as of the entries this replica applied.",
                report.unspent.to_string(),
            );
            metric(
                "dtenge_notary_raft_leader",
                "gauge",
                "1 on the replica that leads the notary's group, else 0.",
                u8::from(raft.role == dtenge_notary_raft::Role::Leader).to_string(),
            );
            metric("dtenge_notary_raft_term", "gauge", "The replica's Raft term.", raft.term.to_string());
            metric(
                "dtenge_notary_raft_last_log_index",
                "gauge",
                "The last entry in the replica's log.",
                raft.last_log_index.to_string(),
            );
            metric(
                "dtenge_notary_raft_committed_index",
                "gauge",
                "The last entry a majority holds, as this replica knows.",
                raft.committed_index.to_string(),
            );
            metric(
                "dtenge_notary_raft_applied_index",
                "gauge",
                "The last entry this replica applied to its ledger.",
                raft.applied_index.to_string(),
            );
            metric(
                "dtenge_notary_raft_purged_index",
                "gauge",
                "The last entry purged from the log after a snapshot (kept as evidence).",
                raft.purged_index.to_string(),
            );
            metric(
                "dtenge_notary_replication_lag_entries",
                "gauge",
                "On the leader: entries the slowest replica lacks (0 on the others).",
                raft.replication_lag_entries.to_string(),
            );
            metric(
                "dtenge_notary_snapshots_installed",
                "counter",
                "Snapshots this replica received from a leader since it started.",
                raft.snapshots_installed.to_string(),
            );
        }
        Hosted::Bank { handle, .. } => {
            let bank = handle.service();
            let figures = bank.figures();
            let stats = bank.stats();
            let (at_notary, undelivered) = bank.outstanding();
            metric(
                "dtenge_bank_dt_held_tiyn",
                "gauge",
                "DT the bank's accounts own, in tiyn.",
                figures.dt_held.tiyn().to_string(),
            );
            metric("dtenge_bank_accounts", "gauge", "Accounts the bank keeps.", figures.accounts.to_string());
            metric("dtenge_bank_tokens", "gauge", "Tokens the bank's accounts own.", figures.tokens.to_string());
            metric(
                "dtenge_bank_batches_sent_total",
                "counter",
                "Batches sent to the notary.",
                stats.batches_sent.to_string(),
            );
            metric(
                "dtenge_bank_deliveries_applied_total",
                "counter",
                "Certified transactions applied from other participants' deliveries.",
                stats.deliveries_applied.to_string(),
            );
            metric(
                "dtenge_bank_batches_outstanding",
                "gauge",
                "Batches at the notary, not answered yet.",
                at_notary.to_string(),
            );
            metric(
                "dtenge_bank_deliveries_outstanding",
                "gauge",
                "Deliveries not acknowledged yet.",
                undelivered.to_string(),
            );
        }
        Hosted::Central(central) => {
            let figures = central.figures();
            let (at_notary, undelivered) = central.outstanding();
            metric(
                "dtenge_central_dt_liability_tiyn",
                "gauge",
                "The ABS DT liability, in tiyn.",
                figures.dt_liability.tiyn().to_string(),
            );
            metric(
                "dtenge_central_batches_outstanding",
                "gauge",
                "Batches at the notary, not answered yet.",
                at_notary.to_string(),
            );
            metric(
                "dtenge_central_deliveries_outstanding",
                "gauge",
                "Deliveries not acknowledged yet.",
                undelivered.to_string(),
            );
        }
        Hosted::Directory(directory) => {
            metric("dtenge_directory_listings", "gauge", "Accounts listed.", directory.read(|d| d.len()).to_string());
        }
        Hosted::Oracle { oracle, .. } => {
            metric(
                "dtenge_oracle_pending",
                "gauge",
                "Decisions waiting for their certificates.",
                oracle.pending().to_string(),
            );
        }
    }
    if let Some(requests) = &sources.requests {
        requests.render_requests(&mut out);
    }
    out
}
