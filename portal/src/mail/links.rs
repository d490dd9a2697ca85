//! The personal links a campaign message carries: the unsubscribe link of
//! (campaign, customer) and the survey invitation link. Both are derived
//! from the portal secret ([`LinkSigner::derive`]), so a preview, a test
//! message and the real message show the same link, and only its hash is
//! stored.

use crate::tokens::{Issued, LinkPurpose, LinkSigner};

/// The unsubscribe token of `customer_id` in campaign `campaign_id`.
pub fn unsubscribe(links: &LinkSigner, campaign_id: i64, customer_id: &str) -> Issued {
    let mut subject = Vec::with_capacity(8 + customer_id.len());
    // Fixed-width campaign id first: no two pairs make the same bytes.
    subject.extend_from_slice(&campaign_id.to_be_bytes());
    subject.extend_from_slice(customer_id.as_bytes());
    links.derive(LinkPurpose::Unsubscribe, &subject)
}

/// The unsubscribe page's address of a token.
pub fn unsubscribe_url(public_url: &str, token: &str) -> String {
    format!("{public_url}/u/{token}")
}

/// The survey page's address of a token.
pub fn survey_url(public_url: &str, token: &str) -> String {
    format!("{public_url}/s/{token}")
}
