//! The network's operations, one module per area.

pub mod accounts;
pub mod cards;
pub mod checkpoint;
pub mod conversion;
pub mod holding;
pub mod operator;
pub mod payments;
pub mod programmed;
pub mod vouchers;
