//! `HttpChannel`: the [`CardChannel`] adapter for channels of kind `http`
//! (the generic JSON protocol of [`super`]'s docs). It owns no state but the
//! channel's base URL and API key; the connection pool is shared.

use futures::FutureExt;
use pelago_actors::ports::{
    CardAction, CardChannel, CardDeleted, CardDetails, CardFunded, CardOpened, CardholderCreated,
    ChannelCardholder, ChannelOperation, ChannelTransaction, CreateCardholder, FundCard, OpenCard, Reply,
    RequestId, SecretString, SensitiveString,
};
use pelago_storage::Money;
use reqwest::Method;

use super::{UpstreamClient, channel_wire as wire};

/// Header carrying Pelago's request id on every mutating call.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

pub struct HttpChannel {
    client: UpstreamClient,
    base_url: String,
    api_key: SecretString,
}

impl HttpChannel {
    pub fn new(client: UpstreamClient, base_url: &str, api_key: SecretString) -> Self {
        Self { client, base_url: base_url.trim_end_matches('/').to_owned(), api_key }
    }

    fn request(&self, method: Method, path: &str, request_id: Option<&str>) -> reqwest::RequestBuilder {
        let mut builder = self
            .client
            .http()
            .request(method, format!("{}{}", self.base_url, path))
            .bearer_auth(self.api_key.expose());
        if let Some(id) = request_id {
            builder = builder.header(IDEMPOTENCY_HEADER, id);
        }
        builder
    }

    /// `GET {path}`, the answer made the port's type by `read`.
    fn get<A: serde::de::DeserializeOwned + Send + 'static, T: Send + 'static>(
        &self,
        path: String,
        read: fn(A) -> T,
    ) -> Reply<'_, T> {
        async move { self.client.send::<A>(self.request(Method::GET, &path, None)).await.map(read) }.boxed()
    }

    /// `POST {path}` once per `request_id` with a JSON `body`; a done answer
    /// made the port's type by `read`.
    fn post<B, A, T>(
        &self,
        request_id: String,
        path: String,
        body: B,
        read: impl FnOnce(A) -> T + Send + 'static,
    ) -> Reply<'_, T>
    where
        B: serde::Serialize + Send + 'static,
        A: serde::de::DeserializeOwned + Send + 'static,
        T: Send + 'static,
    {
        async move {
            let rb = self.request(Method::POST, &path, Some(&request_id)).json(&body);
            self.client.send::<A>(rb).await.map(read)
        }
        .boxed()
    }

    fn card_action(&self, req: CardAction, action: &str) -> Reply<'_, ()> {
        let path = format!("/cards/{}/{action}", encode(&req.channel_card_id));
        self.post(req.request_id, path, serde_json::json!({}), |_: wire::StatusAnswer| ())
    }
}

/// Ids go into paths; keep them to one segment whatever they hold.
pub(crate) fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

impl CardChannel for HttpChannel {
    fn create_cardholder(&self, req: CreateCardholder) -> Reply<'_, CardholderCreated> {
        let CreateCardholder { request_id, cardholder_id, bin, identity, id_document_number, address } = req;
        let body = wire::CreateCardholderBody { cardholder_id, bin, identity, id_document_number, address };
        self.post(request_id, "/cardholders".into(), body, wire::CardholderAnswer::into)
    }

    fn open_card(&self, req: OpenCard) -> Reply<'_, CardOpened> {
        let body = wire::OpenCardBody {
            card_id: req.card_id,
            cardholder_id: req.channel_cardholder_id,
            bin: req.bin,
            currency: req.currency,
        };
        self.post(req.request_id, "/cards".into(), body, |opened: wire::CardAnswer| {
            // A crash test's point: the channel opened the card, the card is not written yet.
            crate::failpoint::hit("cards.open.after_channel");
            opened.into()
        })
    }

    fn fund_card(&self, req: FundCard) -> Reply<'_, CardFunded> {
        let path = format!("/cards/{}/topups", encode(&req.channel_card_id));
        self.post(req.request_id, path, wire::TopupBody { amount: req.amount }, |a: wire::BalanceAnswer| {
            // A crash test's point between step 2 (applied at the channel) and step 3.
            crate::failpoint::hit("topups.after_channel");
            CardFunded { balance: a.balance }
        })
    }

    fn freeze(&self, req: CardAction) -> Reply<'_, ()> {
        self.card_action(req, "freeze")
    }

    fn unfreeze(&self, req: CardAction) -> Reply<'_, ()> {
        self.card_action(req, "unfreeze")
    }

    fn delete_card(&self, req: CardAction) -> Reply<'_, CardDeleted> {
        async move {
            let path = format!("/cards/{}", encode(&req.channel_card_id));
            let rb = self.request(Method::DELETE, &path, Some(&req.request_id));
            self.client
                .send::<wire::DeletedAnswer>(rb)
                .await
                .map(|a| CardDeleted { remaining_balance: a.remaining_balance })
        }
        .boxed()
    }

    fn card_details(&self, channel_card_id: String) -> Reply<'_, CardDetails> {
        async move {
            let path = format!("/cards/{}/details", encode(&channel_card_id));
            let rb = self.request(Method::GET, &path, None);
            // The raw answer holds the PAN and CVV: read into a buffer wiped after parsing.
            self.client.send_sensitive::<wire::DetailsAnswer>(rb).await.map(|mut a| CardDetails {
                pan: SensitiveString::new(std::mem::take(&mut a.pan)),
                cvv: SensitiveString::new(std::mem::take(&mut a.cvv)),
                expiry_month: a.expiry_month,
                expiry_year: a.expiry_year,
                balance: a.balance,
                status: std::mem::take(&mut a.status),
            })
        }
        .boxed()
    }

    fn list_transactions(
        &self,
        channel_card_id: String,
        after_channel_transaction_id: Option<String>,
    ) -> Reply<'_, Vec<ChannelTransaction>> {
        let mut path = format!("/cards/{}/transactions", encode(&channel_card_id));
        if let Some(after) = after_channel_transaction_id {
            path.push_str(&format!("?after={}", encode(&after)));
        }
        self.get(path, |a: wire::TransactionsAnswer| a.data.into_iter().map(Into::into).collect())
    }

    fn transaction(
        &self,
        channel_card_id: String,
        channel_transaction_id: String,
    ) -> Reply<'_, ChannelTransaction> {
        let path =
            format!("/cards/{}/transactions/{}", encode(&channel_card_id), encode(&channel_transaction_id));
        self.get(path, wire::TransactionWire::into)
    }

    fn cardholder(&self, channel_cardholder_id: String) -> Reply<'_, ChannelCardholder> {
        self.get(
            format!("/cardholders/{}", encode(&channel_cardholder_id)),
            wire::CardholderStateAnswer::into,
        )
    }

    fn master_balance(&self) -> Reply<'_, Vec<Money>> {
        self.get("/balance".to_owned(), |a: wire::MasterBalancesAnswer| a.balances)
    }

    fn operation(&self, request_id: RequestId) -> Reply<'_, ChannelOperation> {
        self.get(format!("/operations/{}", encode(&request_id)), wire::OperationAnswer::into)
    }
}
