//! One campaign message as it goes on the wire: the rendered parts
//! (text, and HTML as `multipart/alternative`), the sender identity, a
//! `Message-ID` fixed when the audience was frozen, `Date`, and the
//! headers every campaign message carries (portal-api.md): `List-Unsubscribe`
//! with the personal https link and a mailto, `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click` (RFC 8058) and `X-Cvm-Campaign`.

use std::str::FromStr;

use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::template::Rendered;

/// What one message needs besides its rendered parts.
pub struct Headers<'a> {
    /// The sender identity.
    pub from: &'a Mailbox,
    /// The recipient's address.
    pub to: &'a str,
    /// `<...@domain>`.
    pub message_id: &'a str,
    /// The campaign (`X-Cvm-Campaign`); None for a test message.
    pub campaign_id: Option<i64>,
    /// The personal unsubscribe page.
    pub unsubscribe_url: &'a str,
    /// The `List-Unsubscribe` mailto address.
    pub mailto: Option<&'a str>,
}

/// Why a message cannot be built (the recipient's address, mostly).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The recipient address is not one.
    #[error("the address {address:?} cannot receive mail: {reason}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// lettre refused the message.
    #[error("the message cannot be built: {0}")]
    Build(String),
}

fn raw(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// The message of `rendered` with `headers`.
pub fn build(rendered: Rendered, headers: &Headers<'_>) -> Result<Message, MessageError> {
    let to = lettre::Address::from_str(headers.to).map_err(|e| MessageError::Address {
        address: headers.to.to_string(),
        reason: e.to_string(),
    })?;
    let mut list_unsubscribe = format!("<{}>", headers.unsubscribe_url);
    if let Some(mailto) = headers.mailto {
        list_unsubscribe.push_str(&format!(", <mailto:{mailto}?subject=unsubscribe>"));
    }
    let mut builder = Message::builder()
        .from(headers.from.clone())
        .to(Mailbox::new(None, to))
        .subject(rendered.subject)
        .message_id(Some(headers.message_id.to_string()))
        .date_now()
        .raw_header(raw("List-Unsubscribe", list_unsubscribe))
        .raw_header(raw(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".into(),
        ));
    if let Some(id) = headers.campaign_id {
        builder = builder.raw_header(raw("X-Cvm-Campaign", id.to_string()));
    }
    let built = match rendered.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(rendered.text, html)),
        None => builder.singlepart(SinglePart::plain(rendered.text)),
    };
    built.map_err(|e| MessageError::Build(e.to_string()))
}

/// A new `Message-ID` for campaign `campaign_id` at `domain`: random, so
/// unique across processes and databases.
pub fn new_message_id(campaign_id: i64, domain: &str) -> String {
    let n: u128 = rand::random();
    format!("<cvm.{campaign_id}.{n:032x}@{domain}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_carries_the_compliance_headers() {
        let from = Mailbox::from_str("Shop <news@shop.example>").unwrap();
        let id = new_message_id(7, "shop.example");
        let message = build(
            Rendered {
                subject: "Hello Ann".into(),
                text: "Hi".into(),
                html: Some("<p>Hi</p>".into()),
            },
            &Headers {
                from: &from,
                to: "ann@example.com",
                message_id: &id,
                campaign_id: Some(7),
                unsubscribe_url: "https://shop.example/u/TOKEN",
                mailto: Some("news@shop.example"),
            },
        )
        .unwrap();
        // Long headers are folded (RFC 5322); unfold to compare.
        let text = String::from_utf8(message.formatted())
            .unwrap()
            .replace("\r\n ", " ");
        for line in [
            "List-Unsubscribe: <https://shop.example/u/TOKEN>, <mailto:news@shop.example?subject=unsubscribe>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "X-Cvm-Campaign: 7",
            &format!("Message-ID: {id}"),
            "Date: ",
            "multipart/alternative",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        let bad = build(
            Rendered {
                subject: "s".into(),
                text: "t".into(),
                html: None,
            },
            &Headers {
                from: &from,
                to: "not an address",
                message_id: &id,
                campaign_id: Some(7),
                unsubscribe_url: "u",
                mailto: None,
            },
        );
        assert!(matches!(bad, Err(MessageError::Address { .. })));
    }
}
