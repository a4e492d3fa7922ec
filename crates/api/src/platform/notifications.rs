//! Notifications on the roles: what the oracle told each bank of its clients' events, holds,
//! releases, returns and programmed payments (`GET /v1/nodes/{node}/notifications`).
//!
//! The oracle writes each notice in the commit of the decision that causes it, numbered per
//! bank, and keeps the newest [`NOTICES_KEPT_MAX`] of each bank across restarts (`total`
//! still counts every one). It names an event's parties by bank and address; the client id
//! shown is the one the bank holds the address under (markings, invoices and contracts name
//! their parties with it, and the oracle carries it).

use super::holding::PAGE_LIMIT_MAX;
use super::Platform;
use crate::types::{Notification, NotificationKind, NotificationPage};
use dtenge_core::crypto::Address;
use dtenge_core::{ensure, Result};
use dtenge_oracle::service::{Notice, NoticeKind, NoticePage};

pub use dtenge_oracle::service::NOTICES_KEPT_MAX;

impl Platform {
    /// What `node_id` was told, newest first: `limit` (1 to [`PAGE_LIMIT_MAX`]) from the
    /// `offset`-th; `total` counts every notice the node was ever sent.
    pub fn notifications(&self, node_id: &str, offset: usize, limit: usize) -> Result<NotificationPage> {
        let bank = self.bank(node_id)?;
        ensure!(limit > 0 && limit <= PAGE_LIMIT_MAX, MalformedInput, "limit is 1 to {PAGE_LIMIT_MAX}");
        let page = self.assembly.oracle().notifications(node_id, offset, limit)?;
        let client_of = |address: &Address| -> String {
            let at_bank = bank.service().read(|n| n.client_of(address).map(str::to_string));
            // An account the bank has not opened yet (its client named at the directory
            // first) is found there.
            at_bank
                .or_else(|| self.assembly.directory().read(|d| d.by_address(address).map(|l| l.client_id.clone())))
                .unwrap_or_default()
        };
        Ok(notification_page(page, offset, limit, client_of))
    }
}

/// A page of the oracle's notices to a bank in the network's shape: a notice that names no
/// client id (an event's party) by the one `client_of` its address.
pub fn notification_page(
    page: NoticePage,
    offset: usize,
    limit: usize,
    client_of: impl Fn(&Address) -> String,
) -> NotificationPage {
    let notifications = page
        .notices
        .into_iter()
        .map(|notice| {
            let client_id = notice.client_id.clone().unwrap_or_else(|| client_of(&notice.address));
            notification(notice, client_id)
        })
        .collect();
    let total = usize::try_from(page.total).unwrap_or(usize::MAX);
    NotificationPage { notifications, total, offset, limit }
}

/// The oracle's notice in the network's shape.
fn notification(notice: Notice, client_id: String) -> Notification {
    Notification {
        seq: notice.seq,
        node: notice.node,
        client_id,
        at_unix_ms: notice.at_ms,
        kind: kind_of(notice.kind),
        subject_id: notice.subject_id,
        amount_tiyn: notice.amount_tiyn,
        text: notice.text,
        tx_id: notice.tx_id,
    }
}

fn kind_of(kind: NoticeKind) -> NotificationKind {
    match kind {
        NoticeKind::EventRegistered => NotificationKind::EventRegistered,
        NoticeKind::FundsHeld => NotificationKind::FundsHeld,
        NoticeKind::FundsReleased => NotificationKind::FundsReleased,
        NoticeKind::FundsReturned => NotificationKind::FundsReturned,
        NoticeKind::MarkedTransfer => NotificationKind::MarkedTransfer,
        NoticeKind::InvoicePaid => NotificationKind::InvoicePaid,
        NoticeKind::ContractUse => NotificationKind::ContractUse,
    }
}
