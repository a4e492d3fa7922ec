//! Coin selection: which of an owner's tokens pay an amount, and how much change comes back.

use crate::money::Amount;
use crate::tx::TX_INPUTS_MAX;
use crate::{bail, ensure, Result};

/// The chosen tokens (indices into the candidates) and the change owed to the payer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub chosen: Vec<usize>,
    pub total: Amount,
    pub change: Amount,
}

/// Choose tokens worth at least `target` from `candidates`.
///
/// Prefers one token: an exact match, else the smallest token that covers the amount (a 5,000
/// token paying 150 gives 150 and 4,850 change). Otherwise takes the largest tokens first, so
/// that as few inputs as possible are spent. Fails with `INSUFFICIENT_FUNDS` when the
/// candidates do not cover the target and `LIMIT_EXCEEDED` when it would take more than
/// [`TX_INPUTS_MAX`] inputs.
pub fn select(candidates: &[Amount], target: Amount) -> Result<Selection> {
    ensure!(!target.is_zero(), MalformedInput, "the amount must be positive");
    let available = Amount::sum(candidates.iter().copied())?;
    ensure!(available >= target, InsufficientFunds, "spendable balance {available} is less than {target}");

    let mut best_single: Option<usize> = None;
    for (i, &value) in candidates.iter().enumerate() {
        if value == target {
            return finish(vec![i], candidates, target);
        }
        if value > target && best_single.is_none_or(|b| value < candidates[b]) {
            best_single = Some(i);
        }
    }
    if let Some(i) = best_single {
        return finish(vec![i], candidates, target);
    }

    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[b].cmp(&candidates[a]));
    let mut chosen = Vec::new();
    let mut total = Amount::ZERO;
    for i in order {
        if total >= target {
            break;
        }
        if chosen.len() == TX_INPUTS_MAX {
            bail!(LimitExceeded, "paying {target} needs more than {TX_INPUTS_MAX} tokens; consolidate first");
        }
        chosen.push(i);
        total = total.checked_add(candidates[i])?;
    }
    finish(chosen, candidates, target)
}

fn finish(chosen: Vec<usize>, candidates: &[Amount], target: Amount) -> Result<Selection> {
    let total = Amount::sum(chosen.iter().map(|&i| candidates[i]))?;
    let change = total.checked_sub(target)?;
    debug_assert!(total >= target);
    Ok(Selection { chosen, total, change })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use proptest::prelude::*;

    fn a(t: u64) -> Amount {
        Amount::from_tiyn(t).unwrap()
    }

    #[test]
    fn bus_fare_from_a_five_thousand_token() {
        let s = select(&[a(500_000)], a(15_000)).unwrap();
        assert_eq!(s.chosen, vec![0]);
        assert_eq!(s.change, a(485_000));
    }

    #[test]
    fn prefers_exact_then_smallest_covering() {
        assert_eq!(select(&[a(10), a(5), a(7)], a(5)).unwrap().chosen, vec![1]);
        assert_eq!(select(&[a(10), a(8), a(3)], a(7)).unwrap().chosen, vec![1]);
        let s = select(&[a(3), a(4), a(2)], a(6)).unwrap();
        assert_eq!(s.chosen, vec![1, 0]);
        assert_eq!(s.change, a(1));
    }

    #[test]
    fn errors() {
        assert_eq!(select(&[a(3)], a(4)).unwrap_err().code, ErrorCode::InsufficientFunds);
        assert_eq!(select(&[a(3)], Amount::ZERO).unwrap_err().code, ErrorCode::MalformedInput);
        let dust = vec![a(1); TX_INPUTS_MAX + 1];
        assert_eq!(select(&dust, a(TX_INPUTS_MAX as u64 + 1)).unwrap_err().code, ErrorCode::LimitExceeded);
    }

    proptest! {
        #[test]
        fn selection_covers_target_and_change_balances(
            values in proptest::collection::vec(1u64..1_000_000, 1..50),
            target in 1u64..5_000_000,
        ) {
            let candidates: Vec<Amount> = values.iter().map(|&v| a(v)).collect();
            match select(&candidates, a(target)) {
                Ok(s) => {
                    let total: u64 = s.chosen.iter().map(|&i| values[i]).sum();
                    prop_assert_eq!(total, s.total.tiyn());
                    prop_assert_eq!(total - target, s.change.tiyn());
                    let mut uniq = s.chosen.clone();
                    uniq.sort();
                    uniq.dedup();
                    prop_assert_eq!(uniq.len(), s.chosen.len());
                }
                Err(e) => {
                    prop_assert_eq!(e.code, ErrorCode::InsufficientFunds);
                    prop_assert!(values.iter().sum::<u64>() < target);
                }
            }
        }
    }
}
