//! The checkout pages of the simulated gateway: plain HTML with working Pay
//! and Fail forms, and the result page shown after a form was posted.

use crate::upstream::gateway_wire::OrderStatusWire;

use super::records::OrderRec;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn status_word(status: OrderStatusWire) -> &'static str {
    match status {
        OrderStatusWire::Pending => "pending",
        OrderStatusWire::Paid => "paid",
        OrderStatusWire::Failed => "failed",
        OrderStatusWire::Expired => "expired",
        OrderStatusWire::Refunded => "refunded",
        OrderStatusWire::Authorized => "authorized",
        OrderStatusWire::Canceled => "canceled",
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><main>\n{body}\n<p><small>Pelago sandbox gateway: no real money moves.</small></p></main></body></html>\n",
        title = escape(title)
    )
}

/// `GET {checkout_url}`.
pub fn checkout_page(order: &OrderRec, checkout_url: &str) -> String {
    let amount = escape(&order.amount.to_major_string());
    let mut body = format!(
        "<h1>Pay {amount}</h1>\n<p>{}</p>\n<p>Order {} is <strong>{}</strong>.</p>\n",
        escape(&order.description),
        escape(&order.id),
        status_word(order.status)
    );
    if order.status == OrderStatusWire::Pending {
        let url = escape(checkout_url);
        body.push_str(&format!(
            "<form method=\"post\" action=\"{url}/pay\"><button type=\"submit\" name=\"action\" value=\"pay\">Pay {amount}</button></form>\n\
             <form method=\"post\" action=\"{url}/fail\"><button type=\"submit\" name=\"action\" value=\"fail\">Fail</button></form>\n"
        ));
    }
    page(&format!("Checkout {}", order.amount.to_major_string()), &body)
}

/// The page a posted form lands on.
pub fn result_page(order: &OrderRec) -> String {
    let headline = match order.status {
        OrderStatusWire::Paid => "Payment successful",
        OrderStatusWire::Failed => "Payment failed",
        OrderStatusWire::Expired => "Payment expired",
        OrderStatusWire::Refunded => "Payment refunded",
        OrderStatusWire::Authorized => "Payment authorized",
        OrderStatusWire::Canceled => "Payment canceled",
        OrderStatusWire::Pending => "Payment pending",
    };
    let body = format!(
        "<h1>{headline}</h1>\n<p>{} for order {}.</p>\n",
        escape(&order.amount.to_major_string()),
        escape(&order.id)
    );
    page(headline, &body)
}
