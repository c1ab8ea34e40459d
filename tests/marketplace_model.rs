//! The marketplace model test (issue 16): seeded random sequences of split
//! payments (random lines over a few recipients and the merchant, some over
//! the commission cap), buyer pay / fail / checkout expiry, captures, cancels, clock moves with
//! their settlement run (T+1) and batch splits (random subsets, including
//! payments already split, not captured or not settled, and repeats), the
//! gateway sometimes refusing a capture or a split or timing out (202, then
//! finished by the resolver), refunds (channel and split portions, before and
//! after the split, over-refunds and the other refusals of §7 with their
//! `param`, 402 when a debited account would go below zero, the gateway
//! refusing — `failed`, mirrored — or timing out — 202, resolved), recipient
//! withdrawals (inside and outside the window, with commission, over the cap,
//! over the balance, payouts to a `FAIL…` account, refused or unknown), run
//! against the real binary and against a plain model of MARKETPLACE.md §8:
//! per party in-transit and available, the merchant's pending and available,
//! `gateway:clearing`, the number of journal entries. After every step the
//! answer is the model's (status, code, `param`), every payment object, each
//! recipient's balance and the merchant's balance equal the model, and
//! `/admin/v1/ledger/check` is balanced with no negative account and exactly
//! the model's entries (each booking once).
//!
//! An operation is a variant of [`Op`]: drawn by [`Op::draw`], predicted by
//! [`Model::apply`] (which also moves the model's money), performed by
//! [`World::perform`].
//!
//! `PELAGO_MODEL_SEED` repeats a run (the seed is printed);
//! `PELAGO_MODEL_STEPS` (default 250) makes it longer.

mod common;

use std::{collections::BTreeMap, future::Future};

use chrono::{DateTime, Utc};
use common::{
    Json, Key, Service, clock, eventually, ledger_balanced, list_all,
    marketplace::{create_payment, fault, recipient_balance, seller_paid_to, split_batch, usd},
    rng::{Rng, env_num, seed_from_env},
    secs, send, settle, when,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Who a line's money belongs to: the merchant (its pending / available) or
/// one of the recipients (by index; its in_transit / available).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Party {
    Merchant,
    Recipient(usize),
}

#[derive(Debug, Clone)]
struct Line {
    party: Party,
    kind: &'static str,
    amount: i64,
    /// Σ of the line's refunded portions.
    refunded: i64,
}

impl Line {
    fn new(party: Party, kind: &'static str, amount: i64) -> Line {
        Line { party, kind, amount, refunded: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Status {
    #[default]
    Pending,
    Authorized,
    Succeeded,
    Declined,
    Expired,
    Canceled,
    PartiallyRefunded,
    Refunded,
}

impl Status {
    fn api(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Authorized => "AUTHORIZED",
            Status::Succeeded => "SUCCEEDED",
            Status::Declined => "DECLINED",
            Status::Expired => "EXPIRED",
            Status::Canceled => "CANCELED",
            Status::PartiallyRefunded => "PARTIALLY_REFUNDED",
            Status::Refunded => "REFUNDED",
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Payment {
    id: String,
    amount: i64,
    capture: bool,
    lines: Vec<Line>,
    status: Status,
    /// The model day it was captured on (SUCCEEDED).
    captured_day: Option<u32>,
    settled: bool,
    split: bool,
    /// Σ of the channel portions refunded to the buyer.
    refunded_amount: i64,
    /// Refunds created for it (succeeded or failed).
    refunds: usize,
    /// What the split moved of each line (its amount less its refunds then;
    /// `None`: nothing left, skipped).
    split_amounts: Vec<Option<i64>>,
}

impl Payment {
    /// Captured, and not refunded to the buyer whole (§7 refund check 1, batch check 4).
    fn refundable(&self) -> bool {
        matches!(self.status, Status::Succeeded | Status::PartiallyRefunded)
    }
}

/// A refund request: `amount` (the channel portion) and `splits` (line, amount).
/// Lines are `i64` so that a drawn request may name a line that is not there.
#[derive(Debug, Clone)]
struct RefundAsk {
    amount: Option<i64>,
    splits: Option<Vec<(i64, i64)>>,
}

/// A recipient withdrawal request: W, K, and whether the service clock is
/// moved outside the window (21:00 local) for it.
#[derive(Debug, Clone)]
struct WithdrawAsk {
    recipient: usize,
    amount: i64,
    commission: Option<i64>,
    window_closed: bool,
}

/// One operation of a sequence; indices name the model's payments.
#[derive(Debug, Clone)]
enum Op {
    Create {
        capture: bool,
        lines: Vec<Line>,
    },
    /// The sandbox buyer on the checkout page.
    Buyer(usize, Buyer),
    Capture(usize, Gateway),
    Cancel(usize),
    /// The service clock moves to the next day (02:00Z) and that date's settlement run completes.
    NextDay,
    Split(Vec<usize>, Gateway),
    Refund(usize, RefundAsk, Gateway),
    /// The gateway's answer is the payout's (answered, or timing out).
    Withdraw(WithdrawAsk, Gateway),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buyer {
    Pay,
    Fail,
    Expire,
}

impl Buyer {
    fn action(self) -> &'static str {
        match self {
            Buyer::Pay => "pay",
            Buyer::Fail => "fail",
            Buyer::Expire => "expire",
        }
    }
}

/// How the sandbox gateway treats the one capture, split, refund or payout request an
/// operation makes (a gateway fault armed for that request only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gateway {
    Answers,
    /// Refused: the capture 502 and unchanged, the batch's items `failed`, the
    /// refund or withdrawal `failed` and its entry mirrored.
    Declines,
    /// Unknown: 202, and the resolver finishes it with the same request id.
    TimesOut,
}

impl Gateway {
    fn draw(rng: &mut Rng) -> Gateway {
        match rng.below(6) {
            0 => Gateway::Declines,
            1 => Gateway::TimesOut,
            _ => Gateway::Answers,
        }
    }

    fn fault(self) -> Option<&'static str> {
        match self {
            Gateway::Answers => None,
            Gateway::Declines => Some("decline"),
            Gateway::TimesOut => Some("timeout"),
        }
    }
}

/// What the service must answer.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Done(StatusCode),
    Refused(StatusCode, &'static str, Option<String>),
}

#[derive(Debug, Default, Clone, Copy)]
struct Account {
    in_transit: i64,
    available: i64,
}

/// The recipients of the run: (split agreement, commission agreement bps,
/// bank account; the sandbox's payouts to a `FAIL…` account fail).
const RECIPIENTS: [(bool, Option<u32>, &str); 4] = [
    (true, Some(1_000), "ACC123456"),
    (true, Some(500), "ACC654321"),
    (true, None, "ACC111111"),
    (true, Some(800), "FAIL22222"),
];

/// What the service's withdrawal window is in the model's days: open at 02:00Z
/// (10:00 at +08:00), closed at 13:00Z (21:00).
const CLOSED_HOUR: u32 = 13;

fn half_up(value: i64, bps: i64) -> i64 {
    (value * bps + 5_000) / 10_000
}

/// The model of §6–§8 for one merchant.
#[derive(Default)]
struct Model {
    payments: Vec<Payment>,
    accounts: BTreeMap<Party, Account>,
    clearing: i64,
    /// Journal entries booked for the merchant's marketplace.
    entries: u64,
    day: u32,
    /// Withdrawals created per recipient (succeeded or failed).
    withdrawals: BTreeMap<usize, usize>,
    /// The final `status` the last refund or withdrawal must have (after the
    /// resolver, for an unknown outcome).
    outcome: Option<&'static str>,
}

impl Op {
    /// A random operation, mostly one that can succeed in the model's state.
    fn draw(rng: &mut Rng, model: &Model) -> Op {
        let pick = |rng: &mut Rng, wanted: &dyn Fn(&Payment) -> bool| -> usize {
            let fitting: Vec<usize> =
                (0..model.payments.len()).filter(|&i| wanted(&model.payments[i])).collect();
            if !fitting.is_empty() && !rng.one_in(5) {
                fitting[rng.below(fitting.len() as u64) as usize]
            } else {
                rng.below(model.payments.len() as u64) as usize
            }
        };
        if model.payments.is_empty() {
            return Op::create(rng);
        }
        match rng.below(26) {
            0..=4 => Op::create(rng),
            5..=8 => Op::Buyer(pick(rng, &|p| p.status == Status::Pending), Buyer::Pay),
            9 => {
                let buyer = if rng.one_in(2) { Buyer::Fail } else { Buyer::Expire };
                Op::Buyer(pick(rng, &|p| p.status == Status::Pending), buyer)
            }
            10..=11 => Op::Capture(pick(rng, &|p| p.status == Status::Authorized), Gateway::draw(rng)),
            12 => Op::Cancel(pick(rng, &|p| matches!(p.status, Status::Pending | Status::Authorized))),
            13..=15 => Op::NextDay,
            20..=22 => {
                let i = pick(rng, &Payment::refundable);
                Op::Refund(i, RefundAsk::draw(rng, &model.payments[i]), Gateway::draw(rng))
            }
            23..=25 => {
                // A payout is refused only by the account (`FAIL…`): the sandbox
                // has no decline fault for it.
                let gateway = if rng.one_in(6) { Gateway::TimesOut } else { Gateway::Answers };
                Op::Withdraw(WithdrawAsk::draw(rng, model), gateway)
            }
            _ => {
                let n = 1 + rng.below(4) as usize;
                let splittable = |p: &Payment| p.settled && !p.split;
                let mut items: Vec<usize> = (0..n).map(|_| pick(rng, &splittable)).collect();
                items.dedup();
                if rng.one_in(8) {
                    items.push(items[0]); // a repeated item: refused
                }
                Op::Split(items, Gateway::draw(rng))
            }
        }
    }

    /// A payment of 1–3 sale lines to random recipients, maybe a commission
    /// (sometimes over the cap) and a payment fee, both the merchant's.
    fn create(rng: &mut Rng) -> Op {
        let mut lines = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let kind = if rng.one_in(2) { "PURCHASE" } else { "MARKETPLACE" };
            let party = Party::Recipient(rng.below(RECIPIENTS.len() as u64) as usize);
            lines.push(Line::new(party, kind, rng.between(1, 5_000)));
        }
        if !rng.one_in(3) {
            lines.push(Line::new(Party::Merchant, "COMMISSION", rng.between(1, 400)));
        }
        if rng.one_in(3) {
            lines.push(Line::new(Party::Merchant, "PAYMENTFEE", rng.between(1, 200)));
        }
        Op::Create { capture: !rng.one_in(3), lines }
    }
}

impl RefundAsk {
    /// Mostly a refund that fits the payment (portions of lines with a rest;
    /// before the split, an amount they add up to), sometimes one of §7's refusals.
    fn draw(rng: &mut Rng, p: &Payment) -> RefundAsk {
        let rest = p.amount - p.refunded_amount;
        let mut portions: Vec<(i64, i64)> = Vec::new();
        for (j, l) in p.lines.iter().enumerate() {
            let left = l.amount - l.refunded;
            if left > 0 && (portions.is_empty() || rng.one_in(2)) {
                let amount = if rng.one_in(4) { left } else { rng.between(1, left) };
                portions.push((j as i64, amount));
            }
        }
        let sum: i64 = portions.iter().map(|p| p.1).sum();
        let mut ask = if !p.split {
            if p.lines.len() == 1 && rng.one_in(2) {
                RefundAsk { amount: Some(rng.between(1, rest.max(1))), splits: None }
            } else {
                RefundAsk { amount: Some(sum.max(1)), splits: Some(portions) }
            }
        } else {
            match rng.below(3) {
                0 => RefundAsk { amount: Some(rng.between(1, rest.max(1))), splits: None },
                1 => RefundAsk { amount: None, splits: Some(portions) },
                _ => RefundAsk {
                    amount: Some(rng.between(1, sum.clamp(1, rest.max(1)))),
                    splits: Some(portions),
                },
            }
        };
        match rng.below(12) {
            0 => ask.amount = Some(rest + rng.between(1, 50)), // over-refund to the buyer
            1 => {
                if let Some((_, a)) = ask.splits.as_mut().and_then(|s| s.first_mut()) {
                    *a += p.amount; // more than the line has left
                }
            }
            2 => {
                if let Some(s) = ask.splits.as_mut().filter(|s| !s.is_empty()) {
                    let again = if rng.one_in(2) { s[0] } else { (p.lines.len() as i64, 1) };
                    s.push(again); // a repeated line, or one that is not there
                }
            }
            3 => ask.amount = None, // before the split: refused; after: split-only
            4 => ask.amount = ask.amount.map(|a| a + 1), // before the split: Σ splits ≠ amount
            _ => {}
        }
        ask
    }
}

impl WithdrawAsk {
    /// Mostly a withdrawal of part of what the recipient has, sometimes with
    /// commission (at times over the cap or ≥ W), more than the balance, or
    /// outside the window.
    fn draw(rng: &mut Rng, model: &Model) -> WithdrawAsk {
        let recipient = rng.below(RECIPIENTS.len() as u64) as usize;
        let available = model.accounts.get(&Party::Recipient(recipient)).map_or(0, |a| a.available);
        let amount = if rng.one_in(6) || available == 0 {
            available + rng.between(1, 500)
        } else {
            rng.between(1, available)
        };
        let bps = i64::from(RECIPIENTS[recipient].1.unwrap_or(0));
        let commission = match rng.below(6) {
            0 | 1 => None,
            2 => Some(half_up(amount, bps) + 1),
            3 if rng.one_in(3) => Some(amount),
            _ => Some(rng.between(0, half_up(amount, bps)).max(1)),
        };
        WithdrawAsk { recipient, amount, commission, window_closed: rng.one_in(8) }
    }
}

impl Model {
    fn account(&mut self, party: Party) -> &mut Account {
        self.accounts.entry(party).or_default()
    }

    /// `marketplace_collection`: clearing −A, each line's party in transit +a_i.
    fn collect(&mut self, i: usize) {
        let p = self.payments[i].clone();
        self.clearing -= p.amount;
        for line in &p.lines {
            self.account(line.party).in_transit += line.amount;
        }
        self.entries += 1;
        let day = self.day;
        let p = &mut self.payments[i];
        p.status = Status::Succeeded;
        p.captured_day = Some(day);
    }

    /// What the buyer makes of a PENDING payment: Pay SUCCEEDED (AUTHORIZED
    /// with `capture` false), Fail DECLINED, the checkout's expiry EXPIRED.
    fn buyer_status(&self, i: usize, buyer: Buyer) -> Status {
        match buyer {
            Buyer::Pay if self.payments[i].capture => Status::Succeeded,
            Buyer::Pay => Status::Authorized,
            Buyer::Fail => Status::Declined,
            Buyer::Expire => Status::Expired,
        }
    }

    /// What the service must answer to `op`, with the model moved as it must be.
    /// `created` is the id the service gave a created payment.
    fn apply(&mut self, op: &Op, created: Option<&str>) -> Expect {
        let conflict = || Expect::Refused(StatusCode::CONFLICT, "invalid_state", None);
        match op {
            Op::Create { capture, lines } => {
                let amount: i64 = lines.iter().map(|l| l.amount).sum();
                let bps = lines
                    .iter()
                    .filter_map(|l| match l.party {
                        Party::Recipient(r) if matches!(l.kind, "PURCHASE" | "MARKETPLACE") => Some(r),
                        _ => None,
                    })
                    .map(|r| RECIPIENTS[r].1.map_or(0, i64::from))
                    .min()
                    .unwrap_or(0);
                let commission: i64 = lines.iter().filter(|l| l.kind == "COMMISSION").map(|l| l.amount).sum();
                if commission > half_up(amount, bps) {
                    let param = Some("split_marketplace".to_owned());
                    return Expect::Refused(StatusCode::BAD_REQUEST, "commission_limit_exceeded", param);
                }
                self.payments.push(Payment {
                    id: created.unwrap_or_default().to_owned(),
                    amount,
                    capture: *capture,
                    lines: lines.clone(),
                    ..Payment::default()
                });
                Expect::Done(StatusCode::CREATED)
            }
            // The buyer repeating what they did is answered as the payment is (the
            // sandbox checkout answers a repeated settlement without a second callback).
            Op::Buyer(i, buyer) => {
                let (now, then) = (self.payments[*i].status, self.buyer_status(*i, *buyer));
                // A paid payment refunded since is still the order the buyer paid.
                let refunded = matches!(now, Status::PartiallyRefunded | Status::Refunded);
                if now == then || (then == Status::Succeeded && refunded) {
                    return Expect::Done(StatusCode::OK);
                }
                if now != Status::Pending {
                    return conflict();
                }
                if then == Status::Succeeded {
                    self.collect(*i);
                } else {
                    self.payments[*i].status = then;
                }
                Expect::Done(StatusCode::OK)
            }
            Op::Capture(i, _) if self.payments[*i].status != Status::Authorized => conflict(),
            Op::Capture(_, Gateway::Declines) => {
                Expect::Refused(StatusCode::BAD_GATEWAY, "upstream_error", None)
            }
            Op::Capture(i, gateway) => {
                self.collect(*i);
                let answered =
                    if *gateway == Gateway::TimesOut { StatusCode::ACCEPTED } else { StatusCode::OK };
                Expect::Done(answered)
            }
            Op::Cancel(i) if !matches!(self.payments[*i].status, Status::Pending | Status::Authorized) => {
                conflict()
            }
            Op::Cancel(i) => {
                self.payments[*i].status = Status::Canceled;
                Expect::Done(StatusCode::OK)
            }
            Op::NextDay => {
                // T+1: the run for the new day settles what was captured before its 00:00Z; no entry.
                self.day += 1;
                let day = self.day;
                for p in &mut self.payments {
                    // Refunded whole: nothing left to settle.
                    if p.refundable() && p.captured_day.is_some_and(|d| d < day) {
                        p.settled = true;
                    }
                }
                Expect::Done(StatusCode::ACCEPTED)
            }
            Op::Split(items, gateway) => self.split(items, *gateway),
            Op::Refund(i, ask, gateway) => self.refund(*i, ask, *gateway),
            Op::Withdraw(ask, gateway) => self.withdraw(ask, *gateway),
        }
    }

    /// The balances after `moves` (party, Δin_transit, Δavailable), or `None`
    /// if one of them would go below zero (§8: such an entry is refused whole).
    fn try_move(&self, moves: &[(Party, i64, i64)]) -> Option<BTreeMap<Party, Account>> {
        let mut after = self.accounts.clone();
        for &(party, in_transit, available) in moves {
            let a = after.entry(party).or_default();
            a.in_transit += in_transit;
            a.available += available;
        }
        after.values().all(|a| a.in_transit >= 0 && a.available >= 0).then_some(after)
    }

    /// §7's refund checks 1–7 in order, then the entry (before the split: the
    /// portions' in transit; after: their available, the merchant's available
    /// +D), the payment's lines and channel refunded; the gateway's refusal
    /// mirrors it all (C = 0: no gateway call).
    fn refund(&mut self, i: usize, ask: &RefundAsk, gateway: Gateway) -> Expect {
        let invalid =
            |param: String| Expect::Refused(StatusCode::BAD_REQUEST, "invalid_request", Some(param));
        let p = self.payments[i].clone();
        let portions = ask.splits.clone().filter(|s| !s.is_empty());
        let whole_refund_of_a_refunded = p.status == Status::Refunded && ask.amount.is_none();
        if !p.refundable() && !whole_refund_of_a_refunded {
            return Expect::Refused(StatusCode::CONFLICT, "invalid_state", None);
        }
        if (ask.amount.is_none() && portions.is_none()) || (!p.split && ask.amount.is_none()) {
            return invalid("amount".into());
        }
        let channel = ask.amount.unwrap_or(0);
        if p.refunded_amount + channel > p.amount {
            return invalid("amount.value".into());
        }
        let mut portions = portions.unwrap_or_default();
        for (j, &(line, _)) in portions.iter().enumerate() {
            let there = usize::try_from(line).is_ok_and(|l| l < p.lines.len());
            if !there || portions[..j].iter().any(|q| q.0 == line) {
                return invalid(format!("splits[{j}].line"));
            }
        }
        for (j, &(line, amount)) in portions.iter().enumerate() {
            let line = &p.lines[line as usize];
            if line.refunded + amount > line.amount {
                return invalid(format!("splits[{j}].amount.value"));
            }
        }
        if !p.split {
            if portions.is_empty() {
                if p.lines.len() != 1 {
                    return invalid("splits".into());
                }
                portions.push((0, channel));
            } else if portions.iter().map(|q| q.1).sum::<i64>() != channel {
                return invalid("splits".into());
            }
        }
        let taken: i64 = portions.iter().map(|q| q.1).sum();
        let mut moves: Vec<(Party, i64, i64)> = portions
            .iter()
            .map(|&(line, amount)| {
                let party = p.lines[line as usize].party;
                if p.split { (party, 0, -amount) } else { (party, -amount, 0) }
            })
            .collect();
        if p.split {
            moves.push((Party::Merchant, 0, taken - channel));
        }
        let Some(after) = self.try_move(&moves) else {
            return Expect::Refused(StatusCode::PAYMENT_REQUIRED, "insufficient_funds", None);
        };
        self.payments[i].refunds += 1;
        self.entries += 1;
        if channel > 0 && gateway == Gateway::Declines {
            // Refused by the gateway: the mirror entry, the payment given back.
            self.entries += 1;
            self.outcome = Some("failed");
            return Expect::Done(StatusCode::CREATED);
        }
        self.accounts = after;
        self.clearing += channel;
        let payment = &mut self.payments[i];
        for &(line, amount) in &portions {
            payment.lines[line as usize].refunded += amount;
        }
        payment.refunded_amount += channel;
        payment.status = match payment.refunded_amount {
            0 => Status::Succeeded,
            r if r == payment.amount => Status::Refunded,
            _ => Status::PartiallyRefunded,
        };
        self.outcome = Some("succeeded");
        let answered = channel > 0 && gateway == Gateway::TimesOut;
        Expect::Done(if answered { StatusCode::ACCEPTED } else { StatusCode::CREATED })
    }

    /// §7's withdrawal checks 1–6 in order, then the hold and the payout:
    /// paid (clearing +(W−K), the merchant's available +K) or, refused or to a
    /// `FAIL…` account, the hold given back.
    fn withdraw(&mut self, ask: &WithdrawAsk, gateway: Gateway) -> Expect {
        let (w, k) = (ask.amount, ask.commission.unwrap_or(0));
        let param = Some("commission.value".to_owned());
        if k >= w {
            return Expect::Refused(StatusCode::BAD_REQUEST, "invalid_request", param);
        }
        let bps = i64::from(RECIPIENTS[ask.recipient].1.unwrap_or(0));
        if k > half_up(w, bps) {
            return Expect::Refused(StatusCode::BAD_REQUEST, "commission_limit_exceeded", param);
        }
        if ask.window_closed {
            return Expect::Refused(StatusCode::CONFLICT, "withdrawal_window_closed", None);
        }
        let party = Party::Recipient(ask.recipient);
        if self.try_move(&[(party, 0, -w)]).is_none() {
            return Expect::Refused(StatusCode::PAYMENT_REQUIRED, "insufficient_funds", None);
        }
        *self.withdrawals.entry(ask.recipient).or_default() += 1;
        self.entries += 2; // the hold, then paid or reversed
        if RECIPIENTS[ask.recipient].2.starts_with("FAIL") {
            self.outcome = Some("failed");
        } else {
            self.account(party).available -= w;
            self.account(Party::Merchant).available += k;
            self.clearing += w - k;
            self.outcome = Some("succeeded");
        }
        Expect::Done(if gateway == Gateway::TimesOut { StatusCode::ACCEPTED } else { StatusCode::CREATED })
    }

    /// §7's checks in order (2: repeated; 3: already split; 4: not captured
    /// and settled), items by index within each; else one gateway request:
    /// each item executed (at once, or by the resolver after a 202), or each
    /// failed and its payment back to not split.
    fn split(&mut self, items: &[usize], gateway: Gateway) -> Expect {
        let param = |i: usize| Some(format!("items[{i}].payment_id"));
        if let Some(i) = (0..items.len()).find(|&i| items[..i].contains(&items[i])) {
            return Expect::Refused(StatusCode::BAD_REQUEST, "invalid_request", param(i));
        }
        if let Some(i) = (0..items.len()).find(|&i| self.payments[items[i]].split) {
            return Expect::Refused(StatusCode::CONFLICT, "already_split", param(i));
        }
        let unsplittable = |p: &Payment| !p.refundable() || !p.settled;
        if let Some(i) = (0..items.len()).find(|&i| unsplittable(&self.payments[items[i]])) {
            return Expect::Refused(StatusCode::CONFLICT, "invalid_state", param(i));
        }
        if gateway == Gateway::Declines {
            return Expect::Done(StatusCode::CREATED);
        }
        for &i in items {
            // `split`: each party's in transit −m_i, available +m_i, m_i = amount − refunded.
            let mut moved_lines = Vec::new();
            for line in self.payments[i].lines.clone() {
                let moved = line.amount - line.refunded;
                let account = self.account(line.party);
                account.in_transit -= moved;
                account.available += moved;
                moved_lines.push(Some(moved).filter(|&m| m > 0));
            }
            self.payments[i].split_amounts = moved_lines;
            self.payments[i].split = true;
            self.entries += 1;
        }
        Expect::Done(if gateway == Gateway::TimesOut { StatusCode::ACCEPTED } else { StatusCode::CREATED })
    }
}

/// The service side: the merchant, its recipients, the clock's day 0.
struct World {
    svc: Service,
    key: Key,
    recipients: Vec<String>,
    day_zero: DateTime<Utc>,
}

impl World {
    fn line_json(&self, line: &Line) -> Value {
        match line.party {
            Party::Recipient(r) => {
                json!({"recipient_id": self.recipients[r], "type": line.kind, "amount": usd(line.amount)})
            }
            Party::Merchant => json!({"type": line.kind, "amount": usd(line.amount)}),
        }
    }

    async fn post(&self, path: &str) -> (StatusCode, Value) {
        send(&self.svc, &self.key, Method::POST, path, None).await
    }

    /// Performs `op` against the service: its status and body.
    async fn perform(&self, op: &Op, model: &Model) -> (StatusCode, Value) {
        let id = |i: &usize| model.payments[*i].id.clone();
        match op {
            Op::Create { capture, lines } => {
                let amount: i64 = lines.iter().map(|l| l.amount).sum();
                let lines: Vec<Value> = lines.iter().map(|l| self.line_json(l)).collect();
                let body = json!({"amount": usd(amount), "merchant_reference": "model-order",
                                  "capture": capture, "split_marketplace": lines});
                create_payment(&self.svc, &self.key, &body).await
            }
            Op::Buyer(i, buyer) => {
                self.post(&format!("/v1/test_helpers/payments/{}/{}", id(i), buyer.action())).await
            }
            Op::Capture(i, gateway) => {
                let (status, body) = self
                    .with_gateway("capture", *gateway, || async {
                        self.post(&format!("/v1/payments/{}/capture", id(i))).await
                    })
                    .await;
                if status == StatusCode::ACCEPTED {
                    let path = format!("/v1/payments/{}", id(i));
                    self.until(&path, |p| p["pending_action"].is_null()).await;
                }
                (status, body)
            }
            Op::Cancel(i) => self.post(&format!("/v1/payments/{}/cancel", id(i))).await,
            Op::NextDay => {
                let day = i64::from(model.day) + 1;
                clock::set(&self.svc, clock::day_after(self.day_zero, day, 2, 0, 0)).await;
                let date = clock::date(clock::day_after(self.day_zero, day, 0, 0, 0));
                (StatusCode::ACCEPTED, settle(&self.svc, &date).await)
            }
            Op::Split(items, gateway) => {
                let ids: Vec<String> = items.iter().map(id).collect();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let (status, body) =
                    self.with_gateway("split", *gateway, || split_batch(&self.svc, &self.key, &ids)).await;
                if status == StatusCode::ACCEPTED {
                    let path = format!("/v1/split-batches/{}", body.str("id"));
                    self.until(&path, |b| b["status"] == "completed").await;
                }
                (status, body)
            }
            Op::Refund(i, ask, gateway) => {
                let mut body = json!({"reason": "model"});
                if let Some(amount) = ask.amount {
                    body["amount"] = usd(amount);
                }
                if let Some(splits) = &ask.splits {
                    let splits: Vec<Value> =
                        splits.iter().map(|(line, a)| json!({"line": line, "amount": usd(*a)})).collect();
                    body["splits"] = json!(splits);
                }
                let path = format!("/v1/payments/{}/refunds", id(i));
                let (status, refund) = self
                    .with_gateway("refund", *gateway, || {
                        send(&self.svc, &self.key, Method::POST, &path, Some(&body))
                    })
                    .await;
                if status != StatusCode::ACCEPTED {
                    return (status, refund);
                }
                let path = format!("/v1/refunds/{}", refund.str("id"));
                (status, self.until(&path, |r| r["status"] != "processing").await)
            }
            Op::Withdraw(ask, gateway) => {
                let mut body = json!({"amount": usd(ask.amount), "reference": "model"});
                if let Some(k) = ask.commission {
                    body["commission"] = usd(k);
                }
                let day = i64::from(model.day);
                if ask.window_closed {
                    clock::set(&self.svc, clock::day_after(self.day_zero, day, CLOSED_HOUR, 0, 0)).await;
                }
                let path = format!("/v1/recipients/{}/withdrawals", self.recipients[ask.recipient]);
                let (status, w) = self
                    .with_gateway("payout", *gateway, || {
                        send(&self.svc, &self.key, Method::POST, &path, Some(&body))
                    })
                    .await;
                if ask.window_closed {
                    clock::set(&self.svc, clock::day_after(self.day_zero, day, 2, 0, 0)).await;
                }
                if status != StatusCode::ACCEPTED {
                    return (status, w);
                }
                let path = format!("{path}/{}", w.str("id"));
                (status, self.until(&path, |w| w["status"] != "processing").await)
            }
        }
    }

    /// Runs `call` with the gateway's next `operation` request behaving as
    /// `gateway` (the fault is cleared after, whether or not it was used).
    async fn with_gateway<F: Future<Output = (StatusCode, Value)>>(
        &self,
        operation: &str,
        gateway: Gateway,
        call: impl FnOnce() -> F,
    ) -> (StatusCode, Value) {
        let Some(behavior) = gateway.fault() else { return call().await };
        fault(&self.svc, operation, behavior).await;
        let answer = call().await;
        self.svc.clear_gateway_faults().await;
        answer
    }

    /// Polls the signed `GET path` until `done` holds (bounded).
    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(path, secs(30), async || {
            let (_, v) = send(&self.svc, &self.key, Method::GET, path, None).await;
            when(done(&v), v)
        })
        .await
    }

    /// Every payment of the merchant.
    async fn payments(&self) -> Vec<Value> {
        list_all(&self.svc, &self.key, "/v1/payments").await
    }
}

/// The service's answer is the model's.
fn check_answer(expect: &Expect, status: StatusCode, body: &Value, at: &str) {
    match expect {
        Expect::Done(want) => assert_eq!(status, *want, "{at}: {body}"),
        Expect::Refused(want, code, param) => {
            assert_eq!((status, body.code()), (*want, *code), "{at}: {body}");
            if let Some(param) = param {
                assert_eq!(body.param(), Some(param.as_str()), "{at}: {body}");
            }
        }
    }
}

/// Every payment object, every balance and the ledger are the model's.
async fn check_state(world: &World, model: &Model, base_entries: u64, at: &str) {
    let listed = world.payments().await;
    assert_eq!(listed.len(), model.payments.len(), "{at}: payments created or lost");
    let by_id: BTreeMap<&str, &Value> = listed.iter().map(|p| (p.str("id"), p)).collect();
    for want in &model.payments {
        let got = by_id.get(want.id.as_str()).unwrap_or_else(|| panic!("{at}: {} is missing", want.id));
        let summary = |p: &Value| {
            (
                p["status"].clone(),
                p["settled"].clone(),
                p["split"]["status"].clone(),
                p["captured_at"].is_string(),
            )
        };
        let split = if want.split { "executed" } else { "not_split" };
        let expected =
            (json!(want.status.api()), json!(want.settled), json!(split), want.captured_day.is_some());
        assert_eq!(summary(got), expected, "{at}: {got}");
        assert_eq!(got.i64("amount.value"), want.amount, "{at}: {got}");
        let refunded = got["refunded_amount"]["value"].as_i64().unwrap_or(0);
        assert_eq!(refunded, want.refunded_amount, "{at}: {got}");
        for (j, line) in want.lines.iter().enumerate() {
            let got_line = got.at(&format!("split_marketplace.{j}"));
            let recipient = match line.party {
                Party::Recipient(r) => json!(world.recipients[r]),
                Party::Merchant => Value::Null,
            };
            assert_eq!(got_line["recipient_id"], recipient, "{at}: line {j} of {got}");
            let split_amount = got_line["split_amount"]["value"].as_i64();
            assert_eq!(split_amount, want.split_amounts.get(j).copied().flatten(), "{at}: line {j} of {got}");
            assert_eq!(got_line["refunded"]["value"].as_i64().unwrap_or(0), line.refunded, "{at}: {got}");
        }
    }
    for (r, id) in world.recipients.iter().enumerate() {
        let want = model.accounts.get(&Party::Recipient(r)).copied().unwrap_or_default();
        let b = recipient_balance(&world.svc, &world.key, id).await;
        let got = (
            b["in_transit"].as_i64().unwrap_or(0),
            b["available"].as_i64().unwrap_or(0),
            b["withdrawing"].as_i64().unwrap_or(0),
        );
        assert_eq!(got, (want.in_transit, want.available, 0), "{at}: recipient {r} {b}");
        let withdrawals = list_all(&world.svc, &world.key, &format!("/v1/recipients/{id}/withdrawals")).await;
        let made = model.withdrawals.get(&r).copied().unwrap_or(0);
        assert_eq!(withdrawals.len(), made, "{at}: recipient {r}'s withdrawals created or lost");
    }
    let want = model.accounts.get(&Party::Merchant).copied().unwrap_or_default();
    let (_, b) = send(&world.svc, &world.key, Method::GET, "/v1/balance", None).await;
    let got = (
        b["balances"][0]["pending"].as_i64().unwrap_or(0),
        b["balances"][0]["available"].as_i64().unwrap_or(0),
    );
    assert_eq!(got, (want.in_transit, want.available), "{at}: the merchant's balance {b}");
    // The model's own books: what left the gateway's clearing sits with the parties.
    let held: i64 = model.accounts.values().map(|a| a.in_transit + a.available).sum();
    assert_eq!(model.clearing + held, 0, "{at}: the model is unbalanced");
    let check = ledger_balanced(&world.svc).await;
    assert_eq!(check.i64("entries") as u64, base_entries + model.entries, "{at}: each booking once: {check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketplace_balances_follow_the_model_over_random_sequences() {
    let seed = seed_from_env("PELAGO_MODEL_SEED");
    let steps = env_num("PELAGO_MODEL_STEPS", 250);
    let mut rng = Rng::new(seed);
    let svc = Service::temp(&[
        ("PELAGO_RATE_LIMIT", "100000,100000"),
        ("PELAGO_IP_RATE_LIMIT", "100000,100000"),
        ("PELAGO_UPSTREAM_TIMEOUT_MS", "600"),
    ]);
    let key = svc.merchant("Model market").await.key;
    let mut recipients = Vec::new();
    for (r, (split, bps, account)) in RECIPIENTS.iter().enumerate() {
        recipients.push(seller_paid_to(&svc, &key, &format!("Seller {r}"), account, *split, *bps).await.0);
    }
    // Day 0 is tomorrow 02:00Z: captures of a day stay before the next day's 00:00Z.
    let day_zero = clock::day_after(clock::now(&svc).await, 1, 2, 0, 0);
    clock::set(&svc, day_zero).await;
    let world = World { svc, key, recipients, day_zero };
    let base_entries = ledger_balanced(&world.svc).await.i64("entries") as u64;
    let mut model = Model::default();
    let mut faulted = 0;
    let mut refused: BTreeMap<&'static str, usize> = BTreeMap::new();
    for step in 0..steps {
        let op = Op::draw(&mut rng, &model);
        let at = format!("seed {seed} step {step} {op:?}");
        let (status, body) = world.perform(&op, &model).await;
        let created = body["id"].as_str().filter(|_| matches!(op, Op::Create { .. }));
        let expect = model.apply(&op, created);
        check_answer(&expect, status, &body, &at);
        if let Expect::Refused(_, code, _) = &expect {
            *refused.entry(code).or_default() += 1;
        }
        match (&op, &expect) {
            (Op::Create { .. }, Expect::Done(_)) => {
                assert_eq!(body["status"], "PENDING", "{at}: {body}");
                assert!(body["checkout_url"].is_string(), "{at}: {body}");
            }
            (Op::Split(items, gateway), Expect::Done(_)) => {
                let (batch, item) = match gateway {
                    Gateway::Answers => ("completed", "executed"),
                    Gateway::Declines => ("completed", "failed"),
                    Gateway::TimesOut => ("processing", "processing"),
                };
                assert_eq!(body["status"], batch, "{at}: {body}");
                assert_eq!(body.strs("items", "status"), vec![item; items.len()], "{at}: {body}");
            }
            (Op::Refund(i, ..), _) => {
                let path = format!("/v1/payments/{}/refunds", model.payments[*i].id);
                let refunds = list_all(&world.svc, &world.key, &path).await;
                assert_eq!(refunds.len(), model.payments[*i].refunds, "{at}: refunds created or lost");
            }
            _ => {}
        }
        if let Some(want) = model.outcome.take() {
            assert_eq!(body["status"], want, "{at}: {body}");
        }
        let gateway = match &op {
            Op::Capture(_, g) | Op::Split(_, g) | Op::Refund(_, _, g) | Op::Withdraw(_, g) => *g,
            _ => Gateway::Answers,
        };
        let reached_gateway = matches!(status.as_u16(), 200..=202 | 502);
        faulted += usize::from(gateway != Gateway::Answers && reached_gateway);
        check_state(&world, &model, base_entries, &at).await;
    }
    let split = model.payments.iter().filter(|p| p.split).count();
    let refunds: usize = model.payments.iter().map(|p| p.refunds).sum();
    let withdrawals: usize = model.withdrawals.values().sum();
    eprintln!(
        "marketplace model seed {seed}: {steps} steps, {} payments, {split} split, {refunds} refunds, \
         {withdrawals} withdrawals, {} days, {faulted} gateway calls refused or timed out; refused: {refused:?}",
        model.payments.len(),
        model.day
    );
}
