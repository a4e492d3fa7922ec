//! What the OpenAPI document (`/openapi.json`) says the API speaks: one schema type per
//! request and answer the handlers exchange, described here in the gateway so the domain
//! crates need no OpenAPI library (issue 17: faces call roles through their clients).
//!
//! These types are descriptions only: the handlers still take and give the request and
//! answer types themselves ([`crate::types`] and the domain crates' types), so the JSON on the
//! wire is what those types' `serde` derives make of them. Each description keeps its type's
//! name, its doc comments, its fields in their order and its `serde` attributes, which is
//! what utoipa reads; the test below stops compiling when a described type gains, loses or
//! renames a field or a variant that its description does not.

mod abs;
mod core_types;
mod node;
mod oracle;
mod types;

pub use abs::*;
pub use core_types::*;
pub use node::*;
pub use oracle::*;
pub use types::*;

#[cfg(test)]
mod tests {
    /// Each closure destructures a described type without `..` (a struct's every field, an
    /// enum's every variant with its fields): a field or variant added, removed or renamed in
    /// [`crate::types`] or a domain crate fails this test's build until its description here
    /// follows.
    #[test]
    fn every_description_has_the_fields_and_variants_of_its_domain_type() {
        let _ = |x: crate::types::OpenAccount| {
            let crate::types::OpenAccount { kind: _, client_id: _, name: _, phone: _, public_key: _ } = x;
        };
        let _ = |x: crate::types::AccountView| {
            let crate::types::AccountView { account: _, balance: _, cards: _, bank_name: _ } = x;
        };
        let _ = |x: crate::types::Payee| {
            let crate::types::Payee { phone: _, client_id: _, bank: _, address: _ } = x;
        };
        let _ = |x: crate::types::TransferRequest| {
            let crate::types::TransferRequest { from: _, to: _, amount_tiyn: _, reference: _ } = x;
        };
        let _ = |x: crate::types::Receipt| {
            let crate::types::Receipt {
                tx_id: _,
                purpose: _,
                amount_tiyn: _,
                from: _,
                to: _,
                at_unix_ms: _,
                abs_posting: _,
            } = x;
        };
        let _ = |x: crate::types::ConsolidationRequest| {
            let crate::types::ConsolidationRequest {} = x;
        };
        let _ = |x: crate::types::Consolidation| {
            let crate::types::Consolidation { tx_id: _, spendable_tokens: _, inputs_per_payment_max: _ } = x;
        };
        let _ = |x: crate::types::AmountRequest| {
            let crate::types::AmountRequest { amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::HistoryLine| {
            let crate::types::HistoryLine {
                tx_id: _,
                at_unix_ms: _,
                purpose: _,
                direction: _,
                amount_tiyn: _,
                counterparty_address: _,
                counterparty_bank: _,
                counterparty_name: _,
                reference: _,
            } = x;
        };
        let _ = |x: crate::types::AccountPage| {
            let crate::types::AccountPage { accounts: _, next_after: _ } = x;
        };
        let _ = |x: crate::types::HistoryPage| {
            let crate::types::HistoryPage { lines: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::RegistryLine| {
            let crate::types::RegistryLine { phone: _, client_id: _, bank: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::TransactionBatch| {
            let crate::types::TransactionBatch { transactions: _ } = x;
        };
        let _ = |x: crate::types::TransactionBatchReport| {
            let crate::types::TransactionBatchReport { results: _ } = x;
        };
        let _ = |x: crate::types::BatchResult| {
            let crate::types::BatchResult { receipt: _, error: _ } = x;
        };
        let _ = |x: crate::types::RegistryRequest| {
            let crate::types::RegistryRequest { from: _, reference: _, lines: _ } = x;
        };
        let _ = |x: crate::types::RegistryLineResult| {
            let crate::types::RegistryLineResult {
                line: _,
                paid: _,
                amount_tiyn: _,
                recipient: _,
                error_code: _,
                error: _,
            } = x;
        };
        let _ = |x: crate::types::RegistryReport| {
            let crate::types::RegistryReport {
                tx_id: _,
                lines_total: _,
                lines_paid: _,
                lines_rejected: _,
                amount_paid_tiyn: _,
                results: _,
            } = x;
        };
        let _ = |x: crate::types::BlockRequest| {
            let crate::types::BlockRequest { reason: _ } = x;
        };
        let _ = |x: crate::types::NodeView| {
            let crate::types::NodeView {
                id: _,
                name: _,
                kind: _,
                blocked: _,
                block_reason: _,
                accounts: _,
                dt_held_tiyn: _,
                emitted_tiyn: _,
                redeemed_tiyn: _,
                correspondent_tiyn: _,
            } = x;
        };
        let _ = |x: crate::types::CheckpointPart| {
            let crate::types::CheckpointPart { generation: _, tokens: _, bytes: _, log_rows_deleted: _ } = x;
        };
        let _ = |x: crate::types::CheckpointView| {
            let crate::types::CheckpointView { notary: _, nodes: _ } = x;
        };
        let _ = |x: crate::types::Monitoring| {
            let crate::types::Monitoring {
                emitted_tiyn: _,
                redeemed_tiyn: _,
                circulation_tiyn: _,
                dt_liability_tiyn: _,
                unspent_tokens: _,
                nodes: _,
                at_unix_ms: _,
            } = x;
        };
        let _ = |x: crate::types::Reconciliation| {
            let crate::types::Reconciliation {
                ok: _,
                circulation_by_nbk_tiyn: _,
                circulation_by_nodes_tiyn: _,
                dt_liability_tiyn: _,
                notary_unspent: _,
                node_tokens: _,
                node_tokens_not_unspent: _,
                problems: _,
                at_unix_ms: _,
            } = x;
        };
        let _ = |x: crate::types::NbkOperation| {
            let crate::types::NbkOperation {
                seq: _,
                kind: _,
                node: _,
                amount_tiyn: _,
                tx_id: _,
                abs_seq: _,
                at_unix_ms: _,
            } = x;
        };
        let _ = |x: crate::types::DayRequest| {
            let crate::types::DayRequest { working: _ } = x;
        };
        let _ = |x: crate::types::DayView| {
            let crate::types::DayView { date: _, working: _, overridden: _ } = x;
        };
        let _ = |x: crate::types::LinkCard| {
            let crate::types::LinkCard { client_id: _, pan: _ } = x;
        };
        let _ = |x: crate::types::CardMode| match x {
            crate::types::CardMode::Dt => {}
            crate::types::CardMode::ConvertToFiat => {}
        };
        let _ = |x: crate::types::CardPurchaseRequest| {
            let crate::types::CardPurchaseRequest { pan: _, merchant_bank: _, merchant_id: _, amount_tiyn: _, mode: _ } =
                x;
        };
        let _ = |x: crate::types::Purchase| {
            let crate::types::Purchase {
                id: _,
                card: _,
                buyer: _,
                merchant: _,
                amount_tiyn: _,
                refunded_tiyn: _,
                mode: _,
                tx_id: _,
                refund_tx_ids: _,
                at_unix_ms: _,
            } = x;
        };
        let _ = |x: crate::types::VoucherProgramRequest| {
            let crate::types::VoucherProgramRequest {
                integrator: _,
                payer_bank: _,
                payer_id: _,
                payee_bank: _,
                payee_id: _,
                amount_per_event_tiyn: _,
            } = x;
        };
        let _ = |x: crate::types::VoucherProgram| {
            let crate::types::VoucherProgram {
                id: _,
                integrator: _,
                payer: _,
                payee: _,
                amount_per_event_tiyn: _,
                created_at_unix_ms: _,
            } = x;
        };
        let _ = |x: crate::types::VoucherEvent| {
            let crate::types::VoucherEvent { integrator: _, event_id: _, card: _ } = x;
        };
        let _ = |x: crate::types::PhoneLookup| {
            let crate::types::PhoneLookup { phone: _, banks: _, display_name: _ } = x;
        };
        let _ = |x: crate::types::AtmWithdrawal| {
            let crate::types::AtmWithdrawal { pan: _, atm_bank: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::ProviderRequest| {
            let crate::types::ProviderRequest { id: _, name: _, kind: _ } = x;
        };
        let _ = |x: crate::types::ProviderCredentials| {
            let crate::types::ProviderCredentials { provider: _, token: _ } = x;
        };
        let _ = |x: crate::types::PartyRef| {
            let crate::types::PartyRef { bank: _, client_id: _ } = x;
        };
        let _ = |x: crate::types::ShareRequest| {
            let crate::types::ShareRequest { bank: _, client_id: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::EventRequest| {
            let crate::types::EventRequest {
                reference: _,
                kind: _,
                sender: _,
                payees: _,
                valid_for_ms: _,
                confirmed_by: _,
            } = x;
        };
        let _ = |x: crate::types::EventView| {
            let crate::types::EventView { event: _, records: _ } = x;
        };
        let _ = |x: crate::types::HoldRequest| {
            let crate::types::HoldRequest { event_id: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::HoldReceipt| {
            let crate::types::HoldReceipt { event: _, records: _, tx_id: _, repeated: _ } = x;
        };
        let _ = |x: crate::types::OccurrenceOutcome| match x {
            crate::types::OccurrenceOutcome::Occurred => {}
            crate::types::OccurrenceOutcome::Rejected => {}
        };
        let _ = |x: crate::types::OccurrenceRequest| {
            let crate::types::OccurrenceRequest { occurrence_id: _, outcome: _, payouts: _, reason: _ } = x;
        };
        let _ = |x: crate::types::EventPage| {
            let crate::types::EventPage { events: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::HoldView| {
            let crate::types::HoldView {
                role: _,
                event_id: _,
                reference: _,
                status: _,
                kind: _,
                held_tiyn: _,
                released_tiyn: _,
                returned_tiyn: _,
                share_tiyn: _,
                valid_until_unix_ms: _,
                expires_in_ms: _,
            } = x;
        };
        let _ = |x: crate::types::NotificationKind| match x {
            crate::types::NotificationKind::EventRegistered => {}
            crate::types::NotificationKind::FundsHeld => {}
            crate::types::NotificationKind::FundsReleased => {}
            crate::types::NotificationKind::FundsReturned => {}
            crate::types::NotificationKind::MarkedTransfer => {}
            crate::types::NotificationKind::InvoicePaid => {}
            crate::types::NotificationKind::ContractUse => {}
        };
        let _ = |x: crate::types::Notification| {
            let crate::types::Notification {
                seq: _,
                node: _,
                client_id: _,
                at_unix_ms: _,
                kind: _,
                subject_id: _,
                amount_tiyn: _,
                text: _,
                tx_id: _,
            } = x;
        };
        let _ = |x: crate::types::TokenPage| {
            let crate::types::TokenPage { tokens: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::HoldPage| {
            let crate::types::HoldPage { holds: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::OperationPage| {
            let crate::types::OperationPage { operations: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::VoucherProgramPage| {
            let crate::types::VoucherProgramPage { programs: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::ProviderPage| {
            let crate::types::ProviderPage { providers: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::VatPayerPage| {
            let crate::types::VatPayerPage { payers: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::VatPaymentPage| {
            let crate::types::VatPaymentPage { payments: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::NotificationPage| {
            let crate::types::NotificationPage { notifications: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::ClockAdvance| {
            let crate::types::ClockAdvance { advance_ms: _ } = x;
        };
        let _ = |x: crate::types::ClockView| {
            let crate::types::ClockView { now_unix_ms: _, expired_events: _ } = x;
        };
        let _ = |x: crate::types::LevelRequest| {
            let crate::types::LevelRequest { recipients: _, limit_tiyn: _ } = x;
        };
        let _ = |x: crate::types::MarkingRequest| {
            let crate::types::MarkingRequest { initiator: _, reference: _, levels: _ } = x;
        };
        let _ = |x: crate::types::MarkingView| {
            let crate::types::MarkingView { marking: _, moves: _ } = x;
        };
        let _ = |x: crate::types::MarkedTransferRequest| {
            let crate::types::MarkedTransferRequest { marking_id: _, from: _, to: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::MarkedReceipt| {
            let crate::types::MarkedReceipt { tx_id: _, marking: _, moved: _ } = x;
        };
        let _ = |x: crate::types::MarkingPage| {
            let crate::types::MarkingPage { markings: _, total: _, offset: _, limit: _ } = x;
        };
        let _ = |x: crate::types::InvoiceRequest| {
            let crate::types::InvoiceRequest { id: _, seller: _, buyer: _, net_tiyn: _, vat_tiyn: _ } = x;
        };
        let _ = |x: crate::types::InvoicePaymentRequest| {
            let crate::types::InvoicePaymentRequest { invoice_id: _, from: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::InvoiceReceipt| {
            let crate::types::InvoiceReceipt {
                tx_id: _,
                invoice: _,
                vat_from_vat_tokens_tiyn: _,
                vat_from_standard_tiyn: _,
            } = x;
        };
        let _ = |x: crate::types::VatPaymentRequest| {
            let crate::types::VatPaymentRequest { from: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::SplitLine| {
            let crate::types::SplitLine { to: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::SplitPaymentRequest| {
            let crate::types::SplitPaymentRequest { from: _, lines: _, reference: _ } = x;
        };
        let _ = |x: crate::types::SplitReceipt| {
            let crate::types::SplitReceipt { tx_id: _, from: _, total_tiyn: _, lines: _, at_unix_ms: _ } = x;
        };
        let _ = |x: crate::types::ContractRequest| {
            let crate::types::ContractRequest {
                number: _,
                sender: _,
                recipient: _,
                max_transfer_tiyn: _,
                max_fiat_tiyn: _,
                valid_for_ms: _,
                funded_by: _,
            } = x;
        };
        let _ = |x: crate::types::ContractView| {
            let crate::types::ContractView { contract: _, uses: _ } = x;
        };
        let _ = |x: crate::types::ContractPaymentRequest| {
            let crate::types::ContractPaymentRequest { contract: _, from: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::ContractWithdrawalRequest| {
            let crate::types::ContractWithdrawalRequest { contract: _, client_id: _, amount_tiyn: _ } = x;
        };
        let _ = |x: crate::types::ContractReceipt| {
            let crate::types::ContractReceipt { tx_id: _, contract: _, used: _ } = x;
        };
        let _ = |x: dtenge_oracle::ProviderKind| match x {
            dtenge_oracle::ProviderKind::VehicleRegistry => {}
            dtenge_oracle::ProviderKind::AnimalRegistry => {}
            dtenge_oracle::ProviderKind::SubsidySystem => {}
            dtenge_oracle::ProviderKind::TransitValidators => {}
            dtenge_oracle::ProviderKind::ContractPortal => {}
            dtenge_oracle::ProviderKind::TaxAuthority => {}
        };
        let _ = |x: dtenge_oracle::ProviderView| {
            let dtenge_oracle::ProviderView { id: _, name: _, kind: _, registered_at_unix_ms: _ } = x;
        };
        let _ = |x: dtenge_oracle::EventKind| match x {
            dtenge_oracle::EventKind::Single => {}
            dtenge_oracle::EventKind::Infinite => {}
        };
        let _ = |x: dtenge_oracle::Share| {
            let dtenge_oracle::Share { party: _, amount_tiyn: _ } = x;
        };
        let _ = |x: dtenge_oracle::EventTerms| {
            let dtenge_oracle::EventTerms {
                provider: _,
                confirmed_by: _,
                reference: _,
                kind: _,
                sender: _,
                payees: _,
                registered_at_unix_ms: _,
                valid_until_unix_ms: _,
            } = x;
        };
        let _ = |x: dtenge_oracle::EventStatus| match x {
            dtenge_oracle::EventStatus::Registered => {}
            dtenge_oracle::EventStatus::Held => {}
            dtenge_oracle::EventStatus::Completed => {}
            dtenge_oracle::EventStatus::Rejected => {}
            dtenge_oracle::EventStatus::Expired => {}
        };
        let _ = |x: dtenge_oracle::Action| match x {
            dtenge_oracle::Action::Registered => {}
            dtenge_oracle::Action::Held => {}
            dtenge_oracle::Action::Released => {}
            dtenge_oracle::Action::Returned => {}
            dtenge_oracle::Action::Rejected => {}
            dtenge_oracle::Action::Expired => {}
        };
        let _ = |x: dtenge_oracle::RecordBody| {
            let dtenge_oracle::RecordBody {
                event_id: _,
                seq: _,
                at_unix_ms: _,
                action: _,
                amount_tiyn: _,
                payouts: _,
                tx_id: _,
                occurrence_id: _,
                reason: _,
                by: _,
                terms_hash: _,
            } = x;
        };
        let _ = |x: dtenge_oracle::Record| {
            let dtenge_oracle::Record { body: _, oracle_signature: _ } = x;
        };
        let _ = |x: dtenge_oracle::Event| {
            let dtenge_oracle::Event {
                id: _,
                hash: _,
                terms: _,
                status: _,
                held_tiyn: _,
                released_tiyn: _,
                returned_tiyn: _,
                occurrences: _,
                reason: _,
                records: _,
            } = x;
        };
        let _ = |x: dtenge_oracle::marking::Level| {
            let dtenge_oracle::marking::Level { recipients: _, limit_tiyn: _ } = x;
        };
        let _ = |x: dtenge_oracle::marking::Marking| {
            let dtenge_oracle::marking::Marking {
                id: _,
                hash: _,
                initiator: _,
                reference: _,
                levels: _,
                created_at_unix_ms: _,
                registered_by: _,
                moved_tiyn: _,
                oracle_signature: _,
                moves: _,
            } = x;
        };
        let _ = |x: dtenge_oracle::marking::MoveBody| {
            let dtenge_oracle::marking::MoveBody {
                marking_id: _,
                seq: _,
                at_unix_ms: _,
                tx_id: _,
                from: _,
                to: _,
                from_level: _,
                to_level: _,
                amount_tiyn: _,
                unmarked: _,
            } = x;
        };
        let _ = |x: dtenge_oracle::marking::Move| {
            let dtenge_oracle::marking::Move { body: _, oracle_signature: _ } = x;
        };
        let _ = |x: dtenge_oracle::vat::InvoiceStatus| match x {
            dtenge_oracle::vat::InvoiceStatus::Registered => {}
            dtenge_oracle::vat::InvoiceStatus::Paid => {}
        };
        let _ = |x: dtenge_oracle::vat::Invoice| {
            let dtenge_oracle::vat::Invoice {
                id: _,
                seller: _,
                buyer: _,
                net_tiyn: _,
                vat_tiyn: _,
                registered_by: _,
                registered_at_unix_ms: _,
                status: _,
                paid_tx: _,
                paid_at_unix_ms: _,
                oracle_signature: _,
                payment_signature: _,
            } = x;
        };
        let _ = |x: dtenge_oracle::vat::VatPayment| {
            let dtenge_oracle::vat::VatPayment {
                seq: _,
                payer: _,
                amount_tiyn: _,
                tx_id: _,
                at_unix_ms: _,
                oracle_signature: _,
            } = x;
        };
        let _ = |x: dtenge_oracle::contract::Contract| {
            let dtenge_oracle::contract::Contract {
                number: _,
                hash: _,
                registered_by: _,
                sender: _,
                recipient: _,
                max_transfer_tiyn: _,
                max_fiat_tiyn: _,
                registered_at_unix_ms: _,
                valid_until_unix_ms: _,
                funded_by: _,
                initiator: _,
                transferred_tiyn: _,
                withdrawn_tiyn: _,
                oracle_signature: _,
                uses: _,
            } = x;
        };
        let _ = |x: dtenge_oracle::contract::UseKind| match x {
            dtenge_oracle::contract::UseKind::Transfer => {}
            dtenge_oracle::contract::UseKind::Withdrawal => {}
        };
        let _ = |x: dtenge_oracle::contract::ContractUseBody| {
            let dtenge_oracle::contract::ContractUseBody {
                contract: _,
                seq: _,
                at_unix_ms: _,
                kind: _,
                amount_tiyn: _,
                tx_id: _,
            } = x;
        };
        let _ = |x: dtenge_oracle::contract::ContractUse| {
            let dtenge_oracle::contract::ContractUse { body: _, oracle_signature: _ } = x;
        };
        let _ = |x: dtenge_node::NodeKind| match x {
            dtenge_node::NodeKind::CentralBank => {}
            dtenge_node::NodeKind::Bank => {}
            dtenge_node::NodeKind::Treasury => {}
        };
        let _ = |x: dtenge_node::ClientKind| match x {
            dtenge_node::ClientKind::Individual => {}
            dtenge_node::ClientKind::LegalEntity => {}
            dtenge_node::ClientKind::GovernmentAgency => {}
            dtenge_node::ClientKind::Institution => {}
        };
        let _ = |x: dtenge_node::Account| {
            let dtenge_node::Account {
                client_id: _,
                node_id: _,
                kind: _,
                name: _,
                phone: _,
                address: _,
                opened_at_unix_ms: _,
            } = x;
        };
        let _ = |x: dtenge_node::Purpose| match x {
            dtenge_node::Purpose::Payment => {}
            dtenge_node::Purpose::PhoneTransfer => {}
            dtenge_node::Purpose::Emission => {}
            dtenge_node::Purpose::Redemption => {}
            dtenge_node::Purpose::ConversionToDt => {}
            dtenge_node::Purpose::ConversionFromDt => {}
            dtenge_node::Purpose::RegistryDistribution => {}
            dtenge_node::Purpose::Voucher => {}
            dtenge_node::Purpose::CardPurchase => {}
            dtenge_node::Purpose::CardRefund => {}
            dtenge_node::Purpose::CashWithdrawal => {}
            dtenge_node::Purpose::Hold => {}
            dtenge_node::Purpose::HoldRelease => {}
            dtenge_node::Purpose::HoldReturn => {}
            dtenge_node::Purpose::MarkedTransfer => {}
            dtenge_node::Purpose::InvoicePayment => {}
            dtenge_node::Purpose::VatPayment => {}
            dtenge_node::Purpose::SplitPayment => {}
            dtenge_node::Purpose::ContractPayment => {}
        };
        let _ = |x: dtenge_node::Direction| match x {
            dtenge_node::Direction::Debit => {}
            dtenge_node::Direction::Credit => {}
            dtenge_node::Direction::Held => {}
            dtenge_node::Direction::Unheld => {}
        };
        let _ = |x: dtenge_node::Balance| {
            let dtenge_node::Balance {
                dt_tiyn: _,
                dt_reserved_tiyn: _,
                dt_held_tiyn: _,
                dt_marked_tiyn: _,
                dt_vat_tiyn: _,
                dt_spendable_tiyn: _,
                fiat_tiyn: _,
                tokens: _,
            } = x;
        };
        let _ = |x: dtenge_abs::PostingKind| match x {
            dtenge_abs::PostingKind::Emission => {}
            dtenge_abs::PostingKind::Redemption => {}
            dtenge_abs::PostingKind::ExternalCredit => {}
            dtenge_abs::PostingKind::InterbankSettlement => {}
        };
        let _ = |x: dtenge_abs::Posting| {
            let dtenge_abs::Posting {
                seq: _,
                kind: _,
                debit: _,
                credit: _,
                amount_tiyn: _,
                reference: _,
                at_unix_ms: _,
            } = x;
        };
        let _ = |x: dtenge_core::crypto::SigAlg| match x {
            dtenge_core::crypto::SigAlg::Ed25519 => {}
        };
        let _ = |x: dtenge_core::crypto::PublicKey| {
            let dtenge_core::crypto::PublicKey { alg: _, key: _ } = x;
        };
        let _ = |x: dtenge_core::crypto::Signature| {
            let dtenge_core::crypto::Signature { alg: _, sig: _ } = x;
        };
        let _ = |x: dtenge_core::error::ErrorCode| match x {
            dtenge_core::error::ErrorCode::MalformedInput => {}
            dtenge_core::error::ErrorCode::InsufficientFunds => {}
            dtenge_core::error::ErrorCode::DoubleSpend => {}
            dtenge_core::error::ErrorCode::UnknownAccount => {}
            dtenge_core::error::ErrorCode::DuplicateAccount => {}
            dtenge_core::error::ErrorCode::BankBlocked => {}
            dtenge_core::error::ErrorCode::InvalidSignature => {}
            dtenge_core::error::ErrorCode::LimitExceeded => {}
            dtenge_core::error::ErrorCode::ConservationViolated => {}
            dtenge_core::error::ErrorCode::Forbidden => {}
            dtenge_core::error::ErrorCode::NonWorkingDay => {}
            dtenge_core::error::ErrorCode::NotFound => {}
            // The description also lists METHOD_NOT_ALLOWED: the gateway's `HttpCode`, on the same wire.
            dtenge_core::error::ErrorCode::RequestInProgress => {}
            dtenge_core::error::ErrorCode::IdempotencyKeyReused => {}
            dtenge_core::error::ErrorCode::Conflict => {}
            dtenge_core::error::ErrorCode::StorageFailure => {}
            dtenge_core::error::ErrorCode::FundsHeld => {}
            dtenge_core::error::ErrorCode::OracleConfirmationRequired => {}
            dtenge_core::error::ErrorCode::FundsMarked => {}
            dtenge_core::error::ErrorCode::WrongLevel => {}
            dtenge_core::error::ErrorCode::InvoiceMismatch => {}
            dtenge_core::error::ErrorCode::EventExpired => {}
            dtenge_core::error::ErrorCode::ContractExpired => {}
            dtenge_core::error::ErrorCode::RecipientNotAllowed => {}
            dtenge_core::error::ErrorCode::Unauthorized => {}
            dtenge_core::error::ErrorCode::Internal => {}
            dtenge_core::error::ErrorCode::UnsupportedMediaType => {}
            dtenge_core::error::ErrorCode::RateLimited => {}
            dtenge_core::error::ErrorCode::FundsInFlight => {}
        };
        // Amount's field is private: its JSON is a number of tiyn (`serde(transparent)`).
        let _ = |x: dtenge_core::money::Amount| -> u64 { x.tiyn() };
        let _ = |x: dtenge_core::party::Party| {
            let dtenge_core::party::Party { bank: _, client_id: _, address: _ } = x;
        };
        let _ = |x: dtenge_core::token::Policy| match x {
            dtenge_core::token::Policy::Standard => {}
            dtenge_core::token::Policy::Held { event: _ } => {}
            dtenge_core::token::Policy::Marked { marking: _, level: _ } => {}
            dtenge_core::token::Policy::Vat => {}
        };
        let _ = |x: dtenge_core::token::Output| {
            let dtenge_core::token::Output { amount_tiyn: _, owner: _, issuer: _, policy: _ } = x;
        };
        let _ = |x: dtenge_core::token::Input| {
            let dtenge_core::token::Input { tx_id: _, index: _, output: _ } = x;
        };
        let _ = |x: dtenge_core::tx::Command| match x {
            dtenge_core::tx::Command::Issue => {}
            dtenge_core::tx::Command::Transfer => {}
            dtenge_core::tx::Command::Redeem => {}
        };
        let _ = |x: dtenge_core::tx::TxBody| {
            let dtenge_core::tx::TxBody { command: _, inputs: _, outputs: _, nonce: _ } = x;
        };
        let _ = |x: dtenge_core::tx::Witness| {
            let dtenge_core::tx::Witness { public_key: _, signature: _ } = x;
        };
        let _ = |x: dtenge_core::tx::Attestation| {
            let dtenge_core::tx::Attestation { public_key: _, signature: _, batch: _ } = x;
        };
        let _ = |x: dtenge_core::tx::BatchProof| {
            let dtenge_core::tx::BatchProof { root: _, index: _, size: _, path: _ } = x;
        };
        let _ = |x: dtenge_core::tx::Transaction| {
            let dtenge_core::tx::Transaction { body: _, witnesses: _, attestations: _ } = x;
        };
        let _ = |x: dtenge_core::crypto::Hash32| {
            let dtenge_core::crypto::Hash32(_) = x;
        };
        let _ = |x: dtenge_core::crypto::SignatureBytes| {
            let dtenge_core::crypto::SignatureBytes(_) = x;
        };
        let _ = |x: dtenge_core::crypto::Address| {
            let dtenge_core::crypto::Address(_) = x;
        };
        let _ = |x: dtenge_core::token::TxId| {
            let dtenge_core::token::TxId(_) = x;
        };
    }
}
