//! Where a message goes: an SMTP server or the file outbox (one `.eml` per
//! message, the embedded default). Every send ends in one [`Outcome`], and
//! the outcome says whether the message may have been delivered: the
//! sender's at-most-once guarantee rests on that line.
//!
//! SMTP runs on lettre's connection and command API, with this module
//! keeping the connections (up to the sender's concurrency, reused while
//! they work) for two reasons lettre's pooled transport cannot serve:
//! it knows the stage a failure happened in (before the message data was
//! handed over, a retry is safe; after, the message may have arrived), and
//! it sets `TCP_NODELAY` on its sockets, without which each message waits
//! out the server's delayed acknowledgement (40 ms on Linux) before its
//! final dot: 342 messages a second at 16 connections instead of thousands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;
use std::time::Instant;

use lettre::Message;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::Mutex;

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
    /// An SMTP server, connections kept for reuse.
    Smtp(Arc<Smtp>),
    /// One file per message under this folder.
    Files(PathBuf),
}

impl Transport {
    /// The transport of `delivery`, keeping up to `connections` SMTP connections.
    pub fn new(delivery: &Delivery, connections: usize) -> Result<Transport, MailConfigError> {
        match delivery {
            Delivery::Smtp(url) => Ok(Transport::Smtp(Arc::new(Smtp::parse(url, connections)?))),
            Delivery::Files(dir) => Ok(Transport::Files(dir.clone())),
        }
    }

    /// Sends `message`; `message_id` names its file in the file outbox.
    pub async fn send(&self, message: &Message, message_id: &str) -> Outcome {
        match self {
            Transport::Smtp(smtp) => smtp.send(message).await,
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

/// How the connection is secured (the URL's scheme and `tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `smtp://` without `tls`: plain.
    Plain,
    /// `tls=opportunistic`: STARTTLS when offered.
    Opportunistic,
    /// `tls=required`: STARTTLS or no connection.
    Required,
    /// `smtps://`: TLS from the first byte.
    Wrapper,
}

/// An SMTP server and the connections kept to it.
pub struct Smtp {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    keep: usize,
}

/// A kept connection unused for longer is checked (NOOP) before reuse.
const FRESH: Duration = Duration::from_secs(5);
/// A kept connection unused for longer is closed.
const IDLE: Duration = Duration::from_secs(60);

impl Smtp {
    /// The server of `url` (`smtp://[user:pass@]host[:port][?tls=...]`, `smtps://...`).
    pub fn parse(url: &str, keep: usize) -> Result<Smtp, MailConfigError> {
        let bad = |why: &str| MailConfigError::SmtpUrl(why.to_string());
        let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let host = u.host_str().ok_or_else(|| bad("no host"))?.to_string();
        let tls = u
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.to_string());
        let (security, default_port) = match (u.scheme(), tls.as_deref()) {
            ("smtp", None | Some("none")) => (Security::Plain, 25),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic, 587),
            ("smtp", Some("required")) => (Security::Required, 587),
            ("smtps", _) => (Security::Wrapper, 465),
            (scheme, tls) => {
                return Err(bad(&format!(
                    "unknown scheme {scheme:?} or tls={}",
                    tls.unwrap_or("")
                )));
            }
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("the user or password is not UTF-8"))
        };
        let credentials = match u.password() {
            Some(p) => Some(Credentials::new(decode(u.username())?, decode(p)?)),
            None => None,
        };
        Ok(Smtp {
            port: u.port().unwrap_or(default_port),
            host,
            security,
            credentials,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            keep: keep.max(1),
        })
    }

    fn tls(&self) -> Result<TlsParameters, String> {
        TlsParameters::new(self.host.clone()).map_err(|e| e.to_string())
    }

    /// A new connection: TCP (no Nagle delay), EHLO, TLS, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let text = |e: SmtpError| e.to_string();
        if self.security == Security::Wrapper {
            let conn = AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(SMTP_TIMEOUT),
                &self.hello,
                Some(self.tls()?),
                None,
            )
            .await
            .map_err(text)?;
            return self.authenticate(conn).await;
        }
        let stream = tokio::time::timeout(
            SMTP_TIMEOUT,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| format!("timed out connecting to {}:{}", self.host, self.port))?
        .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
            .await
            .map_err(text)?;
        match self.security {
            Security::Opportunistic if conn.can_starttls() => {
                conn.starttls(self.tls()?, &self.hello)
                    .await
                    .map_err(text)?;
            }
            Security::Required => conn
                .starttls(self.tls()?, &self.hello)
                .await
                .map_err(text)?,
            _ => {}
        }
        self.authenticate(conn).await
    }

    async fn authenticate(
        &self,
        mut conn: AsyncSmtpConnection,
    ) -> Result<AsyncSmtpConnection, String> {
        if let Some(c) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], c)
                .await
                .map_err(|e| format!("authentication failed: {e}"))?;
        }
        Ok(conn)
    }

    /// A working connection: a kept one, else a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, String> {
        loop {
            let kept = self.idle.lock().await.pop();
            let Some((mut conn, used)) = kept else {
                return self.connect().await;
            };
            let age = used.elapsed();
            if age > IDLE || conn.has_broken() {
                conn.abort().await;
                continue;
            }
            if age > FRESH && !conn.test_connected().await {
                conn.abort().await;
                continue;
            }
            return Ok(conn);
        }
    }

    async fn checkin(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().await;
        if idle.len() < self.keep {
            idle.push((conn, Instant::now()));
        }
    }

    /// One SMTP transaction. A failure before the message data is handed
    /// over cannot have delivered it; one during or after may have.
    async fn send(&self, message: &Message) -> Outcome {
        let mut conn = match self.checkout().await {
            Ok(c) => c,
            Err(e) => return Outcome::NotConnected(e),
        };
        let envelope = message.envelope();
        let before_data = async {
            conn.command(Mail::new(envelope.from().cloned(), Vec::new()))
                .await?;
            for to in envelope.to() {
                conn.command(Rcpt::new(to.clone(), Vec::new())).await?;
            }
            conn.command(Data).await
        };
        let staged = tokio::time::timeout(SMTP_TIMEOUT, before_data).await;
        match staged {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                conn.abort().await;
                return refused(&e).unwrap_or_else(|| Outcome::NotConnected(e.to_string()));
            }
            Err(_) => {
                conn.abort().await;
                return Outcome::NotConnected("the server did not answer in time".into());
            }
        }
        let body = message.formatted();
        match tokio::time::timeout(SMTP_TIMEOUT, conn.message(&body)).await {
            Ok(Ok(_)) => {
                self.checkin(conn).await;
                Outcome::Accepted
            }
            Ok(Err(e)) => {
                conn.abort().await;
                refused(&e).unwrap_or_else(|| Outcome::Unknown(e.to_string()))
            }
            Err(_) => {
                conn.abort().await;
                Outcome::Unknown("no reply to the message data in time".into())
            }
        }
    }
}

/// The outcome of a reply code (4xx, 5xx), or None for a failure without one.
fn refused(e: &SmtpError) -> Option<Outcome> {
    if e.is_transient() {
        Some(Outcome::Temporary(e.to_string()))
    } else if e.is_permanent() || e.is_client() {
        Some(Outcome::Permanent(e.to_string()))
    } else {
        None
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
