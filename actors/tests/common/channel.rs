//! An in-process card channel that answers at once: opens and funds every
//! card, freezes and unfreezes. Shared by the actor tests and by
//! `benches/topups.rs` (included there by path). `on_open` lets a test look
//! at the store while the channel is being called; `unknown_opens` makes
//! every opening's outcome unknown (a timeout).

use std::sync::Arc;

use pelago_actors::ports::{
    CardAction, CardChannel, CardDeleted, CardDetails, CardFunded, CardOpened, CardholderCreated,
    ChannelCardholder, ChannelDirectory, ChannelOperation, ChannelTransaction, CreateCardholder, FundCard,
    OpenCard, Outcome, Reply,
};
use pelago_storage::{ChannelId, Money};

type OpenHook = Box<dyn Fn(&OpenCard) + Send + Sync>;

#[derive(Default)]
pub struct InstantChannel {
    pub on_open: Option<OpenHook>,
    pub unknown_opens: bool,
}

fn not_here<T>() -> Outcome<T> {
    Outcome::Declined { reason: "not offered by the instant test channel".into() }
}

impl CardChannel for InstantChannel {
    fn create_cardholder(&self, _: CreateCardholder) -> Reply<'_, CardholderCreated> {
        Box::pin(async { not_here() })
    }
    fn open_card(&self, req: OpenCard) -> Reply<'_, CardOpened> {
        if let Some(hook) = &self.on_open {
            hook(&req);
        }
        let unknown = self.unknown_opens;
        Box::pin(async move {
            if unknown {
                return Outcome::Unknown { detail: "the test channel timed out".into() };
            }
            Outcome::Done(CardOpened {
                channel_card_id: format!("fake_{}", req.card_id),
                last4: "0000".into(),
                balance: Money::zero(req.currency),
            })
        })
    }
    fn fund_card(&self, req: FundCard) -> Reply<'_, CardFunded> {
        Box::pin(async move { Outcome::Done(CardFunded { balance: req.amount }) })
    }
    fn freeze(&self, _: CardAction) -> Reply<'_, ()> {
        Box::pin(async { Outcome::Done(()) })
    }
    fn unfreeze(&self, _: CardAction) -> Reply<'_, ()> {
        Box::pin(async { Outcome::Done(()) })
    }
    fn delete_card(&self, _: CardAction) -> Reply<'_, CardDeleted> {
        Box::pin(async { not_here() })
    }
    fn card_details(&self, _: String) -> Reply<'_, CardDetails> {
        Box::pin(async { not_here() })
    }
    fn list_transactions(&self, _: String, _: Option<String>) -> Reply<'_, Vec<ChannelTransaction>> {
        Box::pin(async { Outcome::Done(vec![]) })
    }
    fn transaction(&self, _: String, _: String) -> Reply<'_, ChannelTransaction> {
        Box::pin(async { not_here() })
    }
    fn cardholder(&self, _: String) -> Reply<'_, ChannelCardholder> {
        Box::pin(async { not_here() })
    }
    fn master_balance(&self) -> Reply<'_, Vec<Money>> {
        Box::pin(async { Outcome::Done(vec![]) })
    }
    fn operation(&self, _: String) -> Reply<'_, ChannelOperation> {
        Box::pin(async { Outcome::Done(ChannelOperation::NotFound) })
    }
}

/// Every channel id is the one channel.
pub struct OneChannel(pub Arc<dyn CardChannel>);

impl ChannelDirectory for OneChannel {
    fn channel(&self, _: &ChannelId) -> Option<Arc<dyn CardChannel>> {
        Some(Arc::clone(&self.0))
    }
}
