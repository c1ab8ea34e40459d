//! What the actors need from the outside world, as traits: the card-issuing
//! channels, the payment gateway and the clock. Adapters live in the binary
//! crate (`src/upstream`); the actors never see HTTP, URLs or wire JSON.
//!
//! Every mutating call carries a Pelago `request_id` that the caller stored
//! before calling and reuses on every retry; upstreams are idempotent on it and
//! can be asked for its outcome. A declined operation is data
//! ([`Outcome::Declined`]), not an error; a call whose effect Pelago cannot know
//! (timeout, reset, 5xx) is [`Outcome::Unknown`] and must be resolved by
//! asking, never by guessing.

use std::{fmt, sync::Arc};

use futures::future::BoxFuture;
use pelago_storage::{Money, Timestamp};
use serde::{Deserialize, Serialize};

/// What a port call returns: the upstream's reply, as a future of its [`Outcome`].
pub type Reply<'a, T> = BoxFuture<'a, Outcome<T>>;

/// The result of one upstream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The upstream applied the operation (or answered the query).
    Done(T),
    /// A definite refusal: nothing was applied.
    Declined { reason: String },
    /// The effect is unknown (timeout, connection reset, 5xx, unreadable answer).
    Unknown { detail: String },
}

impl<T> Outcome<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        self.and_then(|t| Outcome::Done(f(t)))
    }

    /// A done answer read further: one the caller cannot use may become
    /// `Unknown`; a decline or an unknown outcome stays as it is.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Outcome<U>) -> Outcome<U> {
        match self {
            Outcome::Done(t) => f(t),
            Outcome::Declined { reason } => Outcome::Declined { reason },
            Outcome::Unknown { detail } => Outcome::Unknown { detail },
        }
    }
}

/// An upstream's own id for a request Pelago made (`req_...`), stored before the call.
pub type RequestId = String;

// ---------------------------------------------------------------- channel ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub state: Option<String>,
    pub postal_code: String,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCardholder {
    pub request_id: RequestId,
    /// Pelago's cardholder id, so callbacks can name it.
    pub cardholder_id: String,
    pub bin: String,
    pub identity: crate::cardholder::Identity,
    pub id_document_number: String,
    pub address: Address,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelCardholderStatus {
    Active,
    Pending,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardholderCreated {
    pub channel_cardholder_id: String,
    pub status: ChannelCardholderStatus,
    /// Why it was rejected, when it was.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCard {
    pub request_id: RequestId,
    /// Pelago's card id, so callbacks and transactions can name it.
    pub card_id: String,
    pub channel_cardholder_id: String,
    pub bin: String,
    pub currency: pelago_storage::Currency,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardOpened {
    pub channel_card_id: String,
    pub last4: String,
    pub balance: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundCard {
    pub request_id: RequestId,
    pub channel_card_id: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFunded {
    /// The card's balance at the channel after this top-up.
    pub balance: Money,
}

/// freeze, unfreeze, delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardAction {
    pub request_id: RequestId,
    pub channel_card_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardDeleted {
    /// What was left on the card and returned to the channel's master account.
    pub remaining_balance: Money,
}

/// A card's sensitive data, fetched live and handed straight to the response.
///
/// Deliberately neither `Debug`, `Display`, `Clone` nor `Serialize`: it cannot be
/// logged, formatted into an error, or written to the store by accident. The
/// HTTP layer reads the fields once to build the response body.
pub struct CardDetails {
    pub pan: SensitiveString,
    pub cvv: SensitiveString,
    pub expiry_month: u8,
    pub expiry_year: u16,
    pub balance: Money,
    pub status: String,
}

/// A string that never prints itself. `expose()` is the one way to read it.
pub struct SensitiveString(String);

impl SensitiveString {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SensitiveString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for SensitiveString {
    fn drop(&mut self) {
        // Overwrite before the allocation is released.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

crate::wire_enum! {
    pub enum ChannelTxnType {
        Authorization = "authorization",
        Clearing = "clearing",
        Reversal = "reversal",
        Refund = "refund",
    }
}

crate::wire_enum! {
    pub enum ChannelTxnStatus {
        Pending = "pending",
        Posted = "posted",
        Declined = "declined",
        Reversed = "reversed",
    }
}

/// A card transaction as the channel reports it (by pull or by callback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTransaction {
    pub channel_transaction_id: String,
    pub channel_card_id: String,
    pub kind: ChannelTxnType,
    pub status: ChannelTxnStatus,
    /// Always positive; `kind` gives the direction.
    pub amount: Money,
    pub merchant_name: String,
    pub mcc: String,
    pub occurred_at: Timestamp,
    /// The card's available balance at the channel right after this transaction.
    pub balance_after: Money,
    /// For a clearing or reversal: the authorization it settles or undoes.
    pub related_transaction_id: Option<String>,
}

/// A cardholder as the channel holds it now (the answer to a confirming query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCardholder {
    pub channel_cardholder_id: String,
    /// Pelago's cardholder id, as given at creation.
    pub cardholder_id: String,
    pub status: ChannelCardholderStatus,
    pub reason: Option<String>,
}

/// What the channel knows of an earlier request, by its request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelOperation {
    /// The channel never saw (or did not apply) this request id: safe to retry it.
    NotFound,
    Declined {
        reason: String,
    },
    CardholderCreated(CardholderCreated),
    CardOpened(CardOpened),
    CardFunded(CardFunded),
    /// freeze or unfreeze applied.
    ActionApplied,
    CardDeleted(CardDeleted),
}

/// A card-issuing channel. One adapter per upstream kind.
pub trait CardChannel: Send + Sync {
    fn create_cardholder(&self, req: CreateCardholder) -> Reply<'_, CardholderCreated>;
    fn open_card(&self, req: OpenCard) -> Reply<'_, CardOpened>;
    fn fund_card(&self, req: FundCard) -> Reply<'_, CardFunded>;
    fn freeze(&self, req: CardAction) -> Reply<'_, ()>;
    fn unfreeze(&self, req: CardAction) -> Reply<'_, ()>;
    fn delete_card(&self, req: CardAction) -> Reply<'_, CardDeleted>;
    fn card_details(&self, channel_card_id: String) -> Reply<'_, CardDetails>;
    /// Transactions of the card, oldest first, after `after_channel_transaction_id` when given.
    fn list_transactions(
        &self,
        channel_card_id: String,
        after_channel_transaction_id: Option<String>,
    ) -> Reply<'_, Vec<ChannelTransaction>>;
    /// One transaction of the card as the channel holds it now, by the
    /// channel's ids (the query that confirms a transaction callback).
    /// A transaction the channel does not hold is `Declined`.
    fn transaction(
        &self,
        channel_card_id: String,
        channel_transaction_id: String,
    ) -> Reply<'_, ChannelTransaction>;
    /// A cardholder as the channel holds it now, by the channel's id (the
    /// query that confirms a cardholder callback). Unknown to the channel: `Declined`.
    fn cardholder(&self, channel_cardholder_id: String) -> Reply<'_, ChannelCardholder>;
    /// The channel's master account (which funds cards), per currency.
    fn master_balance(&self) -> Reply<'_, Vec<Money>>;
    fn operation(&self, request_id: RequestId) -> Reply<'_, ChannelOperation>;
}

// ---------------------------------------------------------------- gateway ----

/// A gateway account: the merchant's own, or the platform's.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayAccount {
    pub merchant_id: String,
    pub api_key: SecretString,
}

impl fmt::Debug for GatewayAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayAccount").field("merchant_id", &self.merchant_id).finish_non_exhaustive()
    }
}

/// A credential held in memory. Never printed; `expose()` to use it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrder {
    pub request_id: RequestId,
    pub account: GatewayAccount,
    /// Pelago's business order id (`ord_...`).
    pub order_id: String,
    pub amount: Money,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayOrderStatus {
    Pending,
    Paid,
    Failed,
    Expired,
    Refunded,
    /// Marketplace payments only: paid with `capture` false.
    Authorized,
    /// Marketplace payments only: voided.
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayOrder {
    pub gateway_order_id: String,
    /// Pelago's `ord_...` id, as given at creation.
    pub order_id: String,
    pub checkout_url: String,
    pub status: GatewayOrderStatus,
    pub amount: Money,
    pub paid_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositAddress {
    pub address: String,
    pub network: String,
    pub currency: pelago_storage::Currency,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub request_id: RequestId,
    pub account: GatewayAccount,
    pub amount: Money,
    pub address: String,
    pub network: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutStatus {
    Processing,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutAccepted {
    pub payout_id: String,
    pub status: PayoutStatus,
    pub reason: Option<String>,
}

/// A payout as the gateway reports it when asked (server to server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPayout {
    pub payout_id: String,
    /// The request id Pelago created it with.
    pub request_id: RequestId,
    pub status: PayoutStatus,
    pub reason: Option<String>,
    pub amount: Money,
}

/// A deposit the gateway received, as it reports it when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayDeposit {
    pub deposit_id: String,
    pub address: String,
    pub network: String,
    pub amount: Money,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub request_id: RequestId,
    pub account: GatewayAccount,
    pub gateway_order_id: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundAccepted {
    pub refund_id: String,
}

/// The Pelago payment gateway.
pub trait PaymentGateway: Send + Sync {
    fn create_order(&self, req: CreateOrder) -> Reply<'_, GatewayOrder>;
    fn query_order(&self, account: GatewayAccount, gateway_order_id: String) -> Reply<'_, GatewayOrder>;
    fn deposit_address(
        &self,
        account: GatewayAccount,
        currency: pelago_storage::Currency,
        network: String,
    ) -> Reply<'_, DepositAddress>;
    fn payout(&self, req: Payout) -> Reply<'_, PayoutAccepted>;
    /// A payout of `account` by the gateway's id (what a callback is checked against).
    fn query_payout(&self, account: GatewayAccount, payout_id: String) -> Reply<'_, GatewayPayout>;
    /// A deposit to one of `account`'s addresses, by the gateway's id.
    fn query_deposit(&self, account: GatewayAccount, deposit_id: String) -> Reply<'_, GatewayDeposit>;
    fn refund(&self, req: Refund) -> Reply<'_, RefundAccepted>;
}

// ------------------------------------------------------------------ clock ----

/// The service clock: billing, settlement and object timestamps follow it.
/// Signature windows, nonces and timeouts use real time instead.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// Real time.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now_real()
    }
}

pub type SharedClock = Arc<dyn Clock>;

// -------------------------------------------------------------- callbacks ----

/// A channel callback, after its signature was verified and its body parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCallback {
    /// The channel's id for this notification; a repeat carries the same one.
    pub event_id: String,
    pub event: ChannelEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A pending cardholder was approved or rejected.
    CardholderUpdated {
        cardholder_id: String,
        channel_cardholder_id: String,
        status: ChannelCardholderStatus,
        reason: Option<String>,
    },
    /// A card was opened (the asynchronous answer to `open_card`).
    CardOpened { card_id: String, request_id: RequestId, opened: CardOpened },
    /// A transaction was created or changed.
    Transaction { card_id: String, transaction: ChannelTransaction },
    /// A top-up finished (the asynchronous answer to `fund_card`).
    TopupCompleted { request_id: RequestId, outcome: ChannelOperation },
}

/// A gateway callback, after its signature was verified and its body parsed.
/// It is a hint, not proof (SECURITY.md): the flows bind it to the account
/// the object was created under, compare it, and act on a query's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCallback {
    pub event_id: String,
    /// The gateway account (`merchant_id` at the gateway) it concerns.
    pub account_merchant_id: String,
    pub event: GatewayEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    OrderUpdated {
        gateway_order_id: String,
        /// Pelago's `ord_...` id given at creation.
        order_id: String,
        status: GatewayOrderStatus,
        amount: Money,
        at: Timestamp,
    },
    DepositCredited {
        /// The gateway's id of the deposit: one credit per id, ever.
        gateway_deposit_id: String,
        address: String,
        network: String,
        amount: Money,
        at: Timestamp,
    },
    PayoutUpdated {
        payout_id: String,
        request_id: RequestId,
        status: PayoutStatus,
        reason: Option<String>,
        amount: Money,
    },
    RefundCompleted {
        refund_id: String,
        gateway_order_id: String,
        request_id: RequestId,
        amount: Money,
    },
    /// A recipient withdrawal's bank payout was decided (MARKETPLACE.md §7):
    /// a hint, confirmed by querying the payout by its request id.
    RecipientPayoutUpdated {
        /// The withdrawal's id.
        request_id: RequestId,
        /// W − K.
        amount: Money,
    },
}

/// Finds the adapter of a channel (implemented by the binary's upstream registry).
pub trait ChannelDirectory: Send + Sync {
    fn channel(&self, id: &pelago_storage::ChannelId) -> Option<Arc<dyn CardChannel>>;
}

/// No channels at all (tests of the actor runtime that never call upstream).
pub struct NoChannels;

impl ChannelDirectory for NoChannels {
    fn channel(&self, _id: &pelago_storage::ChannelId) -> Option<Arc<dyn CardChannel>> {
        None
    }
}
