//! Every key, marker and sealing context the binary writes, encoded and parsed
//! in one place (the kinds the actors write, and the binary reads, are
//! `pelago_actors::keys`). Declared with the same `keys!` macro: `encode` gives
//! the exact bytes on disk (the golden test pins them), `parse` reads them back.

use pelago_actors::keys;
use pelago_storage::{
    CardId, CardholderId, ChannelId, MerchantId, OrderId, RecipientId, RecipientWithdrawalId, TransactionId,
    WithdrawalId,
};

pub const DEPADDR: &str = "depaddr/";
pub const WDRACCT: &str = "wdracct/";
pub const MWDR: &str = "mwdr/";
pub const WDRREQ: &str = "wdrreq/";
pub const WDRHOLD: &str = "wdrhold/";
pub const MCHD: &str = "mchd/";
pub const MCHDREF: &str = "mchdref/";
pub const RCPTXN: &str = "rcptxn/";
pub const COLL: &str = "coll/";
pub const SETTLED: &str = "settled/";
pub const TXSYNC: &str = "txsync/";
pub const MFEEORDER: &str = "mfeeorder/";
pub const DEPCONFIRM: &str = "depconfirm/";
pub const ORDCONFIRM: &str = "ordconfirm/";
pub const WITHDRAWAL: &str = "withdrawal/";
pub const WDRRELEASE: &str = "wdrrelease/";
pub const CHDCONFIRM: &str = "chdconfirm/";
pub const TXNCONFIRM: &str = "txnconfirm/";
pub const CARDOPEN: &str = "cardopen/";
pub const WHSEC: &str = "whsec/";
pub const GW: &str = "gw/";
pub const CHL: &str = "chl/";
pub const CHD: &str = "chd/";
pub const MFEE: &str = "mfee/";
pub const GWDEP: &str = "gwdep/";
pub const SETTLE: &str = "settle/";
pub const SETTLEMENT: &str = "settlement/";
pub const CHANNEL_KEY: &str = "channel_key/";
pub const CHANNEL: &str = "channel/";
pub const CH: &str = "ch/";
pub const CARDHOLDER: &str = "cardholder/";
pub const CARD: &str = "card/";
pub const MASTER: &str = "master/";
pub const ACCOUNT: &str = "account/";
pub const ORDER: &str = "order/";
pub const DEPOSIT: &str = "deposit/";
pub const PAYOUT: &str = "payout/";
pub const GWO: &str = "gwo/";
pub const GWOREQ: &str = "gworeq/";
pub const GWAREQ: &str = "gwareq/";
pub const SANDBOX_CHANNEL: &str = "sandbox/channel/";
pub const SANDBOX_ACCOUNT: &str = "sandbox/account/";
pub const PAYMENT: &str = "payment/";
pub const SPLIT: &str = "split/";
pub const RWDLIST: &str = "rwdlist/";
pub const RWDPENDING: &str = "rwdpending/";

keys! {
    /// Rows of `Tree::Index` the binary writes.
    pub enum Index in Index {
        /// → `{merchant_id} {currency}`: a deposit address at a gateway account.
        DepositAddress { account: String, address: String } = DEPADDR;
        /// → the gateway account a withdrawal's payout is made under.
        WithdrawalAccount { withdrawal: WithdrawalId } = WDRACCT;
        /// → nothing: a merchant's withdrawals.
        MerchantWithdrawal { merchant: MerchantId, withdrawal: WithdrawalId } = MWDR;
        /// → the withdrawal of a payout request id.
        WithdrawalRequest { request: String } = WDRREQ;
        /// A hold whose record has not landed yet, removed with the record's commit.
        WithdrawalHold { withdrawal: WithdrawalId } = WDRHOLD;
        /// → nothing: a merchant's cardholders.
        MerchantCardholder { merchant: MerchantId, cardholder: CardholderId } = MCHD;
        /// → nothing: the `reference` filter of a merchant's cardholders.
        CardholderReference { merchant: MerchantId, reference: String, cardholder: CardholderId } = MCHDREF, free 1;
        /// → the receipt of a transaction.
        ReceiptOfTransaction { transaction: TransactionId } = RCPTXN;
        /// → a collection awaiting settlement (`{date}` is `YYYY-MM-DD`).
        Collection { date: String, source: String } = COLL;
        /// → a collection a settlement run settled.
        Settled { date: String, source: String } = SETTLED;
        /// → the last channel transaction id pulled for a card.
        TransactionSync { card: CardId } = TXSYNC;
        /// → the monthly-fee order of a card and period.
        MonthlyFeeOrder { card: CardId, period: String } = MFEEORDER;
        /// → nothing: a recipient's withdrawals, for the list.
        RecipientWithdrawal { recipient: RecipientId, withdrawal: RecipientWithdrawalId } = RWDLIST;
    }
}

keys! {
    /// Recovery markers in `Tree::Operations` the binary writes.
    pub enum Marker in Operations {
        /// A gateway deposit notice whose query answer is unknown.
        DepositConfirm { deposit: String, account: String } = DEPCONFIRM, sep "\0";
        /// The same, written before the account was in the key.
        LegacyDepositConfirm { deposit: String } = DEPCONFIRM;
        /// → the gateway order id: an order notice whose query answer is unknown.
        OrderConfirm { order: OrderId } = ORDCONFIRM;
        /// A withdrawal's payout outcome is unknown.
        Withdrawal { withdrawal: WithdrawalId } = WITHDRAWAL;
        /// → the Idempotency-Key binding: a hold the resolver claimed, to release.
        WithdrawalRelease { withdrawal: WithdrawalId } = WDRRELEASE;
        /// A cardholder callback whose query answer is unknown.
        CardholderConfirm { cardholder: CardholderId } = CHDCONFIRM;
        /// A transaction callback whose query answer is unknown.
        TransactionConfirm { card: CardId, channel_transaction: String } = TXNCONFIRM;
        /// A master-account card open's intent (before its fee).
        CardOpen { card: CardId } = CARDOPEN;
        /// → the start (real time, big-endian ms): a recipient withdrawal not final yet.
        RecipientWithdrawal { withdrawal: RecipientWithdrawalId } = RWDPENDING;
    }
}

keys! {
    /// What a sealed secret is bound to, and who a callback came from.
    pub enum Context {
        /// A merchant's webhook secret.
        WebhookSecret { merchant: MerchantId } = WHSEC;
        /// A merchant's gateway API key; also the sender of its callbacks.
        Gateway { merchant: String } = GW;
        /// A channel credential (`api_key`, `webhook_secret`).
        ChannelSecret { channel: ChannelId, what: String } = CHL;
        /// The sender of a channel's callbacks.
        Channel { channel: ChannelId } = CHL;
        /// A cardholder's sealed field.
        Cardholder { cardholder: CardholderId, field: String } = CHD;
    }
}

keys! {
    /// The source ids of journal entries the binary books, and jobs it runs once.
    pub enum Source {
        MonthlyFee { card: CardId, period: String } = MFEE;
        GatewayDeposit { deposit: String } = GWDEP;
        Settle { source: String } = SETTLE;
        SettlementRun { date: String } = SETTLEMENT;
    }
}

keys! {
    /// The simulators' own store (`<data_dir>/sandbox/`): record keys and sealing contexts.
    pub enum Sandbox {
        /// → the channel an API key digest belongs to.
        ChannelKey { digest: String } = CHANNEL_KEY;
        Channel { channel: String } = CHANNEL;
        /// A channel operation, idempotent per request id.
        ChannelOperation { channel: String, request: String } = CH;
        Cardholder { cardholder: String } = CARDHOLDER;
        Card { card: String } = CARD;
        /// A channel's master balance in one currency.
        Master { channel: String, currency: String } = MASTER;
        Transaction { card: String, transaction: String } = keys::TXN;
        Account { merchant: String } = ACCOUNT;
        Order { order: String } = ORDER;
        Deposit { deposit: String } = DEPOSIT;
        Payout { payout: String } = PAYOUT;
        /// A marketplace payment's flags at the simulated gateway.
        Payment { gateway_order: String } = PAYMENT;
        /// → the request id that split a payment.
        Split { gateway_order: String } = SPLIT;
        /// A gateway operation, idempotent per request id.
        GatewayOperation { merchant: String, request: String } = GW;
        Onboarding { onboarding: String } = GWO;
        OnboardingRequest { merchant: String, request: String } = GWOREQ;
        AgreementRequest { merchant: String, request: String } = GWAREQ;
        /// A channel's sealed credential (`api_key`, `webhook_secret`).
        ChannelSecret { channel: String, what: String } = SANDBOX_CHANNEL;
        /// A gateway account's sealed credential.
        AccountSecret { merchant: String, what: String } = SANDBOX_ACCOUNT;
    }
}

#[cfg(test)]
mod tests {
    use pelago_actors::keys::{SAMPLE_ULID as U, sample_id as id, scan_prefix};

    use super::*;

    #[test]
    fn every_kind_keeps_its_bytes_and_parses_back() {
        let s = |v: &str| v.to_owned();
        pelago_actors::assert_golden_keys! {
            Index::DepositAddress { account: s("gm1"), address: s("0xab") } => "depaddr/gm1/0xab";
            Index::WithdrawalAccount { withdrawal: id("wdr_") } => format!("wdracct/wdr_{U}");
            Index::MerchantWithdrawal { merchant: id("mch_"), withdrawal: id("wdr_") } => format!("mwdr/mch_{U}/wdr_{U}");
            Index::WithdrawalRequest { request: s("r1") } => "wdrreq/r1";
            Index::WithdrawalHold { withdrawal: id("wdr_") } => format!("wdrhold/wdr_{U}");
            Index::MerchantCardholder { merchant: id("mch_"), cardholder: id("chd_") } => format!("mchd/mch_{U}/chd_{U}");
            Index::CardholderReference { merchant: id("mch_"), reference: s("a/b"), cardholder: id("chd_") }
                => format!("mchdref/mch_{U}/a/b/chd_{U}");
            Index::ReceiptOfTransaction { transaction: id("txn_") } => format!("rcptxn/txn_{U}");
            Index::Collection { date: s("2026-01-02"), source: s("ord_1") } => "coll/2026-01-02/ord_1";
            Index::Settled { date: s("2026-01-02"), source: s("ord_1") } => "settled/2026-01-02/ord_1";
            Index::TransactionSync { card: id("card_") } => format!("txsync/card_{U}");
            Index::MonthlyFeeOrder { card: id("card_"), period: s("2026-01") } => format!("mfeeorder/card_{U}/2026-01");
            Marker::DepositConfirm { deposit: s("d1"), account: s("gm1") } => "depconfirm/d1\0gm1";
            Marker::LegacyDepositConfirm { deposit: s("d1") } => "depconfirm/d1";
            Marker::OrderConfirm { order: id("ord_") } => format!("ordconfirm/ord_{U}");
            Marker::Withdrawal { withdrawal: id("wdr_") } => format!("withdrawal/wdr_{U}");
            Marker::WithdrawalRelease { withdrawal: id("wdr_") } => format!("wdrrelease/wdr_{U}");
            Marker::CardholderConfirm { cardholder: id("chd_") } => format!("chdconfirm/chd_{U}");
            Marker::TransactionConfirm { card: id("card_"), channel_transaction: s("t/1") } => format!("txnconfirm/card_{U}/t/1");
            Marker::CardOpen { card: id("card_") } => format!("cardopen/card_{U}");
            Context::WebhookSecret { merchant: id("mch_") } => format!("whsec/mch_{U}");
            Context::Gateway { merchant: s("gm1") } => "gw/gm1";
            Context::ChannelSecret { channel: id("chl_"), what: s("api_key") } => format!("chl/chl_{U}/api_key");
            Context::Cardholder { cardholder: id("chd_"), field: s("id_document") } => format!("chd/chd_{U}/id_document");
            Source::MonthlyFee { card: id("card_"), period: s("2026-01") } => format!("mfee/card_{U}/2026-01");
            Source::GatewayDeposit { deposit: s("d1") } => "gwdep/d1";
            Source::Settle { source: s("ord_1") } => "settle/ord_1";
            Source::SettlementRun { date: s("2026-01-02") } => "settlement/2026-01-02";
            Sandbox::ChannelKey { digest: s("ab12") } => "channel_key/ab12";
            Sandbox::Channel { channel: s("c1") } => "channel/c1";
            Sandbox::ChannelOperation { channel: s("c1"), request: s("r1") } => "ch/c1/r1";
            Sandbox::Cardholder { cardholder: s("h1") } => "cardholder/h1";
            Sandbox::Card { card: s("k1") } => "card/k1";
            Sandbox::Master { channel: s("c1"), currency: s("USD") } => "master/c1/USD";
            Sandbox::Transaction { card: s("k1"), transaction: s("t1") } => "txn/k1/t1";
            Sandbox::Account { merchant: s("gm1") } => "account/gm1";
            Sandbox::Order { order: s("o1") } => "order/o1";
            Sandbox::Deposit { deposit: s("d1") } => "deposit/d1";
            Sandbox::Payout { payout: s("p1") } => "payout/p1";
            Sandbox::Payment { gateway_order: s("go1") } => "payment/go1";
            Sandbox::Split { gateway_order: s("go1") } => "split/go1";
            Sandbox::GatewayOperation { merchant: s("gm1"), request: s("r1") } => "gw/gm1/r1";
            Sandbox::Onboarding { onboarding: s("o1") } => "gwo/o1";
            Sandbox::OnboardingRequest { merchant: s("gm1"), request: s("r1") } => "gworeq/gm1/r1";
            Sandbox::AgreementRequest { merchant: s("gm1"), request: s("r1") } => "gwareq/gm1/r1";
            Sandbox::ChannelSecret { channel: s("c1"), what: s("api_key") } => "sandbox/channel/c1/api_key";
            Sandbox::AccountSecret { merchant: s("gm1"), what: s("api_key") } => "sandbox/account/gm1/api_key";
        }
        // A channel's callback sender is `chl/{id}`, its credentials `chl/{id}/{what}`.
        assert_eq!(Context::Channel { channel: id("chl_") }.text(), format!("chl/chl_{U}"));
        assert_eq!(Index::TREE, pelago_storage::Tree::Index);
        assert_eq!(Marker::TREE, pelago_storage::Tree::Operations);
        assert_eq!(scan_prefix(MCHD, &[&"mch_1"]), "mchd/mch_1/");
    }
}
