//! The synthetic people behind a drop: CRM customers (buyers and prospects)
//! and guests, each with a BG/NBD-like purchase history and Gamma-Gamma spend.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Gamma, Poisson};

/// Seconds in a day.
pub(crate) const DAY: i64 = 86_400;

/// A country the synthetic customers live in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Country {
    /// ISO 3166-1 alpha-2.
    pub code: &'static str,
    /// Calling code, digits.
    pub cc: &'static str,
    /// Home currency.
    pub currency: &'static str,
    /// UTC offset used for local web times, minutes.
    pub offset_min: i32,
    /// Share of the population.
    pub weight: f64,
}

/// The countries, most customers in the US (base currency USD).
pub(crate) const COUNTRIES: [Country; 6] = [
    Country {
        code: "US",
        cc: "1",
        currency: "USD",
        offset_min: -300,
        weight: 0.60,
    },
    Country {
        code: "CN",
        cc: "86",
        currency: "CNY",
        offset_min: 480,
        weight: 0.12,
    },
    Country {
        code: "GB",
        cc: "44",
        currency: "GBP",
        offset_min: 0,
        weight: 0.10,
    },
    Country {
        code: "DE",
        cc: "49",
        currency: "EUR",
        offset_min: 60,
        weight: 0.08,
    },
    Country {
        code: "FR",
        cc: "33",
        currency: "EUR",
        offset_min: 60,
        weight: 0.05,
    },
    Country {
        code: "JP",
        cc: "81",
        currency: "JPY",
        offset_min: 540,
        weight: 0.05,
    },
];

/// Fixed rates to USD written to `fx/rates.csv`; `(code, rate text, rate)`.
pub(crate) const RATES: [(&str, &str, f64); 4] = [
    ("EUR", "1.08", 1.08),
    ("CNY", "0.14", 0.14),
    ("GBP", "1.27", 1.27),
    ("JPY", "0.0067", 0.0067),
];

/// Rate of a currency to USD (1 for USD and anything unlisted).
pub(crate) fn rate(currency: &str) -> f64 {
    RATES.iter().find(|r| r.0 == currency).map_or(1.0, |r| r.2)
}

/// Decimal places a currency is priced in.
pub(crate) fn decimals(currency: &str) -> u32 {
    if currency == "JPY" { 0 } else { 2 }
}

const FIRST: [&str; 24] = [
    "Ann", "Bo", "Carlos", "Dana", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jun", "Karl", "Lena",
    "Mei", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Victor", "Wei",
    "Yara",
];
const LAST: [&str; 24] = [
    "Smith", "Li", "Garcia", "Müller", "Martin", "Tanaka", "Brown", "Wang", "Dubois", "Schmidt",
    "Jones", "Chen", "Lopez", "Sato", "Taylor", "Zhang", "Moreau", "Fischer", "Wilson", "Liu",
    "O'Brien", "Kim", "Rossi", "Nguyen",
];
const DOMAINS: [&str; 5] = [
    "example.com",
    "mail.example.org",
    "example.net",
    "shop.example",
    "inbox.example.com",
];

/// The sales channels a purchase can land in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// `pos/*.csv`.
    Pos,
    /// `web/*.jsonl`.
    Web,
    /// `app/*.jsonl`.
    App,
    /// `transactions/*.csv`.
    Legacy,
}

/// How a guest (a buyer not in CRM) is known to the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuestKey {
    /// Only by email (web, app).
    Email,
    /// Only by phone (POS, app).
    Phone,
    /// Only by a legacy customer id (transactions feed).
    LegacyId,
}

/// A phone number: calling code and national significant number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phone {
    /// Calling code, digits.
    pub cc: &'static str,
    /// National significant number, digits.
    pub national: String,
}

/// One purchase: when, and its value in US cents.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Purchase {
    /// Unix seconds, UTC.
    pub at: i64,
    /// Value in US cents (converted to the paying currency by the channel).
    pub usd_cents: i64,
}

/// A synthetic person.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    /// CRM id (`C00000001`) or legacy guest id (`L00000001`); `None` for email/phone guests.
    pub id: Option<String>,
    /// `None` for CRM customers.
    pub guest: Option<GuestKey>,
    /// Given name.
    pub first: &'static str,
    /// Family name (may hold a comma or, once per chunk, a newline).
    pub last: String,
    /// Canonical email (lower case).
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<Phone>,
    /// Index into [`COUNTRIES`].
    pub country: usize,
    /// Sign-up / acquisition time, Unix seconds.
    pub acquired: i64,
    /// Purchases in time order (empty for prospects).
    pub purchases: Vec<Purchase>,
    /// Preferred sales channel.
    pub primary: Via,
    /// Engagement events per year.
    pub engagement: f64,
}

impl Person {
    /// The person's home country.
    pub fn country(&self) -> &'static Country {
        &COUNTRIES[self.country]
    }

    /// The channels this person can buy through.
    pub fn can_use(&self, via: Via) -> bool {
        match (self.guest, via) {
            (None, Via::App) => self.email.is_some() || self.phone.is_some(),
            (None, _) => true,
            (Some(GuestKey::Email), v) => matches!(v, Via::Web | Via::App),
            (Some(GuestKey::Phone), v) => matches!(v, Via::Pos | Via::App),
            (Some(GuestKey::LegacyId), v) => v == Via::Legacy,
        }
    }
}

/// Model parameters: BG/NBD for "how many and when", Gamma-Gamma for "how much".
pub(crate) struct Model {
    lambda: Gamma<f64>,
    dropout: Beta<f64>,
    spend_nu: Gamma<f64>,
    engagement: Gamma<f64>,
}

impl Model {
    /// The fixed parameters (chosen so a median buyer buys a few times a year,
    /// the CDNOW Gamma-Gamma fit gives about 35 USD per order).
    pub fn new() -> Model {
        // The parameters are constants known to be valid; fall back to a
        // degenerate but valid distribution rather than panic.
        let gamma =
            |shape: f64, scale: f64| Gamma::new(shape, scale).unwrap_or_else(|_| fallback_gamma());
        Model {
            // lambda ~ Gamma(r = 0.9, alpha = 80 days): mean 4.1 purchases a year.
            lambda: gamma(0.9, 1.0 / 80.0),
            // p ~ Beta(1.2, 5): a mean 19% chance to drop out after each purchase.
            dropout: Beta::new(1.2, 5.0).unwrap_or_else(|_| fallback_beta()),
            // nu ~ Gamma(q = 3.74, gamma = 15.44), spend | nu ~ Gamma(p = 6.25, nu).
            spend_nu: gamma(3.74, 1.0 / 15.44),
            engagement: gamma(2.0, 3.0),
        }
    }
}

fn fallback_gamma() -> Gamma<f64> {
    #[allow(clippy::unwrap_used)] // 1.0 and 1.0 are valid parameters
    Gamma::new(1.0, 1.0).unwrap()
}

fn fallback_beta() -> Beta<f64> {
    #[allow(clippy::unwrap_used)] // 1.0 and 1.0 are valid parameters
    Beta::new(1.0, 1.0).unwrap()
}

/// A bijection on `0..10^9` so consecutive people get unrelated-looking numbers.
fn scramble(i: u64) -> u64 {
    (i.wrapping_mul(387_420_489).wrapping_add(123_456_789)) % 1_000_000_000
}

/// A unique phone for `key` in `country` (unique for keys below 10^8).
fn phone_for(key: u64, country: &Country) -> Phone {
    let s = scramble(key);
    let national = match country.code {
        "US" => format!("{}{:09}", 2 + key % 8, s),
        "CN" => format!("1{}{:09}", 3 + key % 7, s),
        "GB" => format!("7{s:09}"),
        "DE" => format!("15{s:09}"),
        "FR" => format!("6{:08}", s % 100_000_000),
        _ => format!("90{:08}", s % 100_000_000),
    };
    Phone {
        cc: country.cc,
        national,
    }
}

/// Offset of guests' numbering so their emails and phones never equal a CRM customer's.
pub(crate) const GUEST_OFFSET: u64 = 50_000_000;

fn pick_country(rng: &mut ChaCha8Rng) -> usize {
    let mut u: f64 = rng.random();
    for (i, c) in COUNTRIES.iter().enumerate() {
        if u < c.weight {
            return i;
        }
        u -= c.weight;
    }
    0
}

/// Draws one person. `index` is the global CRM index (1-based) or, for
/// guests, a unique guest number; `start..=end` is the drop's period.
pub(crate) fn person(
    rng: &mut ChaCha8Rng,
    model: &Model,
    index: u64,
    guest: Option<GuestKey>,
    start: i64,
    end: i64,
) -> Person {
    let country = pick_country(rng);
    let c = &COUNTRIES[country];
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let mut last = LAST[rng.random_range(0..LAST.len())].to_string();
    if guest.is_none() && rng.random::<f64>() < 0.01 {
        // A comma inside a quoted CSV field.
        last.push_str(", Jr.");
    }
    let key = if guest.is_some() {
        GUEST_OFFSET + index
    } else {
        index
    };
    let domain = DOMAINS[rng.random_range(0..DOMAINS.len())];
    let email_text = format!("{}.{}{}@{}", first, ascii_name(&last), key, domain).to_lowercase();
    let (id, email, phone) = match guest {
        None => {
            let email = (rng.random::<f64>() < 0.95).then_some(email_text);
            let phone = (rng.random::<f64>() < 0.85).then(|| phone_for(key, c));
            (Some(format!("C{index:08}")), email, phone)
        }
        Some(GuestKey::Email) => (None, Some(email_text), None),
        Some(GuestKey::Phone) => (None, None, Some(phone_for(key, c))),
        Some(GuestKey::LegacyId) => (Some(format!("L{index:08}")), None, None),
    };
    let span = (end - start).max(1);
    let acquired = start + rng.random_range(0..span);
    let prospect = guest.is_none() && rng.random::<f64>() < 0.10;
    let primary = {
        let u: f64 = rng.random();
        if u < 0.40 {
            Via::Pos
        } else if u < 0.70 {
            Via::Web
        } else if u < 0.88 {
            Via::App
        } else {
            Via::Legacy
        }
    };
    let mut p = Person {
        id,
        guest,
        first,
        last,
        email,
        phone,
        country,
        acquired,
        purchases: Vec::new(),
        primary,
        engagement: model.engagement.sample(rng),
    };
    if !p.can_use(p.primary) {
        p.primary = [Via::Pos, Via::Web, Via::App, Via::Legacy]
            .into_iter()
            .find(|v| p.can_use(*v))
            .unwrap_or(Via::Pos);
    }
    if !prospect {
        p.purchases = purchases(rng, model, acquired, end);
    }
    p
}

/// ASCII form of a family name for email addresses.
fn ascii_name(last: &str) -> String {
    last.chars()
        .filter_map(|ch| match ch {
            'ü' => Some('u'),
            c if c.is_ascii_alphabetic() => Some(c),
            _ => None,
        })
        .collect()
}

/// BG/NBD: buy at acquisition, then after each purchase drop out with
/// probability p, else wait an exponential gap with rate lambda.
fn purchases(rng: &mut ChaCha8Rng, model: &Model, acquired: i64, end: i64) -> Vec<Purchase> {
    let lambda = model.lambda.sample(rng).max(1e-5); // purchases per day
    let p = model.dropout.sample(rng);
    let nu = model.spend_nu.sample(rng).max(0.01);
    let spend = Gamma::new(6.25, 1.0 / nu).unwrap_or_else(|_| fallback_gamma());
    let mut out = Vec::new();
    let mut t = acquired;
    loop {
        let usd = spend.sample(rng).clamp(0.99, 5_000.0);
        out.push(Purchase {
            at: t,
            usd_cents: (usd * 100.0).round() as i64,
        });
        if out.len() >= 400 || rng.random::<f64>() < p {
            break;
        }
        let u: f64 = rng.random::<f64>().max(1e-12);
        let gap_days = -u.ln() / lambda;
        // At least a minute apart, so no two purchases share a second.
        t += ((gap_days * DAY as f64) as i64).max(60);
        if t > end {
            break;
        }
    }
    out
}

/// Number of engagement events over `years`.
pub(crate) fn event_count(rng: &mut ChaCha8Rng, rate_per_year: f64, years: f64) -> u64 {
    let mean = (rate_per_year * years).clamp(0.0, 300.0);
    if mean <= 0.0 {
        return 0;
    }
    Poisson::new(mean).map_or(0, |d| d.sample(rng) as u64)
}
