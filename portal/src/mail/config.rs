//! The sender's settings (`[mail]`), checked once at start: a sender
//! address that does not parse or an SMTP URL lettre cannot use stops
//! `serve` with the setting to fix, not the first campaign.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use cvm_shared::config::MailSettings;
use lettre::message::Mailbox;

/// Why the mail settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    /// `mail.from` is not an address.
    #[error(
        "mail.from (CVM_MAIL_FROM) {value:?} is not a mail address: {reason} (e.g. `Shop <news@shop.example>`)"
    )]
    From {
        /// What was set.
        value: String,
        /// Why.
        reason: String,
    },
    /// `mail.unsubscribe_mailto` is not an address.
    #[error(
        "mail.unsubscribe_mailto (CVM_MAIL_UNSUBSCRIBE_MAILTO) {value:?} is not a mail address (e.g. unsubscribe@shop.example)"
    )]
    Mailto {
        /// What was set.
        value: String,
    },
    /// `mail.smtp_url` cannot be used.
    #[error(
        "mail.smtp_url (CVM_SMTP_URL): {0} (expected smtp://[user:pass@]host:port[?tls=required|opportunistic|none] or smtps://...)"
    )]
    SmtpUrl(String),
}

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// An SMTP server; the URL as lettre reads it (`tls=none` removed), secret.
    Smtp(String),
    /// One `.eml` file per message under this folder.
    Files(PathBuf),
}

/// The sender's settings, resolved.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The sender identity (None: campaigns refuse to send).
    pub from: Option<Mailbox>,
    /// The `List-Unsubscribe` mailto address (None: the sender's).
    pub unsubscribe_mailto: Option<String>,
    /// Where messages go.
    pub delivery: Delivery,
    /// Messages per second, 0 = unlimited.
    pub rate: f64,
    /// SMTP transactions in flight at once.
    pub concurrency: usize,
    /// How long a claim lasts without renewal.
    pub lease: Duration,
    /// First wait after a temporary refusal, doubled per attempt.
    pub retry_after: Duration,
    /// Attempts before a temporary refusal counts as a failure.
    pub max_attempts: i32,
    /// Campaigns' default frequency cap in days (0: off).
    pub frequency_cap_days: u32,
    /// The privacy key (`CVM_PRIVACY_KEY`), if set: recognises addresses
    /// suppressed as keyed hashes (erased people's).
    pub privacy_key: Option<cvm_shared::privacy::PrivacyKey>,
}

impl MailConfig {
    /// The settings' mail configuration, checked.
    pub fn from_settings(m: &MailSettings) -> Result<MailConfig, MailConfigError> {
        let from = match m.from.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            None => None,
            Some(f) => Some(Mailbox::from_str(f).map_err(|e| MailConfigError::From {
                value: f.to_string(),
                reason: e.to_string(),
            })?),
        };
        let unsubscribe_mailto = match m.unsubscribe_mailto.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => {
                let parsed = lettre::Address::from_str(a).map_err(|_| MailConfigError::Mailto {
                    value: a.to_string(),
                })?;
                Some(parsed.to_string())
            }
        };
        let delivery = match &m.smtp_url {
            Some(url) => Delivery::Smtp(smtp_url(url.expose())?),
            None => Delivery::Files(PathBuf::from(&m.outbox_dir)),
        };
        Ok(MailConfig {
            from,
            unsubscribe_mailto,
            ..MailConfig::with_delivery(m, delivery)
        })
    }

    /// The numeric settings of `m` with `delivery`, no sender address.
    pub fn with_delivery(m: &MailSettings, delivery: Delivery) -> MailConfig {
        MailConfig {
            from: None,
            unsubscribe_mailto: None,
            delivery,
            rate: m.send_rate,
            concurrency: usize::try_from(m.send_concurrency.max(1)).unwrap_or(1),
            lease: Duration::from_secs(u64::from(m.lease_seconds.max(1))),
            retry_after: Duration::from_secs(u64::from(m.retry_seconds)),
            max_attempts: i32::try_from(m.max_attempts.max(1)).unwrap_or(i32::MAX),
            frequency_cap_days: m.frequency_cap_days,
            privacy_key: None,
        }
    }

    /// The default settings delivering into folder `dir`, no sender address.
    pub fn files(dir: impl Into<PathBuf>) -> MailConfig {
        MailConfig::with_delivery(&MailSettings::default(), Delivery::Files(dir.into()))
    }

    /// The `List-Unsubscribe` mailto address: the setting, else the sender's.
    pub fn mailto(&self) -> Option<String> {
        self.unsubscribe_mailto
            .clone()
            .or_else(|| self.from.as_ref().map(|f| f.email.to_string()))
    }

    /// The domain of `Message-ID`s: the sender's.
    pub fn message_id_domain(&self) -> Option<String> {
        self.from.as_ref().map(|f| f.email.domain().to_string())
    }
}

/// The SMTP URL as lettre reads it: the contract's `tls=none` is lettre's
/// plain `smtp://` without the parameter; anything lettre refuses is an error now.
fn smtp_url(url: &str) -> Result<String, MailConfigError> {
    let plain = url
        .replace("?tls=none&", "?")
        .replace("?tls=none", "")
        .replace("&tls=none", "");
    super::transport::Smtp::parse(&plain, 1)?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvm_shared::config::Secret;

    fn settings() -> MailSettings {
        MailSettings {
            from: Some("Shop <news@shop.example>".into()),
            ..MailSettings::default()
        }
    }

    #[test]
    fn the_sender_address_and_smtp_url_are_checked_at_start() {
        let ok = MailConfig::from_settings(&settings()).unwrap();
        assert_eq!(ok.message_id_domain().as_deref(), Some("shop.example"));
        assert_eq!(ok.mailto().as_deref(), Some("news@shop.example"));
        assert_eq!(ok.delivery, Delivery::Files("outbox/".into()));
        let bad_from = MailSettings {
            from: Some("not an address".into()),
            ..settings()
        };
        let e = MailConfig::from_settings(&bad_from)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("mail.from (CVM_MAIL_FROM)"), "{e}");
        let smtp = MailSettings {
            smtp_url: Some(Secret::new("smtp://127.0.0.1:2525?tls=none")),
            ..settings()
        };
        assert_eq!(
            MailConfig::from_settings(&smtp).unwrap().delivery,
            Delivery::Smtp("smtp://127.0.0.1:2525".into())
        );
        let odd = MailSettings {
            smtp_url: Some(Secret::new("smtp://127.0.0.1:2525?tls=sometimes")),
            ..settings()
        };
        let e = MailConfig::from_settings(&odd).unwrap_err().to_string();
        assert!(e.starts_with("mail.smtp_url (CVM_SMTP_URL)"), "{e}");
    }
}
