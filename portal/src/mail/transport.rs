//! Where a message goes: an SMTP server (lettre's pooled async transport,
//! TLS and authentication from the URL) or the file outbox (one `.eml` per
//! message, the embedded default). Every send ends in one [`Outcome`], and
//! the outcome says whether the message may have been delivered: the
//! sender's at-most-once guarantee rests on that line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{Delivery, MailConfigError};

/// How long one SMTP command or the message data may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server accepted the message (or the file is written).
    Accepted,
    /// The server refused for now (4xx): not delivered, try again later.
    Temporary(String),
    /// The server refused for good (5xx), or the message cannot be sent as it is.
    Permanent(String),
    /// No connection could be made: nothing was handed over, try again later.
    NotConnected(String),
    /// The connection broke or timed out without the server's verdict:
    /// the server may have accepted it.
    Unknown(String),
}

/// A message's way out.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP server, connections pooled (at most the sender's concurrency).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One file per message under this folder.
    Files(PathBuf),
}

impl Transport {
    /// The transport of `delivery`, pooling up to `connections` SMTP connections.
    pub fn new(delivery: &Delivery, connections: usize) -> Result<Transport, MailConfigError> {
        match delivery {
            Delivery::Smtp(url) => {
                let pool = PoolConfig::new()
                    .max_size(u32::try_from(connections.max(1)).unwrap_or(u32::MAX))
                    .idle_timeout(Duration::from_secs(60));
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| MailConfigError::SmtpUrl(e.to_string()))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .pool_config(pool)
                    .build();
                Ok(Transport::Smtp(transport))
            }
            Delivery::Files(dir) => Ok(Transport::Files(dir.clone())),
        }
    }

    /// Sends `message`; `message_id` names its file in the file outbox.
    pub async fn send(&self, message: &Message, message_id: &str) -> Outcome {
        match self {
            Transport::Smtp(smtp) => {
                match smtp
                    .send_raw(message.envelope(), &message.formatted())
                    .await
                {
                    Ok(_) => Outcome::Accepted,
                    Err(e) => classify(&e),
                }
            }
            Transport::Files(dir) => {
                let path = dir.join(file_name(message_id));
                let bytes = message.formatted();
                let written =
                    tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await;
                match written {
                    Ok(Ok(())) => Outcome::Accepted,
                    Ok(Err(e)) => Outcome::NotConnected(format!(
                        "cannot write to the mail outbox folder {}: {e}",
                        dir.display()
                    )),
                    Err(e) => Outcome::NotConnected(format!("the file writer stopped: {e}")),
                }
            }
        }
    }
}

/// What an SMTP error means for the message. A reply code decides when
/// there is one; a failure to connect means nothing was handed over;
/// anything else (the connection broke, a timeout, an unreadable reply)
/// happened mid-transaction, after which the server may have the message.
fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let text = e.to_string();
    if e.is_transient() {
        Outcome::Temporary(text)
    } else if e.is_permanent() || e.is_client() {
        Outcome::Permanent(text)
    } else if text.starts_with("Connection error") || e.is_tls() || e.is_transport_shutdown() {
        // lettre's Kind::Connection: the TCP connection or TLS handshake failed.
        Outcome::NotConnected(text)
    } else {
        Outcome::Unknown(text)
    }
}

/// The outbox file of a `Message-ID`: its text without the angle brackets,
/// only safe characters kept. The same message always gets the same file,
/// so writing it again after a crash replaces it, never adds one.
fn file_name(message_id: &str) -> String {
    let safe: String = message_id
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.eml")
}

/// Writes `bytes` to `path` through a temporary file and a rename: a reader
/// never sees half a message.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_files_are_named_by_message_id() {
        assert_eq!(
            file_name("<cvm.7.00ff@shop.example>"),
            "cvm.7.00ff@shop.example.eml"
        );
        assert_eq!(file_name("<a/../b@x>"), "a_.._b@x.eml");
    }

    #[tokio::test]
    async fn a_server_that_is_down_means_nothing_was_handed_over() {
        // A port nobody listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = Transport::new(&Delivery::Smtp(format!("smtp://127.0.0.1:{port}")), 1).unwrap();
        let message = Message::builder()
            .from("a@b.example".parse().unwrap())
            .to("c@d.example".parse().unwrap())
            .subject("s")
            .body(String::from("b"))
            .unwrap();
        let outcome = t.send(&message, "<x@y>").await;
        assert!(matches!(outcome, Outcome::NotConnected(_)), "{outcome:?}");
    }
}
