//! Who a campaign reaches: the audience filter's customers, each given
//! exactly one fate, the first that applies, in the contract's order
//! (portal-api.md, "Audience and exclusions"): `inactive`, `no_email`,
//! `no_consent`, `suppressed`, `frequency_cap`, `duplicate_address`,
//! `control`; the rest are recipients. Pure: the caller loads the
//! candidates, the suppressed and recently mailed addresses in one snapshot
//! (the freeze's transaction) and writes the outcome to the outbox.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Why a customer of the audience gets no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exclusion {
    /// No longer in the warehouse.
    Inactive,
    /// No usable address.
    NoEmail,
    /// No marketing consent.
    NoConsent,
    /// The address is on the suppression list.
    Suppressed,
    /// The address got a campaign message within the frequency cap.
    FrequencyCap,
    /// Another customer of this audience has the same address (one message per address).
    DuplicateAddress,
    /// Drawn into the control group: held out on purpose.
    Control,
}

impl Exclusion {
    /// Every reason, in the order they are tried.
    pub const ALL: [Exclusion; 7] = [
        Exclusion::Inactive,
        Exclusion::NoEmail,
        Exclusion::NoConsent,
        Exclusion::Suppressed,
        Exclusion::FrequencyCap,
        Exclusion::DuplicateAddress,
        Exclusion::Control,
    ];

    /// The name in `Exclusion.reason` (portal-api.md).
    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::Inactive => "inactive",
            Exclusion::NoEmail => "no_email",
            Exclusion::NoConsent => "no_consent",
            Exclusion::Suppressed => "suppressed",
            Exclusion::FrequencyCap => "frequency_cap",
            Exclusion::DuplicateAddress => "duplicate_address",
            Exclusion::Control => "control",
        }
    }
}

/// A customer the audience filter matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Customer id.
    pub customer_id: String,
    /// Still in the warehouse.
    pub active: bool,
    /// Email as stored (normalised by the ETL; compared trimmed and lower-cased here).
    pub email: Option<String>,
    /// Marketing consent.
    pub email_opt_in: bool,
    /// Latest 12-month CLV (decides who keeps a shared address).
    pub clv_12m: Option<f64>,
}

/// The audience's outcome.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Audience {
    /// Customers to send to, with their normalised address, by customer id.
    pub recipients: Vec<(String, String)>,
    /// The control group (customer id and address), by customer id.
    pub control: Vec<(String, String)>,
    /// Customers excluded, by reason (control included), every reason listed.
    pub exclusions: BTreeMap<Exclusion, usize>,
}

impl Audience {
    /// Customers the filter matched (every fate).
    pub fn size(&self) -> usize {
        self.recipients.len()
            + self
                .exclusions
                .iter()
                .filter(|(r, _)| **r != Exclusion::Control)
                .map(|(_, n)| n)
                .sum::<usize>()
            + self.control.len()
    }
}

/// A usable address: trimmed, lower-cased, one `@` with text on both sides.
pub fn usable_address(email: Option<&str>) -> Option<String> {
    let a = email?.trim().to_lowercase();
    let (local, domain) = a.split_once('@')?;
    (!local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !a.contains(char::is_whitespace))
    .then_some(a)
}

/// Gives every candidate its fate. `suppressed` and `capped` hold
/// normalised addresses; `control_share` is 0 to 0.5; `seed` draws the
/// control group (the same inputs and seed give the same group).
pub fn classify(
    candidates: &[Candidate],
    suppressed: &HashSet<String>,
    capped: &HashSet<String>,
    control_share: f64,
    seed: u64,
) -> Audience {
    let mut exclusions: BTreeMap<Exclusion, usize> =
        Exclusion::ALL.iter().map(|r| (*r, 0)).collect();
    let mut exclude = |r: Exclusion| *exclusions.entry(r).or_default() += 1;
    // Survivors of the per-customer rules, grouped by address.
    let mut by_address: HashMap<String, Vec<&Candidate>> = HashMap::new();
    for c in candidates {
        if !c.active {
            exclude(Exclusion::Inactive);
            continue;
        }
        let Some(address) = usable_address(c.email.as_deref()) else {
            exclude(Exclusion::NoEmail);
            continue;
        };
        if !c.email_opt_in {
            exclude(Exclusion::NoConsent);
        } else if suppressed.contains(&address) {
            exclude(Exclusion::Suppressed);
        } else if capped.contains(&address) {
            exclude(Exclusion::FrequencyCap);
        } else {
            by_address.entry(address).or_default().push(c);
        }
    }
    // One per address: the highest CLV (no CLV lowest), ties the smallest id.
    let mut left: Vec<(String, String)> = Vec::with_capacity(by_address.len());
    for (address, mut group) in by_address {
        group.sort_by(|a, b| {
            let clv = |c: &Candidate| {
                c.clv_12m
                    .filter(|v| v.is_finite())
                    .unwrap_or(f64::NEG_INFINITY)
            };
            clv(b)
                .total_cmp(&clv(a))
                .then_with(|| a.customer_id.cmp(&b.customer_id))
        });
        for _ in 1..group.len() {
            exclude(Exclusion::DuplicateAddress);
        }
        left.push((group[0].customer_id.clone(), address));
    }
    left.sort();
    // Control: exactly round(share × n), by a seeded shuffle of the id-sorted list.
    let n = left.len();
    let share = if control_share.is_finite() {
        control_share.clamp(0.0, 0.5)
    } else {
        0.0
    };
    let held = ((share * n as f64).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let in_control: HashSet<usize> = order.into_iter().take(held).collect();
    let (mut control, mut recipients) = (Vec::new(), Vec::new());
    for (i, pair) in left.into_iter().enumerate() {
        if in_control.contains(&i) {
            control.push(pair);
        } else {
            recipients.push(pair);
        }
    }
    exclusions.insert(Exclusion::Control, control.len());
    Audience {
        recipients,
        control,
        exclusions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, email: Option<&str>, opt_in: bool, clv: Option<f64>) -> Candidate {
        Candidate {
            customer_id: id.into(),
            active: true,
            email: email.map(String::from),
            email_opt_in: opt_in,
            clv_12m: clv,
        }
    }

    #[test]
    fn each_customer_gets_the_first_reason_that_applies() {
        let mut gone = c("a", Some("a@x.example"), false, None);
        gone.active = false;
        let all = vec![
            gone,                                               // inactive (and no consent)
            c("b", None, true, None),                           // no email
            c("c", Some("not-an-address"), true, None),         // no email
            c("d", Some("d@x.example"), false, None),           // no consent
            c("e", Some(" E@X.example "), true, None),          // suppressed
            c("f", Some("f@x.example"), true, None),            // frequency cap
            c("g", Some("shared@x.example"), true, Some(10.0)), // duplicate (lower CLV)
            c("h", Some("SHARED@x.example"), true, Some(99.0)), // kept
            c("i", Some("i@x.example"), true, None),            // kept
        ];
        let suppressed = HashSet::from(["e@x.example".to_string()]);
        let capped = HashSet::from(["f@x.example".to_string()]);
        let a = classify(&all, &suppressed, &capped, 0.0, 1);
        let count = |r| a.exclusions[&r];
        assert_eq!(
            Exclusion::ALL.map(count),
            [1, 2, 1, 1, 1, 1, 0],
            "inactive, no_email, no_consent, suppressed, frequency_cap, duplicate_address, control"
        );
        assert_eq!(
            a.recipients,
            [
                ("h".to_string(), "shared@x.example".to_string()),
                ("i".to_string(), "i@x.example".to_string())
            ]
        );
        assert_eq!(a.size(), all.len(), "every customer has exactly one fate");
    }

    #[test]
    fn a_shared_address_goes_to_the_smallest_id_when_clv_ties() {
        let all = vec![
            c("z", Some("s@x.example"), true, Some(5.0)),
            c("m", Some("s@x.example"), true, Some(5.0)),
            c("q", Some("s@x.example"), true, None),
        ];
        let a = classify(&all, &HashSet::new(), &HashSet::new(), 0.0, 1);
        assert_eq!(a.recipients, [("m".to_string(), "s@x.example".to_string())]);
        assert_eq!(a.exclusions[&Exclusion::DuplicateAddress], 2);
    }

    #[test]
    fn the_control_group_is_exactly_the_rounded_share_and_follows_the_seed() {
        let all: Vec<Candidate> = (0..101)
            .map(|i| {
                c(
                    &format!("c{i:03}"),
                    Some(&format!("{i}@x.example")),
                    true,
                    None,
                )
            })
            .collect();
        let a = classify(&all, &HashSet::new(), &HashSet::new(), 0.25, 7);
        assert_eq!(a.control.len(), 25, "round(0.25 × 101)");
        assert_eq!(a.recipients.len(), 76);
        assert_eq!(a.exclusions[&Exclusion::Control], 25);
        let again = classify(&all, &HashSet::new(), &HashSet::new(), 0.25, 7);
        assert_eq!(again.control, a.control, "same seed, same group");
        let other = classify(&all, &HashSet::new(), &HashSet::new(), 0.25, 8);
        assert_ne!(other.control, a.control, "another seed, another group");
    }
}
