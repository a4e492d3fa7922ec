//! Digital accounts (sub-scenarios 1 and 2), bank money, history, the ID center's look-ups.

use crate::types::{AccountView, AmountRequest, HistoryLine, HistoryPage, OpenAccount, Party, Payee, PhoneLookup};
use crate::{Idem, Network, TREASURY_ID};
use dtenge_core::crypto::{Address, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::{bail, ensure, Error, ErrorCode, Result};
use dtenge_node::ids::{check_iin_bin, mask_pan, normalize_phone};
use dtenge_node::{Account, Balance, ClientKind, OWN_ACCOUNT};
use dtenge_store::WriteBatch;
use std::collections::{HashMap, HashSet};

/// Most history lines one page returns.
pub const HISTORY_PAGE_MAX: usize = 500;
/// Longest client name accepted.
pub const NAME_LEN_MAX: usize = 200;
/// A planned account with its custodial key (none when the client keeps its own).
type Opened = (Account, Option<SecretKey>);

/// Most accounts one bulk opening may create (one durable commit).
pub const OPEN_ACCOUNTS_MAX: usize = 10_000;

impl Network {
    /// Open a digital account: one per client per bank. Banks open accounts for individuals
    /// and legal entities, the Treasury for government agencies.
    pub fn open_account(&self, idem: Option<&Idem>, node_id: &str, request: OpenAccount) -> Result<Account> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        let _onboarding = self.onboarding.lock();
        let (mut opened, batch) = self.plan_accounts(node_id, vec![request])?;
        let account = opened.first().map(|(a, _)| a.clone()).expect("one account planned per request");
        self.commit(idem, batch, &account)?;
        self.apply_accounts(slot, std::mem::take(&mut opened));
        Ok(account)
    }

    /// Open many accounts at one node at once (a bank migrating its clients): all or none,
    /// one durable commit, at most [`OPEN_ACCOUNTS_MAX`] per call.
    pub fn open_accounts(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        requests: Vec<OpenAccount>,
    ) -> Result<Vec<Account>> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        ensure!(!requests.is_empty(), MalformedInput, "no accounts to open");
        ensure!(
            requests.len() <= OPEN_ACCOUNTS_MAX,
            LimitExceeded,
            "at most {OPEN_ACCOUNTS_MAX} accounts per call; this one has {}",
            requests.len()
        );
        let _onboarding = self.onboarding.lock();
        let (opened, batch) = self.plan_accounts(node_id, requests)?;
        let accounts: Vec<Account> = opened.iter().map(|(a, _)| a.clone()).collect();
        self.commit(idem, batch, &accounts)?;
        self.apply_accounts(slot, opened);
        Ok(accounts)
    }

    /// Check and plan new accounts. The caller holds the onboarding lock until they are
    /// applied: an IIN, phone or address is claimed once, also within one batch.
    fn plan_accounts(&self, node_id: &str, requests: Vec<OpenAccount>) -> Result<(Vec<Opened>, WriteBatch)> {
        let mut batch = WriteBatch::new();
        let mut planned = Vec::with_capacity(requests.len());
        let mut clients = HashSet::new();
        let mut phones: HashMap<String, String> = HashMap::new();
        let mut addresses = HashSet::new();
        let now = self.now_ms();
        let slot = self.slot(node_id)?;
        let many = requests.len() > 1;
        for (i, request) in requests.into_iter().enumerate() {
            // In a bulk request, say which account failed.
            let at = |e: Error| if many { Error::new(e.code, format!("account {}: {}", i + 1, e.message)) } else { e };
            let (account, custodial) = self.plan_account(node_id, request, now).map_err(at)?;
            let duplicate = !clients.insert(account.client_id.clone())
                || !addresses.insert(account.address)
                || self.ids.read().directory.contains_key(&account.address);
            if duplicate {
                return Err(at(Error::new(
                    ErrorCode::DuplicateAccount,
                    format!("client {} or its address is already in use", mask_id(&account.client_id)),
                )));
            }
            if let Some(phone) = &account.phone {
                let owner = phones.entry(phone.clone()).or_insert_with(|| account.client_id.clone());
                let registered_other = self
                    .ids
                    .read()
                    .phones
                    .get(phone)
                    .and_then(|v| v.iter().find(|(_, c)| *c != account.client_id).map(|(_, c)| c.clone()));
                if let Some(other) = registered_other.or_else(|| (*owner != account.client_id).then(|| owner.clone())) {
                    return Err(at(Error::new(
                        ErrorCode::DuplicateAccount,
                        format!("phone {phone} is registered to another client ({})", mask_id(&other)),
                    )));
                }
            }
            slot.state.lock().plan_open(account.clone(), custodial.as_ref(), &mut batch).map_err(at)?;
            planned.push((account, custodial));
        }
        Ok((planned, batch))
    }

    /// Check one request and build its account (with a custodial key unless the client keeps
    /// its own).
    fn plan_account(&self, node_id: &str, request: OpenAccount, now: u64) -> Result<(Account, Option<SecretKey>)> {
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
        let (custodial, address) = match &request.public_key {
            None => {
                let key = SecretKey::from_seed(self.entropy.seed32());
                let address = key.address();
                (Some(key), address)
            }
            // Checked here, and kept decompressed for the client's payments (see
            // `KeyCache::admit`; a request that fails later leaves only a cache entry).
            Some(public_key) => {
                self.key_cache.admit(public_key)?;
                (None, public_key.address())
            }
        };
        let account = Account {
            client_id: request.client_id,
            node_id: node_id.to_string(),
            kind: request.kind,
            name,
            phone,
            address,
            opened_at_unix_ms: now,
        };
        Ok((account, custodial))
    }

    fn apply_accounts(&self, slot: &crate::NodeSlot, opened: Vec<Opened>) {
        let mut state = slot.state.lock();
        for (account, custodial) in &opened {
            state.apply_open(account.clone(), custodial.as_ref());
        }
        drop(state);
        let mut ids = self.ids.write();
        for (account, _) in &opened {
            ids.register(account);
        }
    }

    /// An account with its balances.
    pub fn account_view(&self, node_id: &str, client_id: &str) -> Result<AccountView> {
        let slot = self.slot(node_id)?;
        let state = slot.state.lock();
        let account = state.account(client_id)?.clone();
        let balance = state.balance(client_id)?;
        let cards = state.cards_of(client_id).iter().map(|p| mask_pan(p)).collect();
        Ok(AccountView { account, balance, cards, bank_name: state.meta().name.clone() })
    }

    /// Every account of a node (the bank's back office view).
    pub fn accounts(&self, node_id: &str) -> Result<Vec<AccountView>> {
        let slot = self.slot(node_id)?;
        let state = slot.state.lock();
        state
            .accounts()
            .map(|a| {
                Ok(AccountView {
                    account: a.clone(),
                    balance: state.balance(&a.client_id)?,
                    cards: state.cards_of(&a.client_id).iter().map(|p| mask_pan(p)).collect(),
                    bank_name: state.meta().name.clone(),
                })
            })
            .collect()
    }

    pub fn balance(&self, node_id: &str, client_id: &str) -> Result<Balance> {
        self.slot(node_id)?.state.lock().balance(client_id)
    }

    /// History newest first. Counterparties' names are shown only when they are clients of
    /// the same bank; otherwise only their bank.
    pub fn history(&self, node_id: &str, client_id: &str, offset: usize, limit: usize) -> Result<HistoryPage> {
        ensure!((1..=HISTORY_PAGE_MAX).contains(&limit), MalformedInput, "limit must be 1 to {HISTORY_PAGE_MAX}");
        // Copy the page out under the node's lock, then resolve banks under the ID center's
        // lock: never both at once (account opening takes them in the other order).
        let (page, total, names) = {
            let state = self.slot(node_id)?.state.lock();
            let entries = state.history(client_id)?;
            let page: Vec<_> = entries.iter().rev().skip(offset).take(limit).cloned().collect();
            let names: Vec<Option<String>> = page
                .iter()
                .map(|e| {
                    e.counterparty
                        .and_then(|a| state.client_of(&a))
                        .and_then(|c| state.account(c).ok())
                        .map(|a| a.name.clone())
                })
                .collect();
            (page, entries.len(), names)
        };
        let ids = self.ids.read();
        let lines = page
            .into_iter()
            .zip(names)
            .map(|(e, name)| {
                let bank_id = e.counterparty.and_then(|a| ids.directory.get(&a).cloned());
                let same_bank = bank_id.as_deref() == Some(node_id);
                HistoryLine {
                    tx_id: e.tx_id,
                    at_unix_ms: e.at_unix_ms,
                    purpose: e.purpose,
                    direction: e.direction,
                    amount_tiyn: e.amount_tiyn,
                    counterparty_address: e.counterparty,
                    counterparty_bank: bank_id.and_then(|b| self.node_names.get(&b).cloned()),
                    counterparty_name: if same_bank { name } else { None },
                    reference: e.reference,
                }
            })
            .collect();
        Ok(HistoryPage { lines, total, offset, limit })
    }

    /// Credit a client's bank money (a stand-in for the bank's core banking system: salary,
    /// cash deposit), so that it can be converted to DT.
    pub fn deposit_fiat(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        client_id: &str,
        request: AmountRequest,
    ) -> Result<Balance> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        ensure!(!request.amount_tiyn.is_zero(), MalformedInput, "the amount must be positive");
        let _fiat = slot.fiat_lock.lock();
        let (delta, balance) = {
            let state = slot.state.lock();
            let fiat = state.fiat_after(client_id, request.amount_tiyn, Amount::ZERO)?;
            let mut balance = state.balance(client_id)?;
            balance.fiat_tiyn = fiat;
            (state.fiat_delta(client_id, fiat)?, balance)
        };
        let mut batch = WriteBatch::new();
        delta.writes(&slot.state.lock(), &mut batch)?;
        self.commit(idem, batch, &balance)?;
        slot.state.lock().apply(delta);
        Ok(balance)
    }

    /// Ask the ID center who a phone number belongs to (for the sender's confirmation).
    pub fn lookup_phone(&self, phone: &str) -> Result<PhoneLookup> {
        let phone = normalize_phone(phone)?;
        let ids = self.ids.read();
        let entries = ids.phones.get(&phone).ok_or_else(|| {
            Error::new(ErrorCode::UnknownAccount, format!("no digital account is registered with phone {phone}"))
        })?;
        let (node, client) = &entries[0];
        let name = self.slot(node)?.state.lock().account(client)?.name.clone();
        Ok(PhoneLookup {
            phone,
            banks: entries.iter().map(|(n, _)| n.clone()).collect(),
            display_name: short_name(&name),
        })
    }

    /// Find the account a payment goes to.
    pub(crate) fn resolve_payee(&self, payee: &Payee) -> Result<(Party, ClientKind)> {
        let given = [payee.phone.is_some(), payee.client_id.is_some(), payee.address.is_some()];
        ensure!(
            given.iter().filter(|g| **g).count() == 1,
            MalformedInput,
            "name the payee by exactly one of: phone, client_id (with bank), address"
        );
        if let Some(address) = payee.address {
            return self.resolve_owner(&address).map(|(party, kind, _)| (party, kind));
        }
        let (node, client) = {
            let ids = self.ids.read();
            if let Some(phone) = &payee.phone {
                let phone = normalize_phone(phone)?;
                let entries = ids.phones.get(&phone).ok_or_else(|| {
                    Error::new(
                        ErrorCode::UnknownAccount,
                        format!("no digital account is registered with phone {phone}"),
                    )
                })?;
                let entry = match &payee.bank {
                    Some(bank) => entries.iter().find(|(n, _)| n == bank).ok_or_else(|| {
                        Error::new(
                            ErrorCode::UnknownAccount,
                            format!("phone {phone} has no digital account at '{bank}'"),
                        )
                    })?,
                    None => &entries[0],
                };
                entry.clone()
            } else {
                let client_id =
                    payee.client_id.as_ref().expect("exactly one of phone, client_id, address (checked above)");
                check_iin_bin(client_id)?;
                let banks = ids.clients.get(client_id).ok_or_else(|| {
                    Error::new(
                        ErrorCode::UnknownAccount,
                        format!("client {} has no digital account", mask_id(client_id)),
                    )
                })?;
                let node = match &payee.bank {
                    Some(bank) => banks.iter().find(|b| *b == bank).ok_or_else(|| {
                        Error::new(
                            ErrorCode::UnknownAccount,
                            format!("client {} has no digital account at '{bank}'", mask_id(client_id)),
                        )
                    })?,
                    None => &banks[0],
                };
                (node.clone(), client_id.clone())
            }
        };
        let slot = self.slot(&node)?;
        let state = slot.state.lock();
        let account = state.account(&client)?;
        ensure_client_account(account)?;
        Ok((Party { bank: node, client_id: client, address: account.address }, account.kind))
    }

    /// The client account an address names, as a payee, with where it is: its node's position
    /// and its index there. Refuses unknown addresses and nodes' own accounts.
    pub(crate) fn resolve_owner(&self, address: &Address) -> Result<(Party, ClientKind, crate::Located)> {
        let node = {
            let ids = self.ids.read();
            let node = ids.directory.get(address).ok_or_else(|| {
                Error::new(ErrorCode::UnknownAccount, format!("no digital account has address {address}"))
            })?;
            // The account is found under the node's lock below: one lock, not held together
            // with the ID center's (account opening takes them in the other order).
            node.clone()
        };
        let position = self.node_position(&node)?;
        let slot = self.slot(&node)?;
        let state = slot.state.lock();
        // A node applies an account before the directory registers it (`apply_accounts`), and
        // neither forgets one: the directory naming an account its node lacks is a bug.
        let (index, account) = state.locate(address).expect("the directory and the node agree on every address");
        ensure_client_account(account)?;
        let party = Party { bank: node, client_id: account.client_id.clone(), address: account.address };
        Ok((party, account.kind, crate::Located { node: position, account: index }))
    }

    /// The party of a client at a node.
    pub(crate) fn party(&self, node_id: &str, client_id: &str) -> Result<(Party, ClientKind)> {
        let slot = self.slot(node_id)?;
        let state = slot.state.lock();
        let account = state.account(client_id)?;
        Ok((
            Party { bank: node_id.to_string(), client_id: client_id.to_string(), address: account.address },
            account.kind,
        ))
    }
}

/// A payee must be a client's account: a node's own account is paid through conversion.
fn ensure_client_account(account: &Account) -> Result<()> {
    ensure!(account.client_id != OWN_ACCOUNT, Forbidden, "pay a node's own account through conversion, not a transfer");
    Ok(())
}

/// "Aigerim Seitova" -> "Aigerim S.": enough to confirm a recipient, no more.
pub fn short_name(name: &str) -> String {
    let mut parts = name.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(first), Some(last)) => format!("{first} {}.", last.chars().next().unwrap_or(' ')),
        (Some(first), None) => first.to_string(),
        _ => String::new(),
    }
}

/// An IIN/BIN with its middle hidden.
pub fn mask_id(id: &str) -> String {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}******{}", &id[..4], &id[10..])
    } else {
        "****".into()
    }
}
