//! A programmed payment as the oracle decides it, and the check of the transaction a node
//! built for it. Marked transfers, e-invoice payments and VAT payments all take this shape:
//! the payer spends given amounts of given kinds of token and pays exactly the planned
//! outputs; change of each kind goes back to the payer with the same policy.

use dtenge_core::money::Amount;
use dtenge_core::party::Party;
use dtenge_core::token::{Output, Policy};
use dtenge_core::tx::{Command, Transaction};
use dtenge_core::{ensure, Result};

/// What the oracle will confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendPlan {
    pub payer: Party,
    /// How much of each kind of the payer's tokens is spent (distinct policies).
    pub parts: Vec<(Policy, Amount)>,
    /// What the transaction pays, in this order, before the change.
    pub outputs: Vec<Output>,
}

impl SpendPlan {
    /// Does `tx` do exactly this plan? It spends only the payer's tokens of the planned
    /// kinds, its outputs start with the planned ones, the rest is change to the payer of
    /// the planned kinds, and for each kind what it spends minus its change is the planned
    /// amount.
    pub fn check(&self, tx: &Transaction) -> Result<()> {
        ensure!(tx.body.command == Command::Transfer, Forbidden, "a programmed payment is a transfer");
        let planned = self.outputs.len();
        ensure!(
            tx.body.outputs.len() >= planned && tx.body.outputs[..planned] == self.outputs[..],
            Forbidden,
            "the transaction's outputs differ from the oracle's decision"
        );
        let mut net: Vec<(Policy, i128)> = self.parts.iter().map(|(p, _)| (p.clone(), 0)).collect();
        let slot = |net: &mut Vec<(Policy, i128)>, policy: &Policy| -> Result<usize> {
            let index = net.iter().position(|(p, _)| p == policy);
            ensure!(index.is_some(), Forbidden, "the transaction moves a kind of token the decision does not name");
            Ok(index.unwrap_or(0))
        };
        for input in &tx.body.inputs {
            ensure!(input.output.owner == self.payer.address, Forbidden, "the transaction spends another's token");
            let i = slot(&mut net, &input.output.policy)?;
            net[i].1 += i128::from(input.output.amount_tiyn.tiyn());
        }
        for change in &tx.body.outputs[planned..] {
            ensure!(change.owner == self.payer.address, Forbidden, "change goes to someone other than the payer");
            let i = slot(&mut net, &change.policy)?;
            net[i].1 -= i128::from(change.amount_tiyn.tiyn());
        }
        for ((policy, amount), (_, spent)) in self.parts.iter().zip(&net) {
            ensure!(
                *spent == i128::from(amount.tiyn()),
                Forbidden,
                "the transaction spends {spent} tiyn of {policy:?} tokens, the decision {amount}"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::{Hash32, SecretKey};
    use dtenge_core::token::{Input, TxId};
    use dtenge_core::tx::TxBody;

    fn tiyn(t: u64) -> Amount {
        Amount::from_tiyn(t).unwrap()
    }

    #[test]
    fn only_the_planned_spend_passes() {
        let issuer = SecretKey::from_seed([1; 32]).address();
        let payer = Party { bank: "b".into(), client_id: "p".into(), address: SecretKey::from_seed([2; 32]).address() };
        let seller = SecretKey::from_seed([3; 32]).address();
        let plan = SpendPlan {
            payer: payer.clone(),
            parts: vec![(Policy::Vat, tiyn(60)), (Policy::Standard, tiyn(500))],
            outputs: vec![
                Output::standard(tiyn(500), seller, issuer),
                Output { amount_tiyn: tiyn(60), owner: seller, issuer, policy: Policy::Vat },
            ],
        };
        let input = |amount: u64, policy: Policy| Input {
            tx_id: TxId(Hash32([amount as u8; 32])),
            index: 0,
            output: Output { amount_tiyn: tiyn(amount), owner: payer.address, issuer, policy },
        };
        let mut outputs = plan.outputs.clone();
        outputs.push(Output::standard(tiyn(500), payer.address, issuer));
        outputs.push(Output { amount_tiyn: tiyn(60), owner: payer.address, issuer, policy: Policy::Vat });
        let body = TxBody {
            command: Command::Transfer,
            inputs: vec![input(1_000, Policy::Standard), input(120, Policy::Vat)],
            outputs,
            nonce: 1,
        };
        plan.check(&Transaction::new(body.clone())).unwrap();

        // VAT change returned as standard: the kinds no longer balance.
        let mut wrong = body.clone();
        wrong.outputs[3].policy = Policy::Standard;
        assert!(plan.check(&Transaction::new(wrong)).is_err());
        // Change to a stranger.
        let mut stolen = body.clone();
        stolen.outputs[2].owner = seller;
        assert!(plan.check(&Transaction::new(stolen)).is_err());
        // A planned output altered.
        let mut altered = body;
        altered.outputs[0].amount_tiyn = tiyn(499);
        altered.outputs[2].amount_tiyn = tiyn(501);
        assert!(plan.check(&Transaction::new(altered)).is_err());
    }
}
