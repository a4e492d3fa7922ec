//! Digital accounts (sub-scenarios 1 and 2), bank money, history, the ID center's look-ups:
//! opened through the directory (the ID center claims the client, the phone and the
//! address before the bank opens the account), read from the servicing bank.

use super::Idem;
use super::{wait, Platform, TREASURY_ID};
use crate::types::{AccountPage, AccountView, AmountRequest, HistoryLine, HistoryPage, OpenAccount, PhoneLookup};
use dtenge_bank::AccountKey;
use dtenge_core::crypto::SecretKey;
use dtenge_core::money::Amount;
use dtenge_core::{bail, ensure, Error, ErrorCode, Result};
use dtenge_node::ids::{check_iin_bin, mask_pan, normalize_phone};
use dtenge_node::{Account, Balance, ClientKind, HistoryEntry, NodeState};
use std::collections::HashSet;

/// Most history lines one page returns.
pub const HISTORY_PAGE_MAX: usize = 500;
/// Largest page of a node's accounts: 16,000 accounts in one answer were 7 MB (issue 19).
pub const ACCOUNTS_PAGE_MAX: usize = 1_000;
/// A page of accounts when the caller names no size.
pub const ACCOUNTS_PAGE_DEFAULT: usize = 100;
/// Longest client name accepted.
pub const NAME_LEN_MAX: usize = 200;
/// Most accounts one bulk opening may create.
pub const OPEN_ACCOUNTS_MAX: usize = 10_000;

impl Platform {
    /// Open a digital account: one per client per bank. Banks open accounts for individuals
    /// and legal entities, the Treasury for government agencies. Asked again with the same
    /// idempotency key after it opened, the gateway's memo answers the account it opened
    /// ([`Platform::once`]); a second opening with another key is `DUPLICATE_ACCOUNT`.
    ///
    /// The bank does not keep the key: a retry after a crash that fell between the bank's
    /// commit and the memo's is answered `DUPLICATE_ACCOUNT`, and the account it asked for
    /// exists (`GET` it).
    pub fn open_account(&self, _idem: Option<&Idem>, node_id: &str, request: OpenAccount) -> Result<Account> {
        let bank = self.bank(node_id)?;
        let (account, key) = self.plan_account(node_id, request)?;
        wait(&bank.service().claim_account(account.clone(), key, self.now_ms()))?;
        Ok(account)
    }

    /// Open many accounts at one node at once (a bank migrating its clients): all or none, at
    /// most [`OPEN_ACCOUNTS_MAX`] per call: claimed at the directory in one commit, opened at
    /// the bank in one.
    pub fn open_accounts(
        &self,
        _idem: Option<&Idem>,
        node_id: &str,
        requests: Vec<OpenAccount>,
    ) -> Result<Vec<Account>> {
        self.bank(node_id)?;
        ensure!(!requests.is_empty(), MalformedInput, "no accounts to open");
        ensure!(
            requests.len() <= OPEN_ACCOUNTS_MAX,
            LimitExceeded,
            "at most {OPEN_ACCOUNTS_MAX} accounts per call; this one has {}",
            requests.len()
        );
        let many = requests.len() > 1;
        let mut clients = HashSet::with_capacity(requests.len());
        let mut planned = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            // In a bulk request, say which account failed.
            let at = |e: Error| if many { Error::new(e.code, format!("account {}: {}", i + 1, e.message)) } else { e };
            let (account, key) = self.plan_account(node_id, request).map_err(at)?;
            if !clients.insert(account.client_id.clone()) {
                return Err(at(Error::new(ErrorCode::DuplicateAccount, "the client is listed twice")));
            }
            planned.push((account, key));
        }
        let accounts = planned.iter().map(|(a, _)| a.clone()).collect();
        self.assembly.migrate_accounts(node_id, planned)?;
        Ok(accounts)
    }

    /// Check one request and build its account, with a custodial key unless the client keeps
    /// its own ([`plan_account`]).
    fn plan_account(&self, node_id: &str, request: OpenAccount) -> Result<(Account, AccountKey)> {
        plan_account(node_id, request, self.now_ms(), || self.new_custodial_key())
    }

    /// An account with its balances.
    pub fn account_view(&self, node_id: &str, client_id: &str) -> Result<AccountView> {
        self.bank(node_id)?.service().read(|node| view(node, node.account(client_id)?))
    }

    /// Every account of a node (the bank's back office view).
    pub fn accounts(&self, node_id: &str) -> Result<Vec<AccountView>> {
        self.bank(node_id)?.service().read(|node| node.accounts().map(|a| view(node, a)).collect())
    }

    /// A page of `node_id`'s accounts: at most `limit` (1 to [`ACCOUNTS_PAGE_MAX`]) after client
    /// id `after`, in client id order.
    pub fn accounts_page(&self, node_id: &str, after: Option<&str>, limit: usize) -> Result<AccountPage> {
        self.bank(node_id)?.service().read(|node| accounts_page(node, after, limit))
    }

    /// A page of `node_id`'s accounts by position in client id order, for a view that pages
    /// back as well as on (the consoles): `limit` (1 to [`ACCOUNTS_PAGE_MAX`]) from the
    /// `offset`-th, and how many accounts the node has. Only the page is viewed and copied.
    pub fn accounts_at(&self, node_id: &str, offset: usize, limit: usize) -> Result<(Vec<AccountView>, usize)> {
        ensure!((1..=ACCOUNTS_PAGE_MAX).contains(&limit), MalformedInput, "limit must be 1 to {ACCOUNTS_PAGE_MAX}");
        self.bank(node_id)?.service().read(|node| {
            let page: Vec<AccountView> =
                node.accounts().skip(offset).take(limit).map(|a| view(node, a)).collect::<Result<_>>()?;
            assert!(page.len() <= limit);
            Ok((page, node.account_count()))
        })
    }

    pub fn balance(&self, node_id: &str, client_id: &str) -> Result<Balance> {
        self.bank(node_id)?.service().read(|node| node.balance(client_id))
    }

    /// History newest first. Counterparties' names are shown only when they are clients of
    /// the same bank; otherwise only their bank (from the ID center).
    pub fn history(&self, node_id: &str, client_id: &str, offset: usize, limit: usize) -> Result<HistoryPage> {
        let (page, total) = history_entries(self.bank(node_id)?.service(), client_id, offset, limit)?;
        let directory = self.assembly.directory();
        let lines = page
            .into_iter()
            .map(|(e, name)| {
                let bank_id = e.counterparty.and_then(|a| directory.read(|d| d.by_address(&a).map(|l| l.bank.clone())));
                let same_bank = bank_id.as_deref() == Some(node_id);
                let bank_name =
                    bank_id.and_then(|b| self.bank(&b).ok()).map(|b| b.service().read(|n| n.meta().name.clone()));
                history_line(e, bank_name, if same_bank { name } else { None })
            })
            .collect();
        Ok(HistoryPage { lines, total, offset, limit })
    }

    /// Credit a client's bank money (a stand-in for the bank's core banking system: salary,
    /// cash deposit), so that it can be converted to DT.
    pub fn deposit_fiat(
        &self,
        _idem: Option<&Idem>,
        node_id: &str,
        client_id: &str,
        request: AmountRequest,
    ) -> Result<Balance> {
        let bank = self.active_bank(node_id)?;
        ensure!(!request.amount_tiyn.is_zero(), MalformedInput, "the amount must be positive");
        let fiat: Amount = bank.service().deposit_fiat(client_id, request.amount_tiyn)?;
        // Read after the deposit, so another change of the client's money may lie between (a
        // refund debiting a merchant, another deposit): the bank money is the deposit's own
        // answer, as the network's was.
        let mut balance = self.balance(node_id, client_id)?;
        balance.fiat_tiyn = fiat;
        Ok(balance)
    }

    /// Ask the ID center the name of `client_id`'s account at `bank` (for a payer's
    /// confirmation of a merchant's QR code): `UNKNOWN_ACCOUNT` when it has none there.
    pub fn lookup_client(&self, bank: &str, client_id: &str) -> Result<String> {
        let name =
            self.assembly.directory().read(|d| d.by_client(client_id, Some(bank)).map(|l| l.display_name.clone()));
        name.ok_or_else(|| {
            Error::new(ErrorCode::UnknownAccount, format!("no digital account of {client_id} at {bank}"))
        })
    }

    /// Ask the ID center who a phone number belongs to (for the sender's confirmation).
    pub fn lookup_phone(&self, phone: &str) -> Result<PhoneLookup> {
        let phone = normalize_phone(phone)?;
        let (banks, first) = self.assembly.directory().read(|d| {
            let banks: Vec<String> = d.banks_of_phone(&phone).into_iter().map(str::to_string).collect();
            (banks, d.by_phone(&phone, None).map(|l| l.display_name.clone()))
        });
        let Some(display_name) = first else {
            bail!(UnknownAccount, "no digital account is registered with phone {phone}");
        };
        Ok(PhoneLookup { phone, banks, display_name })
    }
}

pub use dtenge_bank::NamedEntry;

/// A page of `client_id`'s history, newest first (`limit` entries from `offset`), each with
/// its counterparty's name when the counterparty is a client of this bank too; and how many
/// entries the history holds. The lines come from the bank's store, the names from its state:
/// no one else is asked.
pub fn history_entries(
    bank: &dtenge_bank::BankService,
    client_id: &str,
    offset: usize,
    limit: usize,
) -> Result<(Vec<NamedEntry>, usize)> {
    ensure!((1..=HISTORY_PAGE_MAX).contains(&limit), MalformedInput, "limit must be 1 to {HISTORY_PAGE_MAX}");
    bank.history(client_id, offset, limit)
}

/// A page of the node's accounts: at most `limit` (1 to [`ACCOUNTS_PAGE_MAX`]) after client id
/// `after`, in client id order, with the cursor of the next page when more follow. Read under
/// the bank's lock.
pub fn accounts_page(node: &NodeState, after: Option<&str>, limit: usize) -> Result<AccountPage> {
    ensure!((1..=ACCOUNTS_PAGE_MAX).contains(&limit), MalformedInput, "limit must be 1 to {ACCOUNTS_PAGE_MAX}");
    // One more than asked tells whether another page follows.
    let mut accounts: Vec<AccountView> =
        node.accounts_after(after, limit + 1).map(|a| view(node, a)).collect::<Result<_>>()?;
    let next_after = if accounts.len() > limit {
        accounts.truncate(limit);
        accounts.last().map(|a| a.account.client_id.clone())
    } else {
        None
    };
    assert!(accounts.len() <= limit);
    Ok(AccountPage { accounts, next_after })
}

/// A history line as the API shows it: the counterparty's bank as the caller found it, and its
/// name only when the caller may show it (a client of the same bank).
pub fn history_line(entry: HistoryEntry, counterparty_bank: Option<String>, name: Option<String>) -> HistoryLine {
    HistoryLine {
        tx_id: entry.tx_id,
        at_unix_ms: entry.at_unix_ms,
        purpose: entry.purpose,
        direction: entry.direction,
        amount_tiyn: entry.amount_tiyn,
        counterparty_address: entry.counterparty,
        counterparty_bank,
        counterparty_name: name,
        reference: entry.reference,
    }
}

/// An account with its balances, its masked cards and its bank's name.
pub fn view(node: &NodeState, account: &Account) -> Result<AccountView> {
    Ok(AccountView {
        account: account.clone(),
        balance: node.balance(&account.client_id)?,
        cards: node.cards_of(&account.client_id).iter().map(|p| mask_pan(p)).collect(),
        bank_name: node.meta().name.clone(),
    })
}

/// Check one account opening and build its account (the network's checks, in its order): the
/// IIN/BIN, the name, the phone, the kind the node opens (a bank: individuals and legal
/// entities; the Treasury: government agencies), with a custodial key from `new_custodial_key`
/// unless the client keeps its own. A participant's own gateway (`dtenge-process`) plans its
/// openings with it too.
pub fn plan_account(
    node_id: &str,
    request: OpenAccount,
    now_ms: u64,
    new_custodial_key: impl FnOnce() -> SecretKey,
) -> Result<(Account, AccountKey)> {
    check_iin_bin(&request.client_id)?;
    let name = request.name.trim().to_string();
    ensure!(
        !name.is_empty() && name.chars().count() <= NAME_LEN_MAX,
        MalformedInput,
        "a name has 1 to {NAME_LEN_MAX} characters"
    );
    let phone = request.phone.as_deref().map(normalize_phone).transpose()?;
    match (node_id == TREASURY_ID, request.kind) {
        (true, ClientKind::GovernmentAgency) | (false, ClientKind::Individual | ClientKind::LegalEntity) => {}
        (true, _) => bail!(Forbidden, "the Treasury node opens accounts of government agencies only"),
        (false, _) => bail!(Forbidden, "a bank opens accounts of individuals and legal entities only"),
    }
    let key = match request.public_key {
        Some(public_key) => AccountKey::Client(public_key),
        None => AccountKey::Custodial(new_custodial_key()),
    };
    let address = match &key {
        AccountKey::Client(public_key) => public_key.address(),
        AccountKey::Custodial(secret) => secret.address(),
    };
    let account = Account {
        client_id: request.client_id,
        node_id: node_id.to_string(),
        kind: request.kind,
        name,
        phone,
        address,
        opened_at_unix_ms: now_ms,
    };
    Ok((account, key))
}
