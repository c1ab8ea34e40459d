//! Channel kind `sandbox` and the sandbox's control client.
//!
//! The sandbox channel speaks exactly the `http` channel protocol, so the
//! adapter is an [`HttpChannel`]. [`SandboxControl`] drives the endpoints only
//! the simulator has: registering credentials and callback URLs, and the test
//! helpers (pay an order, create a card transaction, inject faults...).
//!
//! Control paths, under the sandbox root (`http://{sandbox_listen}`):
//! `POST /channel/control/channels`, `POST|DELETE /channel/control/channels/{id}/faults`,
//! `POST /channel/control/cardholders/{id}/approve`,
//! `POST /channel/control/cards/{id}/transactions`, `POST /gateway/control/accounts`,
//! `POST /gateway/checkout/{id}/pay|fail|expire`,
//! `POST /gateway/control/orders/{id}/resend-callback`, `POST /gateway/control/deposits`,
//! `POST|DELETE /gateway/control/faults`.
//! Every request carries the control token Pelago gave the simulators at
//! start (`Authorization: Bearer`); the control paths refuse any other.

use pelago_actors::ports::{CardholderCreated, ChannelTransaction, GatewayOrder, SecretString};
use pelago_storage::Money;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{
    HttpChannel, UpstreamClient, UpstreamError,
    channel_http::encode,
    channel_wire::{CardholderAnswer, TransactionWire, TxnTypeWire},
    gateway_wire::OrderAnswer,
    http_util::send_control,
};

/// The adapter for channels of kind `sandbox`: the `http` protocol.
pub fn sandbox_channel(client: UpstreamClient, base_url: &str, api_key: SecretString) -> HttpChannel {
    HttpChannel::new(client, base_url, api_key)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultOperation {
    CreateCardholder,
    OpenCard,
    Topup,
    Freeze,
    Unfreeze,
    Delete,
    Details,
    /// The transaction pull and the one-transaction query.
    Transactions,
    Balance,
    Callbacks,
    /// `GET /cardholders/{id}` (the query that confirms a cardholder callback).
    Cardholder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultBehavior {
    /// Definite refusal, nothing applied.
    Decline,
    /// 500 without applying.
    Error,
    /// Applied, answered only after the upstream timeout + 1 s.
    Timeout,
    /// Applied, answered after `delay_ms`.
    Delay,
    /// `callbacks` only: each callback sent three times.
    Duplicate,
}

/// The next `count` calls of `operation` on a channel misbehave as `behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    pub operation: FaultOperation,
    pub behavior: FaultBehavior,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub delay_ms: u64,
}

fn one() -> u32 {
    1
}

/// Gateway calls that can be made to misbehave (`POST /gateway/control/faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayFaultOperation {
    CreateOrder,
    QueryOrder,
    DepositAddress,
    QueryDeposit,
    Payout,
    QueryPayout,
    Refund,
}

/// The next `count` gateway calls of `operation` (any account) misbehave as
/// `behavior`: `error` (500, nothing applied) or `timeout` (applied, answered
/// only after Pelago's upstream timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFaultSpec {
    pub operation: GatewayFaultOperation,
    pub behavior: FaultBehavior,
    #[serde(default = "one")]
    pub count: u32,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct RegisterChannelBody {
    pub channel_id: String,
    pub api_key: SecretString,
    pub webhook_secret: SecretString,
    pub callback_url: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct RegisterAccountBody {
    pub merchant_id: String,
    pub api_key: SecretString,
    pub callback_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositBody {
    pub merchant_id: String,
    pub amount: Money,
    pub network: String,
}

/// A deposit the sandbox gateway reported (by callback) to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositReported {
    pub id: String,
    pub address: String,
    pub network: String,
    pub amount: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestTxnStatus {
    Posted,
    Pending,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardTransactionBody {
    pub amount: Money,
    pub merchant_name: String,
    pub mcc: String,
    pub status: TestTxnStatus,
    /// `authorization` (spending, the default), `refund` or `reversal` (credits).
    #[serde(default, rename = "type")]
    pub kind: Option<TxnTypeWire>,
    /// For a `reversal`: the channel's id of the authorization it reverses
    /// (that authorization turns `reversed`, and is what is answered).
    #[serde(default)]
    pub related_transaction_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acknowledged {
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResentAnswer {
    pub event_id: String,
}

/// Client of the sandbox's control endpoints.
#[derive(Clone)]
pub struct SandboxControl {
    client: UpstreamClient,
    root: String,
    control_token: SecretString,
}

impl SandboxControl {
    /// `control_token`: the credential the simulators were started with.
    pub fn new(client: UpstreamClient, root: &str, control_token: SecretString) -> Self {
        Self { client, root: root.trim_end_matches('/').to_owned(), control_token }
    }

    /// Where the simulators answer, e.g. `http://127.0.0.1:8090`.
    pub fn root_url(&self) -> &str {
        &self.root
    }

    /// The channel base URL Pelago stores for a sandbox channel.
    pub fn channel_base_url(&self) -> String {
        format!("{}/channel", self.root)
    }

    /// The gateway base URL for the sandbox gateway.
    pub fn gateway_base_url(&self) -> String {
        format!("{}/gateway", self.root)
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .http()
            .request(method, format!("{}{}", self.root, path))
            .bearer_auth(self.control_token.expose())
    }

    pub async fn register_channel(
        &self,
        channel_id: &str,
        api_key: &SecretString,
        webhook_secret: &SecretString,
        callback_url: &str,
    ) -> Result<(), UpstreamError> {
        let body = RegisterChannelBody {
            channel_id: channel_id.to_owned(),
            api_key: api_key.clone(),
            webhook_secret: webhook_secret.clone(),
            callback_url: callback_url.to_owned(),
        };
        send_control::<Acknowledged>(self.request(Method::POST, "/channel/control/channels").json(&body))
            .await
            .map(|_| ())
    }

    pub async fn register_gateway_account(
        &self,
        merchant_id: &str,
        api_key: &SecretString,
        callback_url: &str,
    ) -> Result<(), UpstreamError> {
        let body = RegisterAccountBody {
            merchant_id: merchant_id.to_owned(),
            api_key: api_key.clone(),
            callback_url: callback_url.to_owned(),
        };
        send_control::<Acknowledged>(self.request(Method::POST, "/gateway/control/accounts").json(&body))
            .await
            .map(|_| ())
    }

    async fn settle_order(
        &self,
        gateway_order_id: &str,
        action: &str,
    ) -> Result<GatewayOrder, UpstreamError> {
        let path = format!("/gateway/checkout/{}/{action}", encode(gateway_order_id));
        send_control::<OrderAnswer>(self.request(Method::POST, &path)).await.map(Into::into)
    }

    /// Pays the order as the cardholder would; the callback was delivered when this returns.
    pub async fn pay_order(&self, gateway_order_id: &str) -> Result<GatewayOrder, UpstreamError> {
        self.settle_order(gateway_order_id, "pay").await
    }

    pub async fn fail_order(&self, gateway_order_id: &str) -> Result<GatewayOrder, UpstreamError> {
        self.settle_order(gateway_order_id, "fail").await
    }

    pub async fn expire_order(&self, gateway_order_id: &str) -> Result<GatewayOrder, UpstreamError> {
        self.settle_order(gateway_order_id, "expire").await
    }

    /// Delivers the order's last callback again (same `event_id`); returns that id.
    pub async fn resend_order_callback(&self, gateway_order_id: &str) -> Result<String, UpstreamError> {
        let path = format!("/gateway/control/orders/{}/resend-callback", encode(gateway_order_id));
        send_control::<ResentAnswer>(self.request(Method::POST, &path)).await.map(|a| a.event_id)
    }

    /// Reports a deposit to the account's address for `(amount.currency, network)`.
    pub async fn report_deposit(
        &self,
        gateway_merchant_id: &str,
        amount: Money,
        network: &str,
    ) -> Result<DepositReported, UpstreamError> {
        let body =
            DepositBody { merchant_id: gateway_merchant_id.to_owned(), amount, network: network.to_owned() };
        send_control::<DepositReported>(self.request(Method::POST, "/gateway/control/deposits").json(&body))
            .await
    }

    /// Card spending; the channel's callback was delivered when this returns.
    pub async fn create_card_transaction(
        &self,
        channel_card_id: &str,
        amount: Money,
        merchant_name: &str,
        mcc: &str,
        status: TestTxnStatus,
    ) -> Result<ChannelTransaction, UpstreamError> {
        let body = CardTransactionBody {
            amount,
            merchant_name: merchant_name.to_owned(),
            mcc: mcc.to_owned(),
            status,
            kind: None,
            related_transaction_id: None,
        };
        self.card_transaction(channel_card_id, &body).await
    }

    /// Any card transaction the sandbox channel simulates (spending, a refund,
    /// a reversal); the channel's callback was delivered when this returns.
    pub async fn card_transaction(
        &self,
        channel_card_id: &str,
        body: &CardTransactionBody,
    ) -> Result<ChannelTransaction, UpstreamError> {
        let path = format!("/channel/control/cards/{}/transactions", encode(channel_card_id));
        send_control::<TransactionWire>(self.request(Method::POST, &path).json(body)).await.map(Into::into)
    }

    /// Approves a `Pending` cardholder; its callback was delivered when this returns.
    pub async fn approve_cardholder(
        &self,
        channel_cardholder_id: &str,
    ) -> Result<CardholderCreated, UpstreamError> {
        let path = format!("/channel/control/cardholders/{}/approve", encode(channel_cardholder_id));
        send_control::<CardholderAnswer>(self.request(Method::POST, &path)).await.map(Into::into)
    }

    pub async fn set_fault(&self, channel_id: &str, fault: FaultSpec) -> Result<(), UpstreamError> {
        let path = format!("/channel/control/channels/{}/faults", encode(channel_id));
        send_control::<Acknowledged>(self.request(Method::POST, &path).json(&fault)).await.map(|_| ())
    }

    pub async fn set_gateway_fault(&self, fault: GatewayFaultSpec) -> Result<(), UpstreamError> {
        let rb = self.request(Method::POST, "/gateway/control/faults").json(&fault);
        send_control::<Acknowledged>(rb).await.map(|_| ())
    }

    pub async fn clear_gateway_faults(&self) -> Result<(), UpstreamError> {
        send_control::<Acknowledged>(self.request(Method::DELETE, "/gateway/control/faults"))
            .await
            .map(|_| ())
    }

    pub async fn clear_faults(&self, channel_id: &str) -> Result<(), UpstreamError> {
        let path = format!("/channel/control/channels/{}/faults", encode(channel_id));
        send_control::<Acknowledged>(self.request(Method::DELETE, &path)).await.map(|_| ())
    }
}
