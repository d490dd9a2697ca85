//! The campaign sender: a background worker in every `cvm-portal serve`
//! process that works through the outbox.
//!
//! One dispatcher loop owns the database side; up to `concurrency` send
//! tasks own the SMTP side. Each turn of the loop is one short transaction
//! that records the fates of finished sends and claims as many due rows as
//! there are free send slots (and rate tokens). So:
//!
//! - **At most once.** A row is sent only by the process holding its lease
//!   (claimed `QUEUED → SENDING` in one statement, `FOR UPDATE SKIP LOCKED`
//!   on PostgreSQL), with the `Message-ID` fixed when the audience was
//!   frozen. A fate is recorded only after the server's verdict. A process
//!   that dies holds at most `concurrency` rows in `SENDING`; when their
//!   lease ends (no renewal for `lease_seconds`), any sender marks them
//!   `IN_DOUBT` and never resends them by itself. A broken connection or
//!   timeout after the transaction began is `IN_DOUBT` too; only a refused
//!   connection (nothing handed over) or a 4xx reply is retried.
//! - **Nobody skipped.** Every frozen row ends `SENT`, `FAILED` (5xx, or 4xx
//!   until `max_attempts`), `SUPPRESSED` (re-checked in the claiming
//!   transaction: consent, activity, address, suppression list, frequency
//!   cap) or `IN_DOUBT`; a campaign becomes `SENT` only when none is left
//!   `QUEUED` or `SENDING`, checked under the campaign's row lock.
//! - **Pause, resume, crash.** Only rows of `SENDING` campaigns are claimed,
//!   so a pause stops at the next claim and a resume or restart continues
//!   with the rows still `QUEUED`.
//! - **Throttling.** A 4xx or a refused connection requeues the row with a
//!   doubling delay and holds every claim back for a doubling pause, so a
//!   server that asks to slow down gets fewer messages, none dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use cvm_shared::db::models::campaigns::{self, Campaign, CampaignStatus};
use cvm_shared::db::models::customers::Customer;
use cvm_shared::db::models::outbox::{self, Fate, Recipient, RecipientStatus};
use cvm_shared::db::models::scores::Score;
use cvm_shared::db::pool::{self, DbPool};
use cvm_shared::db::{DbConnection, DbError, lock_for_write};
use diesel::prelude::*;
use tokio::sync::{Notify, mpsc};

use super::audience::usable_address;
use super::config::MailConfig;
use super::context::MessageContext;
use super::freeze::{self, FreezeContext};
use super::links;
use super::message::{self, Headers};
use super::template::Templates;
use super::transport::{Outcome, Transport};
use crate::graphql::invitations::link as survey_link;
use crate::metrics::Metrics;
use crate::tokens::LinkSigner;

/// How often the loop looks for work when idle, expires leases and finishes campaigns.
const TICK: Duration = Duration::from_millis(250);
/// Longest pause after consecutive temporary refusals.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// Longest retry delay of one message.
const MAX_RETRY: Duration = Duration::from_secs(3600);

/// What the sender needs.
pub struct SenderSetup {
    /// Database connections (one is used at a time).
    pub db: DbPool,
    /// Signs unsubscribe and survey links.
    pub links: LinkSigner,
    /// Base of links.
    pub public_url: String,
    /// Mail settings.
    pub mail: MailConfig,
    /// Where fates are counted (`/metrics`).
    pub metrics: Arc<Metrics>,
}

/// Wakes the sender early (after `sendCampaign`, `resumeCampaign`, `retryFailed`).
#[derive(Clone, Default)]
pub struct SenderHandle {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    wake: Notify,
}

impl SenderHandle {
    /// Asks the sender to look for work now.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }
}

/// The running sender; stopped (in-flight messages finished) on [`Sender::stop`] or drop.
pub struct Sender {
    handle: SenderHandle,
    thread: Option<JoinHandle<()>>,
}

impl Sender {
    /// Starts the sender on its own thread (its own async runtime).
    pub fn start(setup: SenderSetup) -> std::io::Result<Sender> {
        let handle = SenderHandle::default();
        let shared = handle.shared.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cvm-sender")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("cvm-sender".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let transport =
                        match Transport::new(&setup.mail.delivery, setup.mail.concurrency) {
                            Ok(t) => t,
                            Err(e) => {
                                tracing::error!(error = %e, "the campaign sender cannot start");
                                return;
                            }
                        };
                    Dispatcher::new(setup, transport, shared).run().await;
                });
            })?;
        Ok(Sender {
            handle,
            thread: Some(thread),
        })
    }

    /// A handle that wakes this sender.
    pub fn handle(&self) -> SenderHandle {
        self.handle.clone()
    }

    /// Stops claiming, waits for the messages in flight and records their fates.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.handle.shared.stop.store(true, Ordering::SeqCst);
        self.handle.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A campaign's templates and row, rendered from by the send tasks.
struct CampaignMail {
    campaign: Campaign,
    templates: Templates,
}

/// A claimed row ready to go, with what its message shows.
struct Ready {
    row: Recipient,
    customer: Customer,
    score: Option<Score>,
}

/// Messages per second as a token bucket (0: unlimited); the burst is a
/// tenth of a second's worth, so the rate holds over any second.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            tokens: 1.0,
            at: Instant::now(),
        }
    }

    fn burst(&self) -> f64 {
        (self.rate / 10.0).max(1.0)
    }

    /// Whole tokens available now (usize::MAX when unlimited).
    fn available(&mut self) -> usize {
        if self.rate <= 0.0 {
            return usize::MAX;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst());
        self.tokens.floor().max(0.0) as usize
    }

    fn take(&mut self, n: usize) {
        if self.rate > 0.0 {
            self.tokens -= n as f64;
        }
    }

    /// How long until one token is there.
    fn wait(&self) -> Duration {
        if self.rate <= 0.0 || self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

struct Dispatcher {
    setup: SenderSetup,
    transport: Transport,
    shared: Arc<Shared>,
    owner: String,
    mails: HashMap<i64, Arc<CampaignMail>>,
    in_flight: HashSet<i64>,
    done: Vec<(i64, Fate)>,
    bucket: Bucket,
    paused_until: Option<Instant>,
    refusals: u32,
    last_tick: Option<Instant>,
    last_renewal: Instant,
}

/// What one send task reports.
struct Report {
    id: i64,
    attempts: i32,
    outcome: Outcome,
}

impl Dispatcher {
    fn new(setup: SenderSetup, transport: Transport, shared: Arc<Shared>) -> Dispatcher {
        let rate = setup.mail.rate;
        let owner = format!(
            "{}:{}:{:08x}",
            hostname(),
            std::process::id(),
            rand::random::<u32>()
        );
        Dispatcher {
            setup,
            transport,
            shared,
            owner,
            mails: HashMap::new(),
            in_flight: HashSet::new(),
            done: Vec::new(),
            bucket: Bucket::new(rate),
            paused_until: None,
            refusals: 0,
            last_tick: None,
            last_renewal: Instant::now(),
        }
    }

    async fn run(mut self) {
        tracing::info!(owner = %self.owner, "campaign sender started");
        let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
        loop {
            while let Ok(report) = rx.try_recv() {
                self.settle(report);
            }
            let stopping = self.shared.stop.load(Ordering::SeqCst);
            if stopping && self.in_flight.is_empty() && self.done.is_empty() {
                break;
            }
            let now = Instant::now();
            if self.paused_until.is_some_and(|t| t <= now) {
                self.paused_until = None;
            }
            let free = self.setup.mail.concurrency - self.in_flight.len();
            let want = if stopping || self.paused_until.is_some() {
                0
            } else {
                free.min(self.bucket.available())
            };
            let tick = self.last_tick.is_none_or(|t| now.duration_since(t) >= TICK);
            let mut claimed_all = false;
            if !self.done.is_empty() || want > 0 || tick {
                if tick {
                    self.last_tick = Some(now);
                    self.maintain(stopping).await;
                }
                match self.step(want).await {
                    Ok(ready) => {
                        claimed_all = want > 0 && ready.len() == want;
                        self.bucket.take(ready.len());
                        for r in ready {
                            self.launch(r, &tx);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "campaign sender: database step failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            if claimed_all {
                continue;
            }
            // Nothing more to do now: wait for a finished send, a wake-up,
            // the next rate token or the next tick.
            let mut wait = TICK;
            if want == 0 && free > 0 && !stopping {
                let token = self.bucket.wait();
                if token > Duration::ZERO {
                    wait = wait.min(token);
                }
                if let Some(until) = self.paused_until {
                    wait = wait.min(until.saturating_duration_since(Instant::now()));
                }
            }
            tokio::select! {
                r = rx.recv() => if let Some(report) = r { self.settle(report) },
                () = self.shared.wake.notified() => { self.last_tick = None; }
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(owner = %self.owner, "campaign sender stopped");
    }

    /// Turns a send task's outcome into the row's fate, and slows down on refusals.
    fn settle(&mut self, report: Report) {
        self.in_flight.remove(&report.id);
        let now = Utc::now().naive_utc();
        let mail = &self.setup.mail;
        let fate = match report.outcome {
            Outcome::Accepted => {
                self.refusals = 0;
                Fate::Sent(now)
            }
            Outcome::Temporary(reply) | Outcome::NotConnected(reply) => {
                self.refusals += 1;
                let pause = Duration::from_millis(250)
                    .saturating_mul(1 << self.refusals.min(8))
                    .min(MAX_PAUSE);
                self.paused_until = Some(Instant::now() + pause);
                if report.attempts >= mail.max_attempts {
                    Fate::Failed(format!(
                        "gave up after {} attempts; last: {reply}",
                        report.attempts
                    ))
                } else {
                    let exp = u32::try_from(report.attempts.max(1) - 1)
                        .unwrap_or(0)
                        .min(16);
                    let delay = mail.retry_after.saturating_mul(1 << exp).min(MAX_RETRY);
                    let delay =
                        chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                    Fate::Retry {
                        error: reply,
                        retry_at: now + delay,
                    }
                }
            }
            Outcome::Permanent(reply) => Fate::Failed(reply),
            Outcome::Unknown(error) => Fate::InDoubt(format!(
                "the SMTP transaction broke before the server's verdict, so the message may have been delivered (never resent by itself): {error}"
            )),
        };
        let label = match &fate {
            Fate::Sent(_) => "sent",
            Fate::Retry { .. } => "retry",
            Fate::Failed(_) => "failed",
            Fate::InDoubt(_) => "in_doubt",
            Fate::Suppressed(_) => "suppressed",
        };
        self.setup
            .metrics
            .campaign_messages
            .with_label_values(&[label])
            .inc();
        self.done.push((report.id, fate));
    }

    /// Housekeeping every tick: expired leases become `IN_DOUBT`, due
    /// scheduled campaigns start, campaigns with nothing left finish, and
    /// this process's leases are renewed.
    async fn maintain(&mut self, stopping: bool) {
        let db = self.setup.db.clone();
        let lease = self.setup.mail.lease;
        let renew: Vec<i64> = if self.last_renewal.elapsed() >= lease / 3 {
            self.last_renewal = Instant::now();
            self.in_flight.iter().copied().collect()
        } else {
            Vec::new()
        };
        let owner = self.owner.clone();
        let links = self.setup.links.clone();
        let domain = self.setup.mail.message_id_domain();
        let cap_default = self.setup.mail.frequency_cap_days;
        let key = self.setup.mail.privacy_key.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut c = pool::checkout(&db)?;
            let now = Utc::now().naive_utc();
            if !renew.is_empty() {
                outbox::renew(&mut c, &owner, &renew, now + chrono_of(lease))?;
            }
            let expired = if outbox::any_expired(&mut c, now)? {
                outbox::expire_leases(&mut c, now)?
            } else {
                0
            };
            if expired > 0 {
                tracing::warn!(
                    rows = expired,
                    "campaign messages whose sender stopped mid-transaction are now in doubt"
                );
            }
            if !stopping && let Some(domain) = domain {
                for due in campaigns::with_status(&mut c, CampaignStatus::Scheduled)? {
                    if due.send_at.is_some_and(|t| t <= now) {
                        let cx = FreezeContext {
                            links: &links,
                            message_domain: &domain,
                            cap_default,
                            privacy_key: key.as_ref(),
                        };
                        if freeze::freeze(&mut c, &cx, due.id, CampaignStatus::Scheduled, now)?
                            .is_some()
                        {
                            tracing::info!(campaign = due.id, "scheduled campaign started");
                        }
                    }
                }
            }
            finish_campaigns(&mut c, now)
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "campaign sender: housekeeping failed"),
            Err(e) => tracing::warn!(error = %e, "campaign sender: housekeeping stopped"),
        }
    }

    /// One transaction: record the finished fates, claim up to `want` rows,
    /// suppress those that no longer qualify; returns the rows to send.
    async fn step(&mut self, want: usize) -> Result<Vec<Ready>, DbError> {
        let done = std::mem::take(&mut self.done);
        let db = self.setup.db.clone();
        let owner = self.owner.clone();
        let lease = self.setup.mail.lease;
        let cap_default = self.setup.mail.frequency_cap_days;
        let key = self.setup.mail.privacy_key.clone();
        let want = i64::try_from(want).unwrap_or(i64::MAX);
        let known: HashSet<i64> = self.mails.keys().copied().collect();
        let joined = tokio::task::spawn_blocking(move || {
            let mut c = match pool::checkout(&db) {
                Ok(c) => c,
                Err(e) => return Err((e, done)),
            };
            // Idle: a read, so an idle sender never takes SQLite's write lock.
            let now = Utc::now().naive_utc();
            if done.is_empty() {
                match outbox::any_due(&mut c, now) {
                    Ok(true) => {}
                    Ok(false) => return Ok((Vec::new(), Vec::new(), 0)),
                    Err(e) => return Err((e, done)),
                }
            }
            let result = c.transaction::<_, DbError, _>(|c| {
                lock_for_write(c)?;
                record(c, &owner, &done)?;
                let now = Utc::now().naive_utc();
                let claimed = outbox::claim(c, &owner, now, now + chrono_of(lease), want)?;
                let rules = Rules {
                    cap_default,
                    privacy_key: key.as_ref(),
                    now,
                };
                recheck(c, &owner, claimed, &rules, &known)
            });
            // Fates not recorded are kept for the next step.
            result.map_err(|e| (e, done))
        })
        .await;
        let (ready, new_campaigns, suppressed) = match joined {
            Ok(Ok(r)) => r,
            Ok(Err((e, done))) => {
                self.done = done;
                return Err(e);
            }
            Err(e) => {
                return Err(DbError::Checkout {
                    message: format!("the database task stopped: {e}"),
                });
            }
        };
        self.setup
            .metrics
            .campaign_messages
            .with_label_values(&["suppressed"])
            .inc_by(u64::try_from(suppressed).unwrap_or(0));
        for campaign in new_campaigns {
            match Templates::new(
                &campaign.subject,
                &campaign.text_template,
                campaign.html_template.as_deref(),
            ) {
                Ok(templates) => {
                    self.mails.insert(
                        campaign.id,
                        Arc::new(CampaignMail {
                            campaign,
                            templates,
                        }),
                    );
                }
                Err(e) => {
                    tracing::error!(campaign = campaign.id, error = %e, "campaign templates no longer parse")
                }
            }
        }
        Ok(ready)
    }

    /// Starts the send task of `ready`.
    fn launch(&mut self, ready: Ready, tx: &mpsc::UnboundedSender<Report>) {
        let id = ready.row.id;
        let attempts = ready.row.attempts;
        self.in_flight.insert(id);
        let Some(mail) = self.mails.get(&ready.row.campaign_id).cloned() else {
            self.in_flight.remove(&id);
            self.done.push((
                id,
                Fate::Failed("the campaign's templates cannot be rendered".into()),
            ));
            return;
        };
        let setup_from = self.setup.mail.from.clone();
        let mailto = self.setup.mail.mailto();
        let links = self.setup.links.clone();
        let public_url = self.setup.public_url.clone();
        let transport = self.transport.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let outcome = match compose(
                &ready,
                &mail,
                setup_from.as_ref(),
                mailto.as_deref(),
                &links,
                &public_url,
            ) {
                Ok((message, message_id)) => transport.send(&message, &message_id).await,
                Err(e) => Outcome::Permanent(e),
            };
            let _ = tx.send(Report {
                id,
                attempts,
                outcome,
            });
        });
    }
}

/// The message of `ready` in `mail`'s campaign.
fn compose(
    ready: &Ready,
    mail: &CampaignMail,
    from: Option<&lettre::message::Mailbox>,
    mailto: Option<&str>,
    links: &LinkSigner,
    public_url: &str,
) -> Result<(lettre::Message, String), String> {
    let campaign = &mail.campaign;
    let from = from.ok_or("mail.from (CVM_MAIL_FROM) is not set")?;
    let row = &ready.row;
    let address = row.address.as_deref().ok_or("the row has no address")?;
    let message_id = row.message_id.clone().ok_or("the row has no Message-ID")?;
    let unsubscribe = links::unsubscribe_url(
        public_url,
        &links::unsubscribe(links, campaign.id, &row.customer_id).token,
    );
    let survey_url = campaign
        .survey_id
        .map(|s| links::survey_url(public_url, &survey_link(links, s, &row.customer_id).token));
    let context = MessageContext {
        customer: &ready.customer,
        score: ready.score.as_ref(),
        campaign_name: &campaign.name,
        offer_code: campaign.offer_code.as_deref(),
        survey_url,
        unsubscribe_url: unsubscribe.clone(),
    };
    let rendered = mail
        .templates
        .render(&context.value())
        .map_err(|e| format!("cannot render the message: {e}"))?;
    let message = message::build(
        rendered,
        &Headers {
            from,
            to: address,
            message_id: &message_id,
            campaign_id: Some(campaign.id),
            unsubscribe_url: &unsubscribe,
            mailto,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok((message, message_id))
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(60))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Records `done`: sent rows in one statement, the rest one by one.
fn record(c: &mut DbConnection, owner: &str, done: &[(i64, Fate)]) -> Result<(), DbError> {
    let mut sent: Vec<i64> = Vec::new();
    let mut at: Option<NaiveDateTime> = None;
    for (id, fate) in done {
        match fate {
            Fate::Sent(t) => {
                sent.push(*id);
                at = Some(at.map_or(*t, |a: NaiveDateTime| a.max(*t)));
            }
            other => {
                outbox::record(c, *id, owner, other)?;
            }
        }
    }
    if let Some(at) = at {
        outbox::mark_sent(c, owner, &sent, at)?;
    }
    Ok(())
}

/// What [`recheck`] checks claimed rows with.
struct Rules<'a> {
    /// Campaigns' default frequency cap in days.
    cap_default: u32,
    /// Recognises addresses suppressed as keyed hashes.
    privacy_key: Option<&'a cvm_shared::privacy::PrivacyKey>,
    /// The time of the check.
    now: NaiveDateTime,
}

/// Checks each claimed row against the current state: the customer still
/// active, consenting, at the frozen address, not suppressed, and not
/// mailed by another campaign within this one's cap. Rows that fail are
/// recorded `SUPPRESSED` with the reason. Returns the rows to send and the
/// campaigns the caller has not loaded yet.
fn recheck(
    c: &mut DbConnection,
    owner: &str,
    claimed: Vec<Recipient>,
    rules: &Rules<'_>,
    known: &HashSet<i64>,
) -> Result<(Vec<Ready>, Vec<Campaign>, usize), DbError> {
    use cvm_shared::db::schema::{customers, outbox as o, scores, suppressions as s};
    use cvm_shared::privacy::KeyKind;
    let Rules {
        cap_default, now, ..
    } = *rules;
    if claimed.is_empty() {
        return Ok((Vec::new(), Vec::new(), 0));
    }
    let count = claimed.len();
    let ids: Vec<&str> = claimed.iter().map(|r| r.customer_id.as_str()).collect();
    let addresses: Vec<&str> = claimed
        .iter()
        .filter_map(|r| r.address.as_deref())
        .collect();
    let people: HashMap<String, (Customer, Option<Score>)> = customers::table
        .left_join(scores::table)
        .filter(customers::customer_id.eq_any(&ids))
        .select((Customer::as_select(), Option::<Score>::as_select()))
        .load::<(Customer, Option<Score>)>(c)
        .map_err(DbError::query("customers", "select recipients"))?
        .into_iter()
        .map(|(cu, sc)| (cu.customer_id.clone(), (cu, sc)))
        .collect();
    // Each address also as the keyed hash an erased person's suppression keeps.
    let hashed: HashMap<String, &str> = rules
        .privacy_key
        .map(|k| {
            addresses
                .iter()
                .map(|a| (k.hashed_value(KeyKind::Email, a), *a))
                .collect()
        })
        .unwrap_or_default();
    let wanted: Vec<&str> = addresses
        .iter()
        .copied()
        .chain(hashed.keys().map(String::as_str))
        .collect();
    let suppressed: HashMap<String, String> = s::table
        .filter(s::address.eq_any(&wanted))
        .select((s::address, s::reason))
        .load::<(String, String)>(c)
        .map_err(DbError::query("suppressions", "select recipients"))?
        .into_iter()
        .map(|(a, reason)| match hashed.get(&a) {
            Some(clear) => ((*clear).to_owned(), reason),
            None => (a, reason),
        })
        .collect();
    // Other campaigns' messages to these addresses: sent (with when) or in
    // flight. Filtered by address only, so the address index answers (a
    // status filter here led SQLite to scan every sent row).
    let others: Vec<(String, i64, RecipientStatus, Option<NaiveDateTime>)> = o::table
        .filter(o::address.eq_any(&addresses))
        .select((
            o::address.assume_not_null(),
            o::campaign_id,
            o::status,
            o::sent_at,
        ))
        .load::<(String, i64, RecipientStatus, Option<NaiveDateTime>)>(c)
        .map_err(DbError::query("outbox", "select recent messages"))?
        .into_iter()
        .filter(|(_, _, status, _)| {
            matches!(status, RecipientStatus::Sent | RecipientStatus::Sending)
        })
        .collect();
    let mut campaigns_by_id: HashMap<i64, Campaign> = HashMap::new();
    let mut wanted: Vec<i64> = claimed.iter().map(|r| r.campaign_id).collect();
    wanted.sort_unstable();
    wanted.dedup();
    for id in wanted {
        if let Some(found) = campaigns::find(c, id)? {
            campaigns_by_id.insert(id, found);
        }
    }
    let claimed_ids: HashSet<i64> = claimed.iter().map(|r| r.id).collect();
    let mut taken: HashSet<String> = HashSet::new();
    let mut ready = Vec::with_capacity(claimed.len());
    for row in claimed {
        let address = row.address.clone().unwrap_or_default();
        let cap = campaigns_by_id
            .get(&row.campaign_id)
            .map_or(cap_default, |k| freeze::cap_days(k, cap_default));
        let since = now - chrono::Duration::days(i64::from(cap));
        let capped = cap > 0
            && (taken.contains(&address)
                || others.iter().any(|(a, campaign, status, sent_at)| {
                    *a == address
                        && *campaign != row.campaign_id
                        && match status {
                            RecipientStatus::Sent => sent_at.is_some_and(|t| t >= since),
                            _ => true,
                        }
                }));
        let reason = match people.get(&row.customer_id) {
            None => Some("customer_gone".to_string()),
            Some((cu, _)) if !cu.active => Some("inactive".into()),
            Some((cu, _)) if !cu.email_opt_in => Some("no_consent".into()),
            Some((cu, _)) if usable_address(cu.email.as_deref()).as_deref() != Some(&address) => {
                Some("address_changed".into())
            }
            Some(_) => match suppressed.get(&address) {
                Some(why) => Some(why.clone()),
                None if capped => Some("frequency_cap".into()),
                None => None,
            },
        };
        match reason {
            Some(why) => {
                outbox::record(c, row.id, owner, &Fate::Suppressed(why))?;
            }
            None => {
                taken.insert(address);
                let Some((customer, score)) = people.get(&row.customer_id).cloned() else {
                    continue;
                };
                ready.push(Ready {
                    row,
                    customer,
                    score,
                });
            }
        }
    }
    debug_assert!(ready.iter().all(|r| claimed_ids.contains(&r.row.id)));
    let new = campaigns_by_id
        .into_values()
        .filter(|k| !known.contains(&k.id))
        .collect();
    let suppressed = count - ready.len();
    Ok((ready, new, suppressed))
}

/// Moves every `SENDING` campaign with no row left `QUEUED` or `SENDING` to
/// `SENT`, holding the campaign rows' locks (PostgreSQL) or the write lock
/// (SQLite) so `retryFailed` cannot requeue rows in between.
pub fn finish_campaigns(c: &mut DbConnection, now: NaiveDateTime) -> Result<(), DbError> {
    use cvm_shared::db::schema::campaigns as k;
    // A read first: the write lock only when a campaign looks finished.
    let sending: Vec<i64> = k::table
        .filter(k::status.eq(CampaignStatus::Sending))
        .select(k::id)
        .load(c)
        .map_err(DbError::query("campaigns", "select sending"))?;
    let mut finished = false;
    for id in sending {
        finished |= outbox::unfinished(c, id)? == 0;
    }
    if !finished {
        return Ok(());
    }
    c.transaction::<_, DbError, _>(|c| {
        lock_for_write(c)?;
        let q = k::table
            .filter(k::status.eq(CampaignStatus::Sending))
            .select(k::id);
        let sending: Vec<i64> = match c {
            DbConnection::Sqlite(c) => q.load(c),
            DbConnection::Pg(c) => q.for_update().load(c),
        }
        .map_err(DbError::query("campaigns", "select sending"))?;
        for id in sending {
            if outbox::unfinished(c, id)? == 0
                && campaigns::transition(c, id, CampaignStatus::Sending, CampaignStatus::Sent, now)?
                    .is_some()
            {
                tracing::info!(campaign = id, "campaign sent: every recipient has a fate");
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_gives_the_rate_and_no_more_than_a_tenth_of_a_second_at_once() {
        let mut b = Bucket::new(100.0);
        b.tokens = 0.0;
        b.at = Instant::now() - Duration::from_secs(5);
        assert_eq!(b.available(), 10, "burst is a tenth of a second");
        b.take(10);
        assert!(b.wait() > Duration::ZERO);
        let mut unlimited = Bucket::new(0.0);
        assert_eq!(unlimited.available(), usize::MAX);
    }
}
