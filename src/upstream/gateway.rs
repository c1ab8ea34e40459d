//! `HttpGateway`: the gateway adapter ([`PaymentGateway`] here, the marketplace
//! ports in [`super::gateway_marketplace`]). Each call authenticates as
//! the gateway account it names (`merchant_id` + `api_key`); the adapter keeps
//! only the gateway's base URL.

use futures::FutureExt;
use pelago_actors::ports::{
    CreateOrder, DepositAddress, GatewayAccount, GatewayDeposit, GatewayOrder, GatewayPayout, Outcome,
    PaymentGateway, Payout, PayoutAccepted, Refund, RefundAccepted, Reply,
};
use pelago_storage::Currency;
use reqwest::Method;

use super::{
    UpstreamClient,
    channel_http::{IDEMPOTENCY_HEADER, encode},
    gateway_wire as wire,
};

pub struct HttpGateway {
    pub(super) client: UpstreamClient,
    base_url: String,
}

impl HttpGateway {
    pub fn new(client: UpstreamClient, base_url: &str) -> Self {
        Self { client, base_url: base_url.trim_end_matches('/').to_owned() }
    }

    pub(super) fn request(
        &self,
        account: &GatewayAccount,
        method: Method,
        path: &str,
        request_id: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut builder = self
            .client
            .http()
            .request(method, format!("{}{}", self.base_url, path))
            .header(wire::MERCHANT_HEADER, &account.merchant_id)
            .bearer_auth(account.api_key.expose());
        if let Some(id) = request_id {
            builder = builder.header(IDEMPOTENCY_HEADER, id);
        }
        builder
    }

    /// `POST {path}` as `account`, once per `request_id`, with a JSON `body`
    /// when given; the answer made the port's type by `read`.
    pub(super) fn post<B, A, T>(
        &self,
        (account, request_id): (GatewayAccount, String),
        path: String,
        body: Option<B>,
        read: impl FnOnce(Outcome<A>) -> Outcome<T> + Send + 'static,
    ) -> Reply<'_, T>
    where
        B: serde::Serialize + Send + Sync + 'static,
        A: serde::de::DeserializeOwned + Send + 'static,
        T: Send + 'static,
    {
        async move {
            let mut rb = self.request(&account, Method::POST, &path, Some(&request_id));
            if let Some(body) = &body {
                rb = rb.json(body);
            }
            read(self.client.send::<A>(rb).await)
        }
        .boxed()
    }

    /// `GET {path}` as `account`, the answer made the port's type by `read`.
    pub(super) fn get<A: serde::de::DeserializeOwned + Send + 'static, T: Send + 'static>(
        &self,
        account: GatewayAccount,
        path: String,
        read: fn(Outcome<A>) -> Outcome<T>,
    ) -> Reply<'_, T> {
        async move { read(self.client.send::<A>(self.request(&account, Method::GET, &path, None)).await) }
            .boxed()
    }
}

impl PaymentGateway for HttpGateway {
    fn create_order(&self, req: CreateOrder) -> Reply<'_, GatewayOrder> {
        let CreateOrder { request_id, account, order_id, amount, description } = req;
        let body = wire::CreateOrderBody { order_id, amount, description };
        let read = |answer: Outcome<wire::OrderAnswer>| answer.map(Into::into);
        self.post((account, request_id), "/orders".into(), Some(body), read)
    }

    fn query_order(&self, account: GatewayAccount, gateway_order_id: String) -> Reply<'_, GatewayOrder> {
        let path = format!("/orders/{}", encode(&gateway_order_id));
        self.get(account, path, |answer: Outcome<wire::OrderAnswer>| answer.map(Into::into))
    }

    fn deposit_address(
        &self,
        account: GatewayAccount,
        currency: Currency,
        network: String,
    ) -> Reply<'_, DepositAddress> {
        let path = format!("/deposit_address?currency={}&network={}", currency.code(), encode(&network));
        self.get(account, path, |answer: Outcome<wire::DepositAddressAnswer>| {
            answer.map(|a| DepositAddress { address: a.address, network: a.network, currency: a.currency })
        })
    }

    fn payout(&self, req: Payout) -> Reply<'_, PayoutAccepted> {
        let body = wire::PayoutBody { amount: req.amount, address: req.address, network: req.network };
        let read = |answer: Outcome<wire::PayoutAnswer>| answer.map(Into::into);
        self.post((req.account, req.request_id), "/payouts".into(), Some(body), read)
    }

    fn query_payout(&self, account: GatewayAccount, payout_id: String) -> Reply<'_, GatewayPayout> {
        let path = format!("/payouts/{}", encode(&payout_id));
        self.get(account, path, |answer: Outcome<wire::PayoutStateAnswer>| answer.map(Into::into))
    }

    fn query_deposit(&self, account: GatewayAccount, deposit_id: String) -> Reply<'_, GatewayDeposit> {
        let path = format!("/deposits/{}", encode(&deposit_id));
        self.get(account, path, |answer: Outcome<wire::DepositAnswer>| answer.map(Into::into))
    }

    fn refund(&self, req: Refund) -> Reply<'_, RefundAccepted> {
        let path = format!("/orders/{}/refunds", encode(&req.gateway_order_id));
        let body = wire::RefundBody { amount: req.amount };
        self.post((req.account, req.request_id), path, Some(body), |a: Outcome<wire::RefundAnswer>| {
            a.map(|a| RefundAccepted { refund_id: a.id })
        })
    }
}
