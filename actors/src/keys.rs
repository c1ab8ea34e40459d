//! Every key and marker the actors write, encoded and parsed in one place: each
//! prefix is spelled once, here. A kind is an enum per tree (`Index` rows,
//! `Marker`s in `Tree::Operations`); `encode` gives the exact bytes on disk
//! (pinned by the golden test below: existing data dirs must keep opening) and
//! `parse` reads them back. Fields are joined by `/`; one field — the last
//! unless the variant says `free N` — takes whatever is left, so it may itself
//! hold `/` (a reference, an Idempotency-Key, a journal source id).

use pelago_storage::{
    AgreementId, ApiKeyId, CardId, CardholderId, ChannelId, EventId, JournalEntryId, MerchantId,
    OnboardingId, OrderId, PaymentId, RecipientId, RefundId, SplitBatchId, Timestamp, TopupId, TransactionId,
    Tree,
};

/// Declares a key enum: `Variant { field: Type, .. } = PREFIX [free N] [sep "…"];`.
/// Field types are `Display + FromStr` (the ids, `String`).
#[macro_export]
macro_rules! keys {
    ($(#[$meta:meta])* pub enum $name:ident $(in $tree:ident)? {
        $($(#[$vmeta:meta])* $variant:ident { $($field:ident: $ty:ty),+ } = $prefix:expr
            $(, free $free:literal)? $(, sep $sep:literal)?;)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name { $($(#[$vmeta])* $variant { $($field: $ty),+ },)+ }

        impl $name {
            $(/// The tree every key of this kind lives in.
            pub const TREE: pelago_storage::Tree = pelago_storage::Tree::$tree;
            /// [`Self::TREE`], for a key at hand.
            pub fn tree(&self) -> pelago_storage::Tree { Self::TREE })?

            /// The encoding as text (keys are UTF-8 by construction).
            pub fn text(&self) -> String {
                String::from_utf8_lossy(&self.encode()).into_owned()
            }

            pub fn encode(&self) -> Vec<u8> {
                match self {
                    $(Self::$variant { $($field),+ } => $crate::keys::join(
                        $prefix, $crate::keys!(@sep $($sep)?), &[$($field.to_string()),+]),)+
                }
            }

            pub fn parse(raw: &[u8]) -> Option<Self> {
                <Self as $crate::keys::Key>::parse(raw)
            }
        }

        impl $crate::keys::Key for $name {
            fn parse(raw: &[u8]) -> Option<Self> {
                let raw = std::str::from_utf8(raw).ok()?;
                // A variant that does not fit lets the next one with the same prefix try.
                $(if let Some(rest) = raw.strip_prefix($prefix) && let Some(key) = (|| {
                    let n = [$(stringify!($field)),+].len();
                    let free = $crate::keys!(@free n $($free)?);
                    let mut parts = $crate::keys::split(rest, $crate::keys!(@sep $($sep)?), n, free)?.into_iter();
                    Some(Self::$variant { $($field: parts.next()?.parse().ok()?),+ })
                })() {
                    return Some(key);
                })+
                None
            }
        }
    };
    (@sep) => { "/" };
    (@sep $sep:literal) => { $sep };
    (@free $n:ident) => { $n - 1 };
    (@free $n:ident $free:literal) => { $free };
}

/// A kind of key: what `keys!` declares.
pub trait Key: Sized {
    fn parse(raw: &[u8]) -> Option<Self>;
}

/// `prefix` then the fields joined by `sep`.
pub fn join(prefix: &str, sep: &str, fields: &[String]) -> Vec<u8> {
    let mut key = prefix.to_owned();
    key.push_str(&fields.join(sep));
    key.into_bytes()
}

/// `rest` split into `n` fields by `sep`, the one at `free` taking the surplus.
pub fn split(rest: &str, sep: &str, n: usize, free: usize) -> Option<Vec<String>> {
    let parts: Vec<&str> = rest.split(sep).collect();
    let extra = parts.len().checked_sub(n)?;
    let mut fields: Vec<String> = parts[..free].iter().map(|p| p.to_string()).collect();
    fields.push(parts[free..=free + extra].join(sep));
    fields.extend(parts[free + extra + 1..].iter().map(|p| p.to_string()));
    Some(fields)
}

/// `prefix` + `field/` for each field: the scan prefix of every key whose
/// leading fields are these.
pub fn scan_prefix(prefix: &str, fields: &[&dyn std::fmt::Display]) -> String {
    let mut key = prefix.to_owned();
    fields.iter().for_each(|f| key.push_str(&format!("{f}/")));
    key
}

pub const MREC: &str = "mrec/";
pub const MRECREF: &str = "mrecref/";
pub const RECOPEN: &str = "recopen/";
pub const RECONB: &str = "reconb/";
pub const GWONB: &str = "gwonb/";
pub const MPROV: &str = "mprov/";
pub const RECAGR: &str = "recagr/";
pub const RECAGRTYPE: &str = "recagrtype/";
pub const RECAGRSIGNED: &str = "recagrsigned/";
pub const MCARD: &str = "mcard/";
pub const CHDCARD: &str = "chdcard/";
pub const TUP: &str = "tup/";
pub const MORD: &str = "mord/";
pub const GWORD: &str = "gword/";
pub const CHCARD: &str = "chcard/";
pub const CHTXN: &str = "chtxn/";
pub const TXN: &str = "txn/";
pub const EVT: &str = "evt/";
pub const GWACCT: &str = "gwacct/";
pub const MKEY: &str = "mkey/";
pub const JOP: &str = "jop/";
pub const IDEMBIND: &str = "idembind/";
pub const ORDCREATE: &str = "ordcreate/";
pub const ORDBOOK: &str = "ordbook/";
pub const ORDREFUND: &str = "ordrefund/";
pub const TOPUP: &str = "topup/";
pub const TOPUPREV: &str = "topuprev/";
pub const OPEN: &str = "open/";
pub const ACTION: &str = "action/";
pub const FEERET: &str = "feeret/";
pub const CARDREFUND: &str = "cardrefund/";
pub const ONBPENDING: &str = "onbpending/";
pub const AGRPENDING: &str = "agrpending/";
pub const MKT: &str = "mkt/";
pub const PAYOWNER: &str = "payowner/";
pub const PAYCOLL: &str = "paycoll/";
pub const PAYSETTLED: &str = "paysettled/";
pub const SPBOWNER: &str = "spbowner/";
pub const RFDOWNER: &str = "rfdowner/";
pub const PAYPENDING: &str = "paypending/";
pub const PAYCONFIRM: &str = "payconfirm/";
pub const SPBPENDING: &str = "spbpending/";
pub const RFDPENDING: &str = "rfdpending/";

keys! {
    /// Rows of `Tree::Index` the actors write (what each maps to is in its doc).
    pub enum Index in Index {
        /// → nothing: a merchant's recipients.
        MerchantRecipient { merchant: MerchantId, recipient: RecipientId } = MREC;
        /// → nothing: the `reference` filter of a merchant's recipients.
        RecipientReference { merchant: MerchantId, reference: String, recipient: RecipientId } = MRECREF, free 1;
        /// → the recipient's open onboarding (unique: taken with `expect_absent`).
        RecipientOpen { recipient: RecipientId } = RECOPEN;
        /// → nothing: the onboardings a recipient owns.
        RecipientOnboarding { recipient: RecipientId, onboarding: OnboardingId } = RECONB;
        /// → the onboarding a gateway onboarding id names (callbacks name the gateway's id).
        GatewayOnboarding { gateway_onboarding: String } = GWONB;
        /// → the recipient a provider recipient id of a merchant belongs to.
        ProviderRecipient { merchant: MerchantId, provider_recipient: String } = MPROV;
        /// → nothing: a recipient's agreements.
        RecipientAgreement { recipient: RecipientId, agreement: AgreementId } = RECAGR;
        /// → nothing: a recipient's agreements of one type.
        RecipientAgreementOfType { recipient: RecipientId, kind: String, agreement: AgreementId } = RECAGRTYPE;
        /// → the recipient's signed agreement of a type.
        SignedAgreement { recipient: RecipientId, kind: String } = RECAGRSIGNED;
        /// → nothing: a merchant's cards.
        MerchantCard { merchant: MerchantId, card: CardId } = MCARD;
        /// → nothing: a cardholder's cards.
        CardholderCard { cardholder: CardholderId, card: CardId } = CHDCARD;
        /// → the card of a top-up.
        Topup { topup: TopupId } = TUP;
        /// → nothing: a merchant's orders.
        MerchantOrder { merchant: MerchantId, order: OrderId } = MORD;
        /// → the order a gateway order id names.
        GatewayOrder { gateway_order: String } = GWORD;
        /// → the card a channel's card id names.
        ChannelCard { channel: ChannelId, channel_card: String } = CHCARD;
        /// → the transaction a channel's transaction id names (mirroring dedup).
        ChannelTransaction { channel: ChannelId, channel_transaction: String } = CHTXN;
        /// → the card of a transaction.
        Transaction { transaction: TransactionId } = TXN;
        /// → the merchant of an event. Retired: written until layout 2 and
        /// never read (events are found under their merchant); old data dirs
        /// still hold such rows, so the prefix is never reused.
        Event { event: EventId } = EVT;
        /// → the merchant a gateway account id belongs to (unique).
        GatewayAccount { gateway_merchant: String } = GWACCT;
        /// → nothing: a merchant's API keys.
        MerchantKey { merchant: MerchantId, key: ApiKeyId } = MKEY;
        /// → the journal entry booked for `(source, kind)`, then its balance
        /// transactions' keys (see `merchant::actor`).
        JournalOp { source: String, kind: String } = JOP, free 0;
        /// → what an Idempotency-Key's creation made, written in its commit;
        /// `{scope}/{key}` is also the key of its stored answer.
        IdempotencyBinding { scope: String, key: String } = IDEMBIND;
        /// → nothing: a merchant's MARKETPLACE.md §8 entries by service time
        /// (`{at}` is its Unix ms, 20 digits, so rows sort by time).
        MarketplaceEntry { merchant: MerchantId, at: String, entry: JournalEntryId } = MKT;
        /// → the merchant of a marketplace payment.
        PaymentOwner { payment: PaymentId } = PAYOWNER;
        /// → the merchant: captured on that UTC date, not settled yet (T+1).
        PaymentCaptured { date: String, payment: PaymentId } = PAYCOLL;
        /// → the merchant: settled by the run of that date.
        PaymentSettled { date: String, payment: PaymentId } = PAYSETTLED;
        /// → the merchant of a split batch.
        BatchOwner { batch: SplitBatchId } = SPBOWNER;
        /// → the payment of a refund.
        RefundOwner { refund: RefundId } = RFDOWNER;
    }
}

impl Index {
    /// The `paycoll/` row of a payment captured at `at` (its UTC date).
    pub fn captured(at: Timestamp, payment: &PaymentId) -> Index {
        Index::PaymentCaptured {
            date: at.to_datetime().format("%Y-%m-%d").to_string(),
            payment: payment.clone(),
        }
    }
}

keys! {
    /// Recovery markers in `Tree::Operations`: work a crash may have left.
    pub enum Marker in Operations {
        /// A checkout order's creation at the gateway is unsettled.
        OrderCreate { order: OrderId } = ORDCREATE;
        /// The ledger booking of a paid order is owed.
        OrderBook { order: OrderId } = ORDBOOK;
        /// A paid order must be refunded (what it paid for could not be delivered).
        OrderRefund { order: OrderId } = ORDREFUND;
        /// A top-up saga is under way.
        Topup { topup: TopupId } = TOPUP;
        /// A top-up's debit must be reversed.
        TopupReversal { topup: TopupId } = TOPUPREV;
        /// A card's open outcome is unknown.
        Open { card: CardId } = OPEN;
        /// A freeze/unfreeze/delete outcome is unknown.
        Action { card: CardId } = ACTION;
        /// A card's application fee must be returned.
        FeeReturn { card: CardId } = FEERET;
        /// The balance left on a deleted card must be credited.
        CardRefund { card: CardId } = CARDREFUND;
        /// → the owner: an onboarding's gateway outcome is unknown.
        OnboardingPending { onboarding: OnboardingId } = ONBPENDING;
        /// → the recipient: an agreement's signing outcome is unknown.
        AgreementPending { agreement: AgreementId } = AGRPENDING;
        /// → `{merchant} {real ms}`: a payment's gateway call (`pending_action`)
        /// has no answer yet; the resolver retries it.
        PaymentPending { payment: PaymentId } = PAYPENDING;
        /// → the gateway order id: a payment callback's confirming query had no answer yet.
        PaymentConfirm { payment: PaymentId } = PAYCONFIRM;
        /// → `{merchant} {real ms}`: a split batch's items are processing; the
        /// resolver sends the batch again with its request id.
        BatchPending { batch: SplitBatchId } = SPBPENDING;
        /// → `{merchant} {real ms} {payment}`: a refund's gateway answer is
        /// unknown; the resolver asks again with its request id.
        RefundPending { refund: RefundId } = RFDPENDING;
    }
}

keys! {
    /// The keys of the marketplace's own records (no prefix: a merchant's
    /// records sort together, newest last; a payment's refunds oldest first).
    pub enum RecordKey {
        /// `Tree::Payments`.
        Payment { merchant: MerchantId, payment: PaymentId } = "";
        /// `Tree::SplitBatches`.
        Batch { merchant: MerchantId, batch: SplitBatchId } = "";
        /// `Tree::Refunds`.
        Refund { merchant: MerchantId, payment: PaymentId, refund: RefundId } = "";
    }
}

impl RecordKey {
    pub fn tree(&self) -> Tree {
        match self {
            RecordKey::Payment { .. } => Tree::Payments,
            RecordKey::Batch { .. } => Tree::SplitBatches,
            RecordKey::Refund { .. } => Tree::Refunds,
        }
    }
}

/// The ULID of the ids golden tests use (`sample_id("card_")`).
pub const SAMPLE_ULID: &str = "01J0000000000000000000000A";

/// `prefix` + [`SAMPLE_ULID`] as an id: the golden tests' fixed ids.
pub fn sample_id<T: std::str::FromStr>(prefix: &str) -> T {
    format!("{prefix}{SAMPLE_ULID}").parse().ok().expect("a valid id")
}

/// Asserts that each key encodes to exactly its bytes and parses back: the
/// golden tests of both crates' kinds.
#[macro_export]
macro_rules! assert_golden_keys {
    ($($kind:ident :: $variant:ident { $($f:ident: $v:expr),+ } => $bytes:expr;)+) => {$(
        let key = $kind::$variant { $($f: $v),+ };
        assert_eq!(key.text(), $bytes, "{key:?}");
        assert_eq!($kind::parse(&key.encode()), Some(key));
    )+};
}

#[cfg(test)]
mod tests {
    use pelago_storage::Tree;
    use proptest::prelude::*;

    use super::{SAMPLE_ULID as U, sample_id as id, *};

    #[test]
    fn every_kind_keeps_its_bytes_and_parses_back() {
        let s = |v: &str| v.to_owned();
        assert_golden_keys! {
            Index::MerchantRecipient { merchant: id("mch_"), recipient: id("rec_") } => format!("mrec/mch_{U}/rec_{U}");
            Index::RecipientReference { merchant: id("mch_"), reference: s("a/b"), recipient: id("rec_") }
                => format!("mrecref/mch_{U}/a/b/rec_{U}");
            Index::RecipientOpen { recipient: id("rec_") } => format!("recopen/rec_{U}");
            Index::RecipientOnboarding { recipient: id("rec_"), onboarding: id("onb_") } => format!("reconb/rec_{U}/onb_{U}");
            Index::GatewayOnboarding { gateway_onboarding: s("g/1") } => "gwonb/g/1";
            Index::ProviderRecipient { merchant: id("mch_"), provider_recipient: s("p1") } => format!("mprov/mch_{U}/p1");
            Index::RecipientAgreement { recipient: id("rec_"), agreement: id("agr_") } => format!("recagr/rec_{U}/agr_{U}");
            Index::RecipientAgreementOfType { recipient: id("rec_"), kind: s("split"), agreement: id("agr_") }
                => format!("recagrtype/rec_{U}/split/agr_{U}");
            Index::SignedAgreement { recipient: id("rec_"), kind: s("commission") } => format!("recagrsigned/rec_{U}/commission");
            Index::MerchantCard { merchant: id("mch_"), card: id("card_") } => format!("mcard/mch_{U}/card_{U}");
            Index::CardholderCard { cardholder: id("chd_"), card: id("card_") } => format!("chdcard/chd_{U}/card_{U}");
            Index::Topup { topup: id("tup_") } => format!("tup/tup_{U}");
            Index::MerchantOrder { merchant: id("mch_"), order: id("ord_") } => format!("mord/mch_{U}/ord_{U}");
            Index::GatewayOrder { gateway_order: s("go_1") } => "gword/go_1";
            Index::ChannelCard { channel: id("chl_"), channel_card: s("cc1") } => format!("chcard/chl_{U}/cc1");
            Index::ChannelTransaction { channel: id("chl_"), channel_transaction: s("t1") } => format!("chtxn/chl_{U}/t1");
            Index::Transaction { transaction: id("txn_") } => format!("txn/txn_{U}");
            Index::Event { event: id("evt_") } => format!("evt/evt_{U}");
            Index::GatewayAccount { gateway_merchant: s("gm1") } => "gwacct/gm1";
            Index::MerchantKey { merchant: id("mch_"), key: id("key_") } => format!("mkey/mch_{U}/key_{U}");
            Index::JournalOp { source: s("mfee/c/2026-01"), kind: s("fee") } => "jop/mfee/c/2026-01/fee";
            Index::IdempotencyBinding { scope: s("admin"), key: s("k/1") } => "idembind/admin/k/1";
            Index::MarketplaceEntry { merchant: id("mch_"), at: s("00000000001700000000"), entry: id("jnl_") }
                => format!("mkt/mch_{U}/00000000001700000000/jnl_{U}");
            Index::PaymentOwner { payment: id("pay_") } => format!("payowner/pay_{U}");
            Index::PaymentCaptured { date: s("2026-11-22"), payment: id("pay_") } => format!("paycoll/2026-11-22/pay_{U}");
            Index::PaymentSettled { date: s("2026-11-23"), payment: id("pay_") } => format!("paysettled/2026-11-23/pay_{U}");
            Index::BatchOwner { batch: id("spb_") } => format!("spbowner/spb_{U}");
            Index::RefundOwner { refund: id("rfd_") } => format!("rfdowner/rfd_{U}");
            Marker::OrderCreate { order: id("ord_") } => format!("ordcreate/ord_{U}");
            Marker::OrderBook { order: id("ord_") } => format!("ordbook/ord_{U}");
            Marker::OrderRefund { order: id("ord_") } => format!("ordrefund/ord_{U}");
            Marker::Topup { topup: id("tup_") } => format!("topup/tup_{U}");
            Marker::TopupReversal { topup: id("tup_") } => format!("topuprev/tup_{U}");
            Marker::Open { card: id("card_") } => format!("open/card_{U}");
            Marker::Action { card: id("card_") } => format!("action/card_{U}");
            Marker::FeeReturn { card: id("card_") } => format!("feeret/card_{U}");
            Marker::CardRefund { card: id("card_") } => format!("cardrefund/card_{U}");
            Marker::OnboardingPending { onboarding: id("onb_") } => format!("onbpending/onb_{U}");
            Marker::AgreementPending { agreement: id("agr_") } => format!("agrpending/agr_{U}");
            Marker::PaymentPending { payment: id("pay_") } => format!("paypending/pay_{U}");
            Marker::PaymentConfirm { payment: id("pay_") } => format!("payconfirm/pay_{U}");
            Marker::BatchPending { batch: id("spb_") } => format!("spbpending/spb_{U}");
            Marker::RefundPending { refund: id("rfd_") } => format!("rfdpending/rfd_{U}");
            RecordKey::Payment { merchant: id("mch_"), payment: id("pay_") } => format!("mch_{U}/pay_{U}");
            RecordKey::Batch { merchant: id("mch_"), batch: id("spb_") } => format!("mch_{U}/spb_{U}");
            RecordKey::Refund { merchant: id("mch_"), payment: id("pay_"), refund: id("rfd_") }
                => format!("mch_{U}/pay_{U}/rfd_{U}");
        }
        assert_eq!(Index::TREE, Tree::Index);
        assert_eq!(Marker::TREE, Tree::Operations);
        assert_eq!(scan_prefix(MCARD, &[&"mch_1"]), "mcard/mch_1/");
    }

    #[test]
    fn foreign_and_truncated_bytes_do_not_parse() {
        for raw in ["", "mcard/", "mcard/mch_1", "nope/x", "topup/card_01J0000000000000000000000A"] {
            assert_eq!(Index::parse(raw.as_bytes()), None, "{raw}");
            assert_eq!(Marker::parse(raw.as_bytes()), None, "{raw}");
        }
    }

    proptest! {
        #[test]
        fn free_fields_round_trip(reference in "[ -~]{0,20}", key in "[ -~]{1,20}", source in "[ -~]{1,20}") {
            let row = Index::RecipientReference { merchant: id("mch_"), reference, recipient: id("rec_") };
            prop_assert_eq!(Index::parse(&row.encode()), Some(row));
            let row = Index::IdempotencyBinding { scope: "admin".into(), key };
            prop_assert_eq!(Index::parse(&row.encode()), Some(row));
            let row = Index::JournalOp { source, kind: "fee".into() };
            prop_assert_eq!(Index::parse(&row.encode()), Some(row));
        }
    }
}
