//! Configuration: one TOML file, every setting overridable by a `CVM_*`
//! environment variable (and by command-line flags in the binaries).
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file, the
//! environment, flags. Every value is validated once, here, so a bad value is a
//! one-line error naming the setting and never a surprise deep in a run.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::Currency;

/// A configuration problem, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    /// A setting has a value that cannot be used.
    #[error("invalid setting {setting} = {value:?}: {expected}")]
    Invalid {
        setting: String,
        value: String,
        expected: String,
    },
}

/// Settings of the ingest job (the choices the data contract leaves open).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Currency every amount is converted to (`CVM_BASE_CURRENCY`).
    pub base_currency: String,
    /// IANA time zone of POS local times without offset (`CVM_POS_TIME_ZONE`).
    pub pos_time_zone: String,
    /// Country calling code for phones without one, digits only (`CVM_DEFAULT_COUNTRY_CODE`).
    pub default_country_code: String,
    /// Largest share of rejected records a run may have and still publish (`CVM_REJECT_LIMIT`).
    pub reject_limit: f64,
    /// First plausible date (`YYYY-MM-DD`) of a record's time or a scoring date (`CVM_EARLIEST_DATE`).
    pub earliest_date: String,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            base_currency: "USD".into(),
            pos_time_zone: "UTC".into(),
            default_country_code: "1".into(),
            reject_limit: 0.01,
            earliest_date: "1970-01-01".into(),
        }
    }
}

/// Settings of the warehouse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseSettings {
    /// Store emails, phones and names as keyed hashes (`CVM_PSEUDONYMISE`);
    /// the clear values go to the vault under `_privacy/`. Needs `CVM_PRIVACY_KEY`.
    pub pseudonymise: bool,
}

/// Settings of the scoring job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringSettings {
    /// `week` or `day`: the time unit of recency and T (`CVM_PERIOD`).
    pub period: String,
    /// Monthly discount rate for CLV (`CVM_DISCOUNT_RATE`).
    pub discount_rate: f64,
    /// Profit margin applied to CLV (`CVM_MARGIN`).
    pub margin: f64,
    /// `p_alive` below which a customer is `churned` (`CVM_CHURNED_BELOW`).
    pub churned_below: f64,
    /// `p_alive` below which a customer is `at_risk` (`CVM_AT_RISK_BELOW`).
    pub at_risk_below: f64,
    /// Orders from which a live customer is `loyal` (`CVM_LOYAL_MIN_ORDERS`).
    pub loyal_min_orders: u32,
    /// Days since a first purchase during which a one-time buyer is `new` (`CVM_NEW_WITHIN_DAYS`).
    pub new_within_days: u32,
    /// IANA time zone whose "today" is the nightly run's default as-of date (`CVM_TIME_ZONE`).
    pub time_zone: String,
}

impl Default for ScoringSettings {
    fn default() -> Self {
        ScoringSettings {
            period: "week".into(),
            discount_rate: 0.01,
            margin: 1.0,
            churned_below: 0.2,
            at_risk_below: 0.5,
            loyal_min_orders: 3,
            new_within_days: 90,
            time_zone: "UTC".into(),
        }
    }
}

/// Database settings (used by `load`, `nightly` and the portal).
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path` or `postgres://...` (`CVM_DATABASE_URL`). Never logged.
    pub url: Option<String>,
}

// Settings are formatted with {:?} in logs and errors: never with a password.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.url.as_deref().map(crate::db::redact_url))
            .finish()
    }
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `human` or `json` (`CVM_LOG_FORMAT`).
    pub format: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "human".into(),
        }
    }
}

/// A secret setting (a key, a URL with a password): never printed, by
/// `Debug` nor when the settings are serialized.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Settings of the portal (`cvm-portal serve`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PortalSettings {
    /// Listen address (`CVM_PORTAL_BIND`).
    pub bind: String,
    /// Base of links in emails and invitations (`CVM_PORTAL_PUBLIC_URL`).
    pub public_url: String,
    /// Key signing invitation and unsubscribe tokens, at least 32 bytes (`CVM_PORTAL_SECRET`).
    pub secret: Option<Secret>,
    /// Requests per second per client IP on the public routes, 0 = off (`CVM_PORTAL_RATE_LIMIT`).
    pub rate_limit: f64,
    /// Whether `GET /graphiql` serves GraphiQL.
    pub graphiql: bool,
    /// Database connections per portal process.
    pub pool_size: u32,
    /// Largest request body accepted, in bytes; larger ones get 413 (`CVM_PORTAL_MAX_BODY_BYTES`).
    pub max_body_bytes: u32,
    /// Deepest GraphQL selection accepted (`CVM_PORTAL_MAX_DEPTH`); the contract needs 15.
    pub max_depth: u32,
    /// Costliest GraphQL query accepted, a list field costing its page size
    /// times its selection (`CVM_PORTAL_MAX_COMPLEXITY`).
    pub max_complexity: u32,
    /// Whether the schema answers introspection queries (`CVM_PORTAL_INTROSPECTION`).
    pub introspection: bool,
    /// Origins allowed to call the API from a browser (CORS), e.g.
    /// `["https://admin.shop.example"]`; empty: no cross-origin calls (`CVM_PORTAL_CORS_ORIGINS`, comma-separated).
    pub cors_origins: Vec<String>,
    /// The warehouse folder, if this process can read it: data exports then
    /// include purchases, events and score history (`CVM_PORTAL_WAREHOUSE`).
    pub warehouse: Option<String>,
    /// Where data exports wait for their download (`CVM_PORTAL_EXPORT_DIR`).
    pub export_dir: String,
}

/// The smallest `portal.secret`, in bytes (HMAC-SHA256 keys shorter than the hash are weaker).
pub const MIN_SECRET_BYTES: usize = 32;

impl Default for PortalSettings {
    fn default() -> Self {
        PortalSettings {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            secret: None,
            rate_limit: 20.0,
            graphiql: true,
            pool_size: 8,
            max_body_bytes: 1024 * 1024,
            max_depth: 20,
            max_complexity: 1_000_000,
            introspection: true,
            cors_origins: Vec::new(),
            warehouse: None,
            export_dir: "exports/".into(),
        }
    }
}

/// Settings of campaign mail (used by the campaign sender).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// `smtp://[user:pass@]host:port[?tls=...]`; none means the file outbox (`CVM_SMTP_URL`).
    pub smtp_url: Option<Secret>,
    /// Folder of the file outbox (`CVM_MAIL_OUTBOX_DIR`).
    pub outbox_dir: String,
    /// Sender identity, e.g. `Shop <news@shop.example>` (`CVM_MAIL_FROM`).
    pub from: Option<String>,
    /// Messages per second, 0 = unlimited (`CVM_SEND_RATE`).
    pub send_rate: f64,
    /// SMTP transactions in flight at once (`CVM_SEND_CONCURRENCY`).
    pub send_concurrency: u32,
    /// At most one campaign message per address within this many days, 0 = off (`CVM_FREQUENCY_CAP_DAYS`).
    pub frequency_cap_days: u32,
    /// How long a claimed message stays the claiming process's; a process
    /// silent for longer is taken for dead and its claims become `in_doubt`
    /// (`CVM_SEND_LEASE_SECONDS`).
    pub lease_seconds: u32,
    /// First wait after a temporary refusal (4xx) or no connection, doubled
    /// per attempt up to an hour (`CVM_SEND_RETRY_SECONDS`).
    pub retry_seconds: u32,
    /// SMTP attempts per message before a temporary refusal counts as a failure (`CVM_SEND_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// The `mailto:` of `List-Unsubscribe`; none: the sender address (`CVM_MAIL_UNSUBSCRIBE_MAILTO`).
    pub unsubscribe_mailto: Option<String>,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            smtp_url: None,
            outbox_dir: "outbox/".into(),
            from: None,
            send_rate: 50.0,
            send_concurrency: 4,
            frequency_cap_days: 7,
            lease_seconds: 60,
            retry_seconds: 60,
            max_attempts: 8,
            unsubscribe_mailto: None,
        }
    }
}

/// All settings of cvm.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Ingest job.
    pub ingest: IngestSettings,
    /// Warehouse.
    pub warehouse: WarehouseSettings,
    /// Scoring job.
    pub scoring: ScoringSettings,
    /// Database.
    pub database: DatabaseSettings,
    /// Logs.
    pub log: LogSettings,
    /// Portal.
    pub portal: PortalSettings,
    /// Campaign mail.
    pub mail: MailSettings,
    /// The run's clock date (UTC), fixed by tests; `None` reads the system
    /// clock. Not a setting: never read from a file or the environment.
    #[serde(skip)]
    pub today: Option<NaiveDate>,
}

/// The span of plausible dates, inclusive: a record time or a scoring date
/// outside it is a typo or a placeholder (`0000-01-01`, `9999-12-31`), and one
/// such date would distort every customer's model fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateWindow {
    /// First plausible day (`ingest.earliest_date`).
    pub earliest: NaiveDate,
    /// Last plausible day: the day after the run's clock date (UTC), so that
    /// records stamped in time zones ahead of UTC still fit.
    pub latest: NaiveDate,
}

/// A date outside the [`DateWindow`].
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} {date} is outside the plausible dates {} to {} (ingest.earliest_date to the day after today, UTC): pass a date in that range",
    window.earliest,
    window.latest
)]
pub struct OutsideWindow {
    /// What the date is (a flag name).
    pub what: String,
    /// The date.
    pub date: NaiveDate,
    /// The window it misses.
    pub window: DateWindow,
}

impl DateWindow {
    /// Whether `d` is in the window.
    pub fn contains(&self, d: NaiveDate) -> bool {
        (self.earliest..=self.latest).contains(&d)
    }

    /// `d`, or an error naming `what` when it is outside the window.
    pub fn check(&self, what: &str, d: NaiveDate) -> Result<NaiveDate, OutsideWindow> {
        if self.contains(d) {
            Ok(d)
        } else {
            Err(OutsideWindow {
                what: what.to_string(),
                date: d,
                window: *self,
            })
        }
    }

    /// Microseconds since the Unix epoch covered by the window: from the
    /// first day's midnight UTC up to (excluding) the midnight after the last.
    pub fn micros(&self) -> std::ops::Range<i64> {
        let midnight = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .map_or(i64::MAX, |t| t.and_utc().timestamp_micros())
        };
        midnight(self.earliest)..self.latest.succ_opt().map_or(i64::MAX, midnight)
    }
}

/// A date written exactly as `YYYY-MM-DD` (four-digit year, two-digit month
/// and day): chrono alone also takes `2026-1-1` and `+10000-01-01`, which
/// make folder names such as `scores/as_of=+10000-01-01` that other tools
/// cannot read.
pub fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    shape
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
}

/// Environment variables that override settings, with the setting each names.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("CVM_BASE_CURRENCY", "ingest.base_currency"),
    ("CVM_POS_TIME_ZONE", "ingest.pos_time_zone"),
    ("CVM_DEFAULT_COUNTRY_CODE", "ingest.default_country_code"),
    ("CVM_REJECT_LIMIT", "ingest.reject_limit"),
    ("CVM_EARLIEST_DATE", "ingest.earliest_date"),
    ("CVM_PSEUDONYMISE", "warehouse.pseudonymise"),
    ("CVM_PERIOD", "scoring.period"),
    ("CVM_DISCOUNT_RATE", "scoring.discount_rate"),
    ("CVM_MARGIN", "scoring.margin"),
    ("CVM_TIME_ZONE", "scoring.time_zone"),
    ("CVM_CHURNED_BELOW", "scoring.churned_below"),
    ("CVM_AT_RISK_BELOW", "scoring.at_risk_below"),
    ("CVM_LOYAL_MIN_ORDERS", "scoring.loyal_min_orders"),
    ("CVM_NEW_WITHIN_DAYS", "scoring.new_within_days"),
    ("CVM_DATABASE_URL", "database.url"),
    ("CVM_LOG_FORMAT", "log.format"),
    ("CVM_PORTAL_BIND", "portal.bind"),
    ("CVM_PORTAL_PUBLIC_URL", "portal.public_url"),
    ("CVM_PORTAL_SECRET", "portal.secret"),
    ("CVM_PORTAL_RATE_LIMIT", "portal.rate_limit"),
    ("CVM_PORTAL_GRAPHIQL", "portal.graphiql"),
    ("CVM_PORTAL_POOL_SIZE", "portal.pool_size"),
    ("CVM_PORTAL_MAX_BODY_BYTES", "portal.max_body_bytes"),
    ("CVM_PORTAL_MAX_DEPTH", "portal.max_depth"),
    ("CVM_PORTAL_MAX_COMPLEXITY", "portal.max_complexity"),
    ("CVM_PORTAL_INTROSPECTION", "portal.introspection"),
    ("CVM_PORTAL_CORS_ORIGINS", "portal.cors_origins"),
    ("CVM_PORTAL_WAREHOUSE", "portal.warehouse"),
    ("CVM_PORTAL_EXPORT_DIR", "portal.export_dir"),
    ("CVM_SMTP_URL", "mail.smtp_url"),
    ("CVM_MAIL_OUTBOX_DIR", "mail.outbox_dir"),
    ("CVM_MAIL_FROM", "mail.from"),
    ("CVM_SEND_RATE", "mail.send_rate"),
    ("CVM_SEND_CONCURRENCY", "mail.send_concurrency"),
    ("CVM_FREQUENCY_CAP_DAYS", "mail.frequency_cap_days"),
    ("CVM_SEND_LEASE_SECONDS", "mail.lease_seconds"),
    ("CVM_SEND_RETRY_SECONDS", "mail.retry_seconds"),
    ("CVM_SEND_MAX_ATTEMPTS", "mail.max_attempts"),
    ("CVM_MAIL_UNSUBSCRIBE_MAILTO", "mail.unsubscribe_mailto"),
];

impl Settings {
    /// Defaults, then `file` (if given), then the process environment; validated.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_with_env(file, |k| std::env::var(k).ok())
    }

    /// Like [`Settings::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut s = match file {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        for (var, setting) in ENV_OVERRIDES {
            if let Some(value) = env(var) {
                s.set(setting, &value).map_err(|e| match e {
                    ConfigError::Invalid {
                        value, expected, ..
                    } => ConfigError::Invalid {
                        setting: format!("{setting} (from {var})"),
                        value,
                        expected,
                    },
                    other => other,
                })?;
            }
        }
        s.validate()?;
        Ok(s)
    }

    /// Reads a TOML file without validating values.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parse = |e: toml::de::Error, setting: Option<String>| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            let at = match (setting, line) {
                (Some(s), Some(l)) => format!("line {l}, setting {s}: "),
                (Some(s), None) => format!("setting {s}: "),
                (None, Some(l)) => format!("line {l}: "),
                (None, None) => String::new(),
            };
            ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("{at}{}", e.message().replace('\n', " ")),
            }
        };
        let de = toml::Deserializer::parse(&text).map_err(|e| parse(e, None))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let setting = e.path().to_string();
            parse(e.into_inner(), (setting != ".").then_some(setting))
        })
    }

    /// Sets one setting by its dotted name from text (env vars and flags).
    pub fn set(&mut self, setting: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = |expected: &str| ConfigError::Invalid {
            setting: setting.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        };
        let num = || {
            value
                .trim()
                .parse::<f64>()
                .map_err(|_| invalid("expected a number"))
        };
        let count = || {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| invalid("expected a whole number such as 4"))
        };
        let flag = || match value.trim() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid("expected true or false")),
        };
        match setting {
            "ingest.base_currency" => self.ingest.base_currency = value.trim().to_string(),
            "ingest.pos_time_zone" => self.ingest.pos_time_zone = value.trim().to_string(),
            "ingest.default_country_code" => {
                self.ingest.default_country_code = value.trim().to_string()
            }
            "ingest.reject_limit" => self.ingest.reject_limit = num()?,
            "ingest.earliest_date" => self.ingest.earliest_date = value.trim().to_string(),
            "warehouse.pseudonymise" => self.warehouse.pseudonymise = flag()?,
            "scoring.period" => self.scoring.period = value.trim().to_string(),
            "scoring.discount_rate" => self.scoring.discount_rate = num()?,
            "scoring.margin" => self.scoring.margin = num()?,
            "scoring.time_zone" => self.scoring.time_zone = value.trim().to_string(),
            "scoring.churned_below" => self.scoring.churned_below = num()?,
            "scoring.at_risk_below" => self.scoring.at_risk_below = num()?,
            "scoring.loyal_min_orders" => self.scoring.loyal_min_orders = count()?,
            "scoring.new_within_days" => self.scoring.new_within_days = count()?,
            "database.url" => self.database.url = Some(value.trim().to_string()),
            "log.format" => self.log.format = value.trim().to_string(),
            "portal.bind" => self.portal.bind = value.trim().to_string(),
            "portal.public_url" => self.portal.public_url = value.trim().to_string(),
            "portal.secret" => self.portal.secret = Some(Secret::new(value)),
            "portal.rate_limit" => self.portal.rate_limit = num()?,
            "portal.graphiql" => self.portal.graphiql = flag()?,
            "portal.pool_size" => self.portal.pool_size = count()?,
            "portal.max_body_bytes" => self.portal.max_body_bytes = count()?,
            "portal.max_depth" => self.portal.max_depth = count()?,
            "portal.max_complexity" => self.portal.max_complexity = count()?,
            "portal.introspection" => self.portal.introspection = flag()?,
            "portal.cors_origins" => {
                self.portal.cors_origins = value
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(String::from)
                    .collect()
            }
            "portal.warehouse" => self.portal.warehouse = Some(value.trim().to_string()),
            "portal.export_dir" => self.portal.export_dir = value.trim().to_string(),
            "mail.smtp_url" => self.mail.smtp_url = Some(Secret::new(value.trim())),
            "mail.outbox_dir" => self.mail.outbox_dir = value.trim().to_string(),
            "mail.from" => self.mail.from = Some(value.trim().to_string()),
            "mail.send_rate" => self.mail.send_rate = num()?,
            "mail.send_concurrency" => self.mail.send_concurrency = count()?,
            "mail.frequency_cap_days" => self.mail.frequency_cap_days = count()?,
            "mail.lease_seconds" => self.mail.lease_seconds = count()?,
            "mail.retry_seconds" => self.mail.retry_seconds = count()?,
            "mail.max_attempts" => self.mail.max_attempts = count()?,
            "mail.unsubscribe_mailto" => {
                self.mail.unsubscribe_mailto = Some(value.trim().to_string())
            }
            _ => return Err(invalid("unknown setting")),
        }
        Ok(())
    }

    /// Checks every value; the first bad one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &str, value: String, expected: &str| {
            Err(ConfigError::Invalid {
                setting: setting.into(),
                value,
                expected: expected.into(),
            })
        };
        let i = &self.ingest;
        if Currency::parse(&i.base_currency).is_err() {
            return invalid(
                "ingest.base_currency",
                i.base_currency.clone(),
                "expected a three-letter ISO 4217 code such as USD",
            );
        }
        if i.pos_time_zone.parse::<chrono_tz::Tz>().is_err() {
            return invalid(
                "ingest.pos_time_zone",
                i.pos_time_zone.clone(),
                "expected an IANA time zone such as Europe/Berlin or UTC",
            );
        }
        let cc = &i.default_country_code;
        if cc.is_empty()
            || cc.len() > 3
            || !cc.bytes().all(|b| b.is_ascii_digit())
            || cc.starts_with('0')
        {
            return invalid(
                "ingest.default_country_code",
                cc.clone(),
                "expected a country calling code of 1 to 3 digits such as 1 or 86",
            );
        }
        if !(0.0..=1.0).contains(&i.reject_limit) {
            return invalid(
                "ingest.reject_limit",
                i.reject_limit.to_string(),
                "expected a fraction from 0 to 1 such as 0.01",
            );
        }
        match parse_iso_date(&i.earliest_date) {
            Some(d) if d <= self.clock_date() => {}
            _ => {
                return invalid(
                    "ingest.earliest_date",
                    i.earliest_date.clone(),
                    "expected a date YYYY-MM-DD not after today such as 1970-01-01",
                );
            }
        }
        let s = &self.scoring;
        if s.period != "week" && s.period != "day" {
            return invalid("scoring.period", s.period.clone(), "expected week or day");
        }
        if !(0.0..1.0).contains(&s.discount_rate) {
            return invalid(
                "scoring.discount_rate",
                s.discount_rate.to_string(),
                "expected a monthly rate from 0 up to 1 such as 0.01",
            );
        }
        if !(s.margin.is_finite() && s.margin >= 0.0) {
            return invalid(
                "scoring.margin",
                s.margin.to_string(),
                "expected a non-negative number such as 1.0",
            );
        }
        for (name, v) in [
            ("scoring.churned_below", s.churned_below),
            ("scoring.at_risk_below", s.at_risk_below),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return invalid(name, v.to_string(), "expected a probability from 0 to 1");
            }
        }
        if s.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return invalid(
                "scoring.time_zone",
                s.time_zone.clone(),
                "expected an IANA time zone such as Asia/Shanghai or UTC",
            );
        }
        if let Some(url) = &self.database.url
            && !(url.starts_with("sqlite://")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            // Never echo the URL: it may hold a password.
            return invalid(
                "database.url",
                "<hidden>".into(),
                "expected sqlite://PATH or postgres://...",
            );
        }
        if self.log.format != "human" && self.log.format != "json" {
            return invalid(
                "log.format",
                self.log.format.clone(),
                "expected human or json",
            );
        }
        self.validate_portal_and_mail()
    }

    /// The `[portal]` and `[mail]` checks of [`Settings::validate`]; secrets are never echoed.
    fn validate_portal_and_mail(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &str, value: String, expected: &str| {
            Err(ConfigError::Invalid {
                setting: setting.into(),
                value,
                expected: expected.into(),
            })
        };
        let p = &self.portal;
        if p.bind.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                "portal.bind",
                p.bind.clone(),
                "expected an IP address and port such as 127.0.0.1:8080",
            );
        }
        if !(p.public_url.starts_with("http://") || p.public_url.starts_with("https://")) {
            return invalid(
                "portal.public_url",
                p.public_url.clone(),
                "expected an http:// or https:// URL such as https://shop.example",
            );
        }
        if let Some(secret) = &p.secret
            && secret.expose().len() < MIN_SECRET_BYTES
        {
            return invalid(
                "portal.secret",
                "<hidden>".into(),
                &format!(
                    "expected at least {MIN_SECRET_BYTES} bytes, got {} (e.g. `openssl rand -hex 32`)",
                    secret.expose().len()
                ),
            );
        }
        for (name, v) in [
            ("portal.rate_limit", p.rate_limit),
            ("mail.send_rate", self.mail.send_rate),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return invalid(name, v.to_string(), "expected a number >= 0 (0 = off)");
            }
        }
        if p.pool_size == 0 {
            return invalid("portal.pool_size", "0".into(), "expected at least 1");
        }
        for (name, v, least) in [
            ("portal.max_body_bytes", p.max_body_bytes, 1024),
            ("portal.max_depth", p.max_depth, 15),
            ("portal.max_complexity", p.max_complexity, 1),
        ] {
            if v < least {
                return invalid(name, v.to_string(), &format!("expected at least {least}"));
            }
        }
        for origin in &p.cors_origins {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if !host.is_some_and(|h| !h.is_empty() && !h.contains(['/', '?', '#', ' '])) {
                return invalid(
                    "portal.cors_origins",
                    origin.clone(),
                    "expected origins such as https://admin.shop.example (scheme and host, no path)",
                );
            }
        }
        let m = &self.mail;
        if let Some(url) = &m.smtp_url
            && !(url.expose().starts_with("smtp://") || url.expose().starts_with("smtps://"))
        {
            return invalid(
                "mail.smtp_url",
                "<hidden>".into(),
                "expected smtp://[user:pass@]host:port",
            );
        }
        for (name, v) in [
            ("mail.send_concurrency", m.send_concurrency),
            ("mail.lease_seconds", m.lease_seconds),
            ("mail.max_attempts", m.max_attempts),
        ] {
            if v == 0 {
                return invalid(name, "0".into(), "expected at least 1");
            }
        }
        Ok(())
    }

    /// The base currency, already validated.
    pub fn base_currency(&self) -> Currency {
        Currency::parse(&self.ingest.base_currency)
            .unwrap_or_else(|_| Currency::parse("USD").expect("USD is valid"))
    }

    /// The time zone of the nightly run's "today", already validated.
    pub fn business_time_zone(&self) -> chrono_tz::Tz {
        self.scoring.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// The run's clock date: [`Settings::today`] or today's UTC date.
    pub fn clock_date(&self) -> NaiveDate {
        self.today
            .unwrap_or_else(|| chrono::Utc::now().date_naive())
    }

    /// The plausible dates of this run (`ingest.earliest_date` already validated).
    pub fn date_window(&self) -> DateWindow {
        let today = self.clock_date();
        DateWindow {
            earliest: parse_iso_date(&self.ingest.earliest_date).unwrap_or(NaiveDate::MIN),
            latest: today.succ_opt().unwrap_or(today),
        }
    }

    /// The POS time zone, already validated.
    pub fn pos_time_zone(&self) -> chrono_tz::Tz {
        self.ingest.pos_time_zone.parse().unwrap_or(chrono_tz::UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Every leaf setting of `value` as (dotted name, value as text).
    fn leaves(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&name, v, out);
                }
            }
            toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            toml::Value::Array(a) => out.push((
                prefix.to_string(),
                a.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }

    #[test]
    fn every_setting_has_an_environment_variable_that_sets_it() {
        // Optional settings are absent from the defaults' TOML: give them values.
        let mut all = Settings::default();
        all.database.url = Some("sqlite://x.db".into());
        all.portal.secret = Some(Secret::new("k".repeat(32)));
        all.mail.smtp_url = Some(Secret::new("smtp://127.0.0.1:25"));
        all.mail.from = Some("Shop <news@shop.example>".into());
        all.mail.unsubscribe_mailto = Some("u@shop.example".into());
        all.portal.warehouse = Some("/srv/cvm/warehouse".into());
        let value = toml::Value::try_from(&all).unwrap();
        let mut found = Vec::new();
        leaves("", &value, &mut found);
        assert!(found.len() > 30, "{found:?}");
        for (setting, text) in &found {
            let var = ENV_OVERRIDES
                .iter()
                .find(|(_, s)| s == setting)
                .map(|(v, _)| *v)
                .unwrap_or_else(|| panic!("{setting} has no environment variable"));
            let mut s = Settings::default();
            s.set(setting, text)
                .unwrap_or_else(|e| panic!("{var} does not set {setting}: {e}"));
        }
        for (var, setting) in ENV_OVERRIDES {
            assert!(
                found.iter().any(|(s, _)| s == setting),
                "{var} names {setting}, which is not a setting"
            );
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.ingest.base_currency, "USD");
        assert_eq!(s.ingest.pos_time_zone, "UTC");
        assert_eq!(s.ingest.default_country_code, "1");
        assert_eq!(s.ingest.reject_limit, 0.01);
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cvm.toml");
        std::fs::write(
            &f,
            "[ingest]\nbase_currency = \"EUR\"\npos_time_zone = \"Asia/Shanghai\"\n",
        )
        .unwrap();
        let s = Settings::load_with_env(
            Some(&f),
            env(&[("CVM_BASE_CURRENCY", "CNY"), ("CVM_REJECT_LIMIT", "0.05")]),
        )
        .unwrap();
        assert_eq!(s.ingest.base_currency, "CNY");
        assert_eq!(s.ingest.pos_time_zone, "Asia/Shanghai");
        assert_eq!(s.ingest.reject_limit, 0.05);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            ("CVM_BASE_CURRENCY", "dollars", "ingest.base_currency"),
            ("CVM_POS_TIME_ZONE", "Mars/Olympus", "ingest.pos_time_zone"),
            (
                "CVM_DEFAULT_COUNTRY_CODE",
                "+86",
                "ingest.default_country_code",
            ),
            ("CVM_REJECT_LIMIT", "lots", "ingest.reject_limit"),
            ("CVM_REJECT_LIMIT", "2", "ingest.reject_limit"),
        ];
        for (var, value, setting) in cases {
            let err = Settings::load_with_env(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(setting), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn the_date_window_runs_from_earliest_date_to_the_day_after_the_clock() {
        let mut s =
            Settings::load_with_env(None, env(&[("CVM_EARLIEST_DATE", "2000-01-01")])).unwrap();
        s.today = NaiveDate::from_ymd_opt(2026, 3, 31);
        let w = s.date_window();
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!((w.earliest, w.latest), (d(2000, 1, 1), d(2026, 4, 1)));
        assert!(w.contains(d(2026, 4, 1)) && !w.contains(d(2026, 4, 2)));
        assert!(!w.contains(d(1999, 12, 31)));
        assert_eq!(w.micros().start, 946_684_800_000_000);
        assert_eq!(
            w.micros().end,
            1_775_088_000_000_000,
            "2026-04-02T00:00:00Z"
        );
        let err = w.check("--as-of", d(2200, 1, 1)).unwrap_err().to_string();
        assert!(
            err.contains("--as-of 2200-01-01") && err.contains("2026-04-01"),
            "{err}"
        );
        assert_eq!(Settings::default().date_window().earliest, d(1970, 1, 1));
    }

    #[test]
    fn an_earliest_date_that_is_not_a_plain_past_date_is_an_error() {
        for v in ["1970-1-1", "+1970-01-01", "soon", "2999-01-01"] {
            let err = Settings::load_with_env(None, env(&[("CVM_EARLIEST_DATE", v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("ingest.earliest_date"), "{v}: {err}");
        }
    }

    #[test]
    fn iso_dates_are_exactly_four_two_two_digits() {
        assert_eq!(
            parse_iso_date("2026-01-05"),
            NaiveDate::from_ymd_opt(2026, 1, 5)
        );
        for bad in [
            "2026-1-1",
            "+10000-01-01",
            "10000-01-01",
            "2026-02-30",
            "2026/01/05",
            " 2026-01-05",
            "2026-01-05T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_iso_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cvm.toml");
        std::fs::write(&f, "[ingest]\nbase_curency = \"EUR\"\n").unwrap();
        let err = Settings::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("base_curency"), "{err}");
    }

    #[test]
    fn a_mistyped_value_in_the_file_names_the_setting_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cvm.toml");
        std::fs::write(&f, "[ingest]\nreject_limit = \"lots\"\n").unwrap();
        let err = Settings::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cvm.toml"), "{err}");
        assert!(err.contains("line 2, setting ingest.reject_limit"), "{err}");
        assert!(err.contains("\"lots\""), "{err}");
    }

    #[test]
    fn debug_of_settings_hides_the_database_password() {
        let s = Settings::load_with_env(
            None,
            env(&[("CVM_DATABASE_URL", "postgres://cvm:topsecret@db/cvm")]),
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("postgres://cvm:***@db/cvm"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }

    #[test]
    fn portal_settings_come_from_their_documented_variables() {
        let key = "k".repeat(32);
        let s = Settings::load_with_env(
            None,
            env(&[
                ("CVM_PORTAL_BIND", "0.0.0.0:9000"),
                ("CVM_PORTAL_PUBLIC_URL", "https://shop.example"),
                ("CVM_PORTAL_SECRET", &key),
                ("CVM_PORTAL_RATE_LIMIT", "0"),
                ("CVM_SEND_CONCURRENCY", "8"),
                ("CVM_MAIL_FROM", "Shop <news@shop.example>"),
            ]),
        )
        .unwrap();
        assert_eq!(s.portal.bind, "0.0.0.0:9000");
        assert_eq!(s.portal.public_url, "https://shop.example");
        assert_eq!(
            s.portal.secret.as_ref().map(Secret::expose),
            Some(key.as_str())
        );
        assert_eq!(s.portal.rate_limit, 0.0);
        assert_eq!(s.mail.send_concurrency, 8);
        assert_eq!(s.mail.from.as_deref(), Some("Shop <news@shop.example>"));
        assert!(!format!("{s:?}").contains(&key), "Debug hides the secret");
    }

    #[test]
    fn a_short_portal_secret_is_refused_without_echoing_it() {
        let err = Settings::load_with_env(None, env(&[("CVM_PORTAL_SECRET", "hunter2hunter2")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("portal.secret") && err.contains("32 bytes"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn database_url_is_never_echoed() {
        let err =
            Settings::load_with_env(None, env(&[("CVM_DATABASE_URL", "mysql://u:secret@h/db")]))
                .unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_is_valid_and_matches_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/cvm.example.toml");
        let s = Settings::load_with_env(Some(&path), |_| None).unwrap();
        assert_eq!(s, Settings::default());
    }
}
