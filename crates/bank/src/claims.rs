//! Opening an account through the ID center: the bank claims the account's identities (its
//! address, its client, its phone) at the directory, and opens the account only when the
//! directory has listed it.
//!
//! Nothing is written at the bank before the directory's answer: a claim is idempotent at the
//! directory (the same claim again is answered as the first time), so a bank that restarts, or
//! whose message or answer is lost, simply claims again (`tick` resends unanswered claims).

use crate::state::Inner;
use crate::BankService;
use crossbeam_channel::{Receiver, Sender};
use dtenge_core::crypto::{Address, KeyCache, PublicKey, SecretKey};
use dtenge_core::{ensure, Error, Result};
use dtenge_node::{Account, ClientKind};
use dtenge_store::WriteBatch;
use dtenge_wire::{AccountKind, Claim, ClaimReply, Envelope, Message, RoleId};

/// Where an account opening's answer arrives.
pub type Opening = Receiver<Result<()>>;

/// Most claims waiting for the directory at once.
pub const CLAIMS_IN_FLIGHT_MAX: usize = 4_096;

/// Who keeps an account's key.
#[derive(Clone, Debug)]
pub enum AccountKey {
    /// The bank keeps the client's key and signs its payments (a custodial account).
    Custodial(SecretKey),
    /// The client keeps its own key and signs its transfers; the bank knows the public key.
    Client(PublicKey),
}

impl AccountKey {
    /// The key the bank keeps, if it keeps one.
    pub fn custodial(&self) -> Option<&SecretKey> {
        match self {
            AccountKey::Custodial(key) => Some(key),
            AccountKey::Client(_) => None,
        }
    }

    /// Check that the key is the account's (its address is the key's) and, for a client's
    /// key, one signatures can be verified against, kept decompressed in `cache`: a key that
    /// could never verify is refused at opening with a clear error, not at the first payment,
    /// and that payment does not pay for the decompression (about a tenth of a payment's
    /// check when a payer pays twice).
    pub(crate) fn admit(&self, account: &Account, cache: &KeyCache) -> Result<()> {
        match self {
            // The node checks a custodial key against the address when it plans the opening.
            AccountKey::Custodial(_) => {}
            AccountKey::Client(public_key) => {
                cache.admit(public_key)?;
                ensure!(
                    public_key.address() == account.address,
                    MalformedInput,
                    "the public key is not the account's: its address differs"
                );
            }
        }
        Ok(())
    }
}

/// An account waiting for the directory's answer.
pub(crate) struct PendingClaim {
    account: Account,
    custodial_key: Option<SecretKey>,
    claim: Claim,
    sent_at_ms: u64,
    answers: Vec<Sender<Result<()>>>,
}

/// The name a payer is shown: the first name and the last name's initial (personal data stays
/// at the servicing bank).
fn display_name(name: &str) -> String {
    let mut parts = name.split_whitespace();
    match (parts.next(), parts.next().and_then(|last| last.chars().next())) {
        (Some(first), Some(initial)) => format!("{first} {initial}."),
        (Some(first), None) => first.to_string(),
        (None, _) => String::new(),
    }
}

fn kind_of(kind: ClientKind) -> AccountKind {
    match kind {
        ClientKind::Individual => AccountKind::Individual,
        ClientKind::LegalEntity => AccountKind::LegalEntity,
        ClientKind::GovernmentAgency => AccountKind::GovernmentAgency,
        ClientKind::Institution => AccountKind::Institution,
    }
}

/// What the directory lists of an account: its identities and the name a payer is shown.
pub fn claim_of(account: &Account) -> Claim {
    Claim {
        client_id: account.client_id.clone(),
        address: account.address,
        kind: kind_of(account.kind),
        display_name: display_name(&account.name),
        phone: account.phone.clone(),
    }
}

impl BankService {
    /// Open an account: claimed at the directory first, opened (durably) at this bank once the
    /// directory listed it.
    pub fn claim_account(&self, account: Account, key: AccountKey, now_ms: u64) -> Opening {
        let (answer, receiver) = crossbeam_channel::bounded(1);
        let mut inner = self.inner.lock();
        let custodial_key = key.custodial().cloned();
        if let Err(e) =
            key.admit(&account, &self.key_cache).and_then(|()| self.admit_claim(&mut inner, &account, &custodial_key))
        {
            let _ = answer.send(Err(e));
            return receiver;
        }
        if let Some(pending) = inner.claims.get_mut(&account.address) {
            // The same account asked for again while its claim is out: one answer for both.
            pending.answers.push(answer);
            return receiver;
        }
        let claim = claim_of(&account);
        let pending = PendingClaim { account, custodial_key, claim, sent_at_ms: now_ms, answers: vec![answer] };
        self.send_claim(&pending.claim);
        inner.claims.insert(pending.claim.address, pending);
        receiver
    }

    /// What the bank checks before asking the directory: the account is one it can open.
    fn admit_claim(&self, inner: &mut Inner, account: &Account, custodial_key: &Option<SecretKey>) -> Result<()> {
        inner.ensure_running()?;
        if inner.claims.len() >= CLAIMS_IN_FLIGHT_MAX && !inner.claims.contains_key(&account.address) {
            return Err(Error::new(dtenge_core::ErrorCode::LimitExceeded, "too many accounts being opened; retry"));
        }
        // Planned into a batch that is dropped: the node's own checks (one account per client
        // here, the key matches the address), nothing written.
        inner.node.plan_open(account.clone(), custodial_key.as_ref(), &mut WriteBatch::new())
    }

    fn send_claim(&self, claim: &Claim) {
        let _ = self.transport.send(Envelope {
            from: self.role(),
            to: RoleId::Directory,
            message: Message::Claim(claim.clone()),
        });
    }

    /// The directory answered a claim: open the account, or pass the refusal on.
    pub(crate) fn on_claim_reply(&self, inner: &mut Inner, reply: ClaimReply) {
        let Some(pending) = inner.claims.remove(&reply.address) else { return };
        let result = match reply.refused {
            Some(refusal) => Err(refusal),
            None => self.open_claimed(inner, &pending.account, pending.custodial_key.as_ref()),
        };
        for answer in pending.answers {
            let _ = answer.send(result.clone());
        }
    }

    fn open_claimed(&self, inner: &mut Inner, account: &Account, custodial_key: Option<&SecretKey>) -> Result<()> {
        let mut batch = WriteBatch::new();
        inner.node.plan_open(account.clone(), custodial_key, &mut batch)?;
        self.commit(inner, batch)?;
        inner.apply_open(account.clone(), custodial_key);
        Ok(())
    }

    /// Claims not answered in time, sent again.
    pub(crate) fn resend_claims(&self, inner: &mut Inner, now_ms: u64) {
        let due: Vec<Address> = inner
            .claims
            .iter()
            .filter(|(_, p)| p.sent_at_ms.saturating_add(crate::RESEND_AFTER_MS) <= now_ms)
            .map(|(a, _)| *a)
            .collect();
        for address in due {
            let pending = inner.claims.get_mut(&address).expect("listed above");
            pending.sent_at_ms = now_ms;
            let claim = pending.claim.clone();
            self.send_claim(&claim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payer_sees_a_first_name_and_an_initial() {
        assert_eq!(display_name("Aigerim  Seitova"), "Aigerim S.");
        assert_eq!(display_name("Steppe"), "Steppe");
        assert_eq!(display_name(" "), "");
    }
}
