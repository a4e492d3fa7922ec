//! Marking by parameter (SPEC §5.2): the smart-contract portal registers contracts on the
//! oracle — number, sender, recipient, the most marked DT that may be transferred under it,
//! the most that may be withdrawn to bank money, and a duration. DT paid under a contract
//! arrives marked with it; it moves on only under a contract the recipient is the sender of
//! (one funded by this one), or to bank money within the withdrawal limit. The oracle
//! consumes the limits as payments happen and records each use, signed.

use crate::spend::SpendPlan;
use crate::{provider_is, Oracle, Provider, ProviderKind};
use dtenge_core::crypto::{hash_parts, Address, Hash32, Signature};
use dtenge_core::money::Amount;
use dtenge_core::party::Party;
use dtenge_core::token::{marking_hash, Output, Policy, TxId};
use dtenge_core::tx::{Attestation, Transaction};
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_store::{Store, Table, WriteBatch};
use serde::{Deserialize, Serialize};

pub const CONTRACTS_TABLE: Table = Table("oracle_contracts");
pub const USES_TABLE: Table = Table("oracle_contract_uses");

/// Longest contract number.
pub const CONTRACT_NUMBER_LEN_MAX: usize = 64;
/// Deepest chain of contracts funding one another.
pub const CONTRACT_CHAIN_MAX: usize = 16;
/// Most uses one contract records.
pub const USES_PER_CONTRACT_MAX: usize = 1_000_000;

/// A contract as the portal registers it.
#[derive(Clone, Debug)]
pub struct ContractSpec {
    pub number: String,
    pub sender: Party,
    pub recipient: Party,
    pub max_transfer_tiyn: Amount,
    pub max_fiat_tiyn: Amount,
    pub valid_until_unix_ms: u64,
    /// The contract whose marked DT pays this one; `None`: the sender pays standard DT.
    pub funded_by: Option<String>,
}

/// A registered contract with its consumed limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Contract {
    pub number: String,
    /// What DT paid under this contract names ([`marking_hash`] of `contract/<number>`).
    pub hash: Hash32,
    pub registered_by: String,
    pub sender: Party,
    pub recipient: Party,
    pub max_transfer_tiyn: Amount,
    pub max_fiat_tiyn: Amount,
    pub registered_at_unix_ms: u64,
    pub valid_until_unix_ms: u64,
    pub funded_by: Option<String>,
    /// The sender of the first contract of the chain: whom every use is reported to.
    pub initiator: Party,
    pub transferred_tiyn: Amount,
    pub withdrawn_tiyn: Amount,
    /// The oracle's signature over the registration.
    pub oracle_signature: Signature,
    #[serde(skip)]
    pub uses: Vec<ContractUse>,
}

impl Contract {
    /// The contract without its uses: cloning it costs the same however many uses it has.
    pub fn summary(&self) -> Contract {
        Contract {
            number: self.number.clone(),
            hash: self.hash,
            registered_by: self.registered_by.clone(),
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            max_transfer_tiyn: self.max_transfer_tiyn,
            max_fiat_tiyn: self.max_fiat_tiyn,
            registered_at_unix_ms: self.registered_at_unix_ms,
            valid_until_unix_ms: self.valid_until_unix_ms,
            funded_by: self.funded_by.clone(),
            initiator: self.initiator.clone(),
            transferred_tiyn: self.transferred_tiyn,
            withdrawn_tiyn: self.withdrawn_tiyn,
            oracle_signature: self.oracle_signature,
            uses: Vec::new(),
        }
    }
}

/// What a use of a contract did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UseKind {
    /// Marked DT paid to the recipient under the contract.
    Transfer,
    /// Marked DT of the contract converted to bank money for the recipient.
    Withdrawal,
}

/// The signed part of a use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractUseBody {
    pub contract: String,
    pub seq: u32,
    pub at_unix_ms: u64,
    pub kind: UseKind,
    pub amount_tiyn: Amount,
    pub tx_id: TxId,
}

/// One use of a contract, signed by the oracle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractUse {
    pub body: ContractUseBody,
    pub oracle_signature: Signature,
}

/// A planned change of one contract.
#[derive(Clone, Debug)]
pub struct ContractChange {
    pub contract: Contract,
    pub uses: Vec<ContractUse>,
}

impl ContractChange {
    pub fn writes(&self, batch: &mut WriteBatch) -> Result<()> {
        batch.put_value(CONTRACTS_TABLE, self.contract.number.as_bytes(), &self.contract)?;
        for u in &self.uses {
            let mut key = self.contract.number.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&u.body.seq.to_be_bytes());
            batch.put_value(USES_TABLE, key, u)?;
        }
        Ok(())
    }
}

/// The hash DT paid under contract `number` names.
pub fn contract_hash(number: &str) -> Hash32 {
    marking_hash(&format!("contract/{number}"))
}

fn digest(value: &impl Serialize, domain: &[u8]) -> Hash32 {
    hash_parts(domain, &[&crate::json_of(value)])
}

pub(crate) fn load(oracle: &mut Oracle, store: &Store) -> Result<()> {
    for (_, contract) in store.scan_values::<Contract>(CONTRACTS_TABLE)? {
        oracle.contracts.insert(contract.number.clone(), contract);
    }
    for (_, u) in store.scan_values::<ContractUse>(USES_TABLE)? {
        let contract = oracle
            .contracts
            .get_mut(&u.body.contract)
            .ok_or_else(|| crate::unknown_row(USES_TABLE, "a use of contract", &u.body.contract))?;
        contract.uses.push(u);
    }
    Ok(())
}

impl Oracle {
    pub fn contract(&self, number: &str) -> Result<&Contract> {
        self.contracts
            .get(number)
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no contract {number} is registered")))
    }

    pub fn contracts(&self) -> impl DoubleEndedIterator<Item = &Contract> {
        self.contracts.values()
    }

    /// The smart-contract portal registers a contract.
    pub fn plan_contract(&self, provider: &Provider, spec: ContractSpec, now_ms: u64) -> Result<ContractChange> {
        provider_is(provider, ProviderKind::ContractPortal)?;
        let number = spec.number.trim();
        ensure!(
            !number.is_empty()
                && number.len() <= CONTRACT_NUMBER_LEN_MAX
                && number.bytes().all(|b| b.is_ascii_graphic()),
            MalformedInput,
            "a contract number has 1 to {CONTRACT_NUMBER_LEN_MAX} visible characters"
        );
        ensure!(!self.contracts.contains_key(number), Conflict, "contract {number} is registered already");
        ensure!(spec.sender.address != spec.recipient.address, MalformedInput, "sender and recipient are the same");
        ensure!(!spec.max_transfer_tiyn.is_zero(), MalformedInput, "the transfer limit must be positive");
        ensure!(
            spec.max_fiat_tiyn <= spec.max_transfer_tiyn,
            MalformedInput,
            "the withdrawal limit cannot exceed the transfer limit"
        );
        ensure!(spec.valid_until_unix_ms > now_ms, MalformedInput, "the contract must end in the future");
        let initiator = match &spec.funded_by {
            None => spec.sender.clone(),
            Some(parent) => {
                let parent = self.contract(parent)?;
                ensure!(
                    parent.recipient.address == spec.sender.address,
                    Forbidden,
                    "contract {} pays {}, not this contract's sender {}",
                    parent.number,
                    parent.recipient.client_id,
                    spec.sender.client_id
                );
                ensure!(
                    self.chain_length(parent)? < CONTRACT_CHAIN_MAX,
                    LimitExceeded,
                    "contracts chain at most {CONTRACT_CHAIN_MAX} deep"
                );
                parent.initiator.clone()
            }
        };
        let terms = (
            number,
            &spec.sender,
            &spec.recipient,
            spec.max_transfer_tiyn,
            spec.max_fiat_tiyn,
            now_ms,
            spec.valid_until_unix_ms,
            &spec.funded_by,
        );
        let oracle_signature = self.key.sign(&digest(&terms, b"dtenge/oracle/contract/v1").0);
        let contract = Contract {
            number: number.to_string(),
            hash: contract_hash(number),
            registered_by: provider.id.clone(),
            sender: spec.sender,
            recipient: spec.recipient,
            max_transfer_tiyn: spec.max_transfer_tiyn,
            max_fiat_tiyn: spec.max_fiat_tiyn,
            registered_at_unix_ms: now_ms,
            valid_until_unix_ms: spec.valid_until_unix_ms,
            funded_by: spec.funded_by,
            initiator,
            transferred_tiyn: Amount::ZERO,
            withdrawn_tiyn: Amount::ZERO,
            oracle_signature,
            uses: Vec::new(),
        };
        Ok(ContractChange { contract, uses: Vec::new() })
    }

    fn chain_length(&self, contract: &Contract) -> Result<usize> {
        let mut length = 1;
        let mut current = contract;
        while let Some(parent) = &current.funded_by {
            // Registration refuses a chain of more (and a parent must exist before its child,
            // so there is no cycle): a longer chain is a programmer error.
            assert!(length <= CONTRACT_CHAIN_MAX, "contract chain longer than {CONTRACT_CHAIN_MAX}");
            current = self.contract(parent)?;
            length += 1;
        }
        Ok(length)
    }

    /// A contract that can be used now for a positive `amount`.
    fn usable(&self, number: &str, amount: Amount, now_ms: u64) -> Result<&Contract> {
        let contract = self.contract(number)?;
        ensure!(
            now_ms < contract.valid_until_unix_ms,
            ContractExpired,
            "contract {number} ended at {} ms",
            contract.valid_until_unix_ms
        );
        ensure!(contract.uses.len() < USES_PER_CONTRACT_MAX, LimitExceeded, "contract {number} is used up");
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        Ok(contract)
    }

    /// Pay `amount` under contract `number`: the sender's standard DT (first contract of a
    /// chain) or the DT it received under the funding contract, arriving marked with this one.
    pub fn plan_contract_payment(
        &self,
        number: &str,
        payer: &Party,
        amount: Amount,
        now_ms: u64,
        issuer: Address,
    ) -> Result<SpendPlan> {
        let contract = self.usable(number, amount, now_ms)?;
        ensure!(
            payer.address == contract.sender.address,
            Forbidden,
            "contract {number} is paid by {}, not {}",
            contract.sender.client_id,
            payer.client_id
        );
        let after = contract.transferred_tiyn.checked_add(amount)?;
        ensure!(
            after <= contract.max_transfer_tiyn,
            LimitExceeded,
            "contract {number} allows {} in marked DT; {} is transferred already",
            contract.max_transfer_tiyn,
            contract.transferred_tiyn
        );
        let spent = match &contract.funded_by {
            None => Policy::Standard,
            Some(parent) => Policy::Marked { marking: self.contract(parent)?.hash, level: 1 },
        };
        let received = Policy::Marked { marking: contract.hash, level: 1 };
        Ok(SpendPlan {
            payer: payer.clone(),
            parts: vec![(spent, amount)],
            outputs: vec![Output { amount_tiyn: amount, owner: contract.recipient.address, issuer, policy: received }],
        })
    }

    /// Convert `amount` of DT received under contract `number` to bank money: the marked DT
    /// goes to `bank` (the recipient's bank's own account) as standard DT, within the
    /// contract's withdrawal limit.
    pub fn plan_contract_withdrawal(
        &self,
        number: &str,
        holder: &Party,
        bank: &Party,
        amount: Amount,
        now_ms: u64,
        issuer: Address,
    ) -> Result<SpendPlan> {
        let contract = self.usable(number, amount, now_ms)?;
        ensure!(
            holder.address == contract.recipient.address,
            Forbidden,
            "DT of contract {number} belongs to {}, not {}",
            contract.recipient.client_id,
            holder.client_id
        );
        // Both parties come from the same node of the network, not from the request.
        assert_eq!(bank.bank, holder.bank, "the withdrawal goes to the holder's own bank");
        let after = contract.withdrawn_tiyn.checked_add(amount)?;
        ensure!(
            after <= contract.max_fiat_tiyn,
            LimitExceeded,
            "contract {number} allows {} to be withdrawn to bank money; {} is withdrawn already",
            contract.max_fiat_tiyn,
            contract.withdrawn_tiyn
        );
        Ok(SpendPlan {
            payer: holder.clone(),
            parts: vec![(Policy::Marked { marking: contract.hash, level: 1 }, amount)],
            outputs: vec![Output::standard(amount, bank.address, issuer)],
        })
    }

    /// Confirm a payment or withdrawal the node built for `plan`; the limit is consumed.
    pub fn confirm_contract_use(
        &self,
        number: &str,
        kind: UseKind,
        plan: &SpendPlan,
        tx: &Transaction,
        now_ms: u64,
    ) -> Result<(ContractChange, Attestation)> {
        plan.check(tx)?;
        let contract = self.contract(number)?;
        let amount = plan.outputs.iter().map(|o| o.amount_tiyn).try_fold(Amount::ZERO, |a, b| a.checked_add(b))?;
        let mut changed = contract.summary();
        match kind {
            UseKind::Transfer => changed.transferred_tiyn = changed.transferred_tiyn.checked_add(amount)?,
            UseKind::Withdrawal => changed.withdrawn_tiyn = changed.withdrawn_tiyn.checked_add(amount)?,
        }
        let body = ContractUseBody {
            contract: number.to_string(),
            seq: contract.uses.len() as u32,
            at_unix_ms: now_ms,
            kind,
            amount_tiyn: amount,
            tx_id: tx.id(),
        };
        let oracle_signature = self.key.sign(&digest(&body, b"dtenge/oracle/contract-use/v1").0);
        let change = ContractChange { contract: changed, uses: vec![ContractUse { body, oracle_signature }] };
        Ok((change, self.attest(tx)))
    }

    pub fn apply_contract(&mut self, change: ContractChange) {
        let ContractChange { mut contract, uses } = change;
        contract.uses = self.contracts.remove(&contract.number).map(|c| c.uses).unwrap_or_default();
        contract.uses.extend(uses);
        self.contracts.insert(contract.number.clone(), contract);
    }
}
