//! Freezing a campaign's audience: in one transaction, the audience filter's
//! customers get their fates ([`super::audience::classify`], with a new
//! random seed for the control group), every recipient and control row is
//! written to the outbox with its `Message-ID`, unsubscribe-token hash and
//! score baseline, survey invitations carrying the campaign are created,
//! and the campaign moves to `SENDING` recording the seed and the
//! exclusion counts. The status change is a compare-and-set inside the
//! same transaction, so two processes (or two clicks) freeze once.

use std::collections::{HashMap, HashSet};

use chrono::{Duration, NaiveDateTime};
use cvm_shared::db::models::campaigns::{self, Campaign, CampaignStatus};
use cvm_shared::db::models::invitations::{self, NewInvitation};
use cvm_shared::db::models::outbox::{self, NewRecipient, RecipientStatus};
use cvm_shared::db::{DbConnection, DbError, lock_for_write};
use cvm_shared::privacy::key::HASH_PREFIX;
use cvm_shared::privacy::{KeyKind, PrivacyKey};
use diesel::prelude::*;

use super::audience::{Audience, Candidate, Exclusion, classify, usable_address};
use super::links;
use super::message::new_message_id;
use crate::graphql::filter::{CustomerFilter, CustomerSource};
use crate::graphql::invitations::{DEFAULT_EXPIRES_IN_DAYS, link as survey_link};
use crate::tokens::LinkSigner;

/// A recipient's scores when the audience was frozen (campaignUplift's baseline).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Baseline {
    /// `scores.orders`.
    pub orders: Option<i64>,
    /// `scores.total_revenue`.
    pub revenue: Option<f64>,
    /// `scores.p_alive`.
    pub p_alive: Option<f64>,
}

/// The campaign's stored audience filter.
pub fn filter_of(campaign: &Campaign) -> Result<CustomerFilter, DbError> {
    serde_json::from_str(&campaign.audience).map_err(|e| DbError::Checkout {
        message: format!("campaign {}: stored audience unreadable: {e}", campaign.id),
    })
}

/// The filter's customers as the exclusion rules need them, with their baselines.
fn candidates(
    c: &mut DbConnection,
    filter: &CustomerFilter,
) -> Result<(Vec<Candidate>, HashMap<String, Baseline>), DbError> {
    use cvm_shared::db::schema::{customers, scores};
    type Row = (
        String,
        bool,
        Option<String>,
        bool,
        Option<f64>,
        Option<i64>,
        Option<String>,
        Option<f64>,
    );
    let rows: Vec<Row> = customers::table
        .left_join(scores::table)
        .filter(filter.condition::<CustomerSource>())
        .select((
            customers::customer_id,
            customers::active,
            customers::email,
            customers::email_opt_in,
            scores::clv_12m.nullable(),
            scores::orders.nullable(),
            scores::total_revenue.nullable(),
            scores::p_alive.nullable(),
        ))
        .order(customers::customer_id.asc())
        .load(c)
        .map_err(DbError::query("customers", "select audience"))?;
    let mut baselines = HashMap::with_capacity(rows.len());
    let mut all = Vec::with_capacity(rows.len());
    for (customer_id, active, email, email_opt_in, clv_12m, orders, revenue, p_alive) in rows {
        baselines.insert(
            customer_id.clone(),
            Baseline {
                orders,
                revenue: revenue.and_then(|r| r.parse::<f64>().ok()),
                p_alive,
            },
        );
        all.push(Candidate {
            customer_id,
            active,
            email,
            email_opt_in,
            clv_12m,
        });
    }
    Ok((all, baselines))
}

/// Addresses on the suppression list, and those mailed by a campaign within `cap_days` before `now`.
pub fn blocked_addresses(
    c: &mut DbConnection,
    cap_days: u32,
    now: NaiveDateTime,
) -> Result<(HashSet<String>, HashSet<String>), DbError> {
    use cvm_shared::db::schema::{outbox as o, suppressions as s};
    let suppressed: HashSet<String> = s::table
        .select(s::address)
        .load::<String>(c)
        .map_err(DbError::query("suppressions", "select"))?
        .into_iter()
        .collect();
    let mut capped = HashSet::new();
    if cap_days > 0 {
        let since = now - Duration::days(i64::from(cap_days));
        capped = o::table
            .filter(o::status.eq(RecipientStatus::Sent))
            .filter(o::sent_at.ge(since))
            .filter(o::address.is_not_null())
            .select(o::address.assume_not_null())
            .distinct()
            .load::<String>(c)
            .map_err(DbError::query("outbox", "select recently mailed"))?
            .into_iter()
            .collect();
    }
    Ok((suppressed, capped))
}

/// The campaign's frequency cap in days: its own, else `default`.
pub fn cap_days(campaign: &Campaign, default: u32) -> u32 {
    campaign
        .frequency_cap_days
        .map_or(default, |d| u32::try_from(d).unwrap_or(0))
}

/// The addresses among `addresses` suppressed only as a keyed hash (an
/// erased person's suppression, kept hashed: found with the privacy key).
pub fn suppressed_by_hash<'a>(
    suppressed: &HashSet<String>,
    addresses: impl Iterator<Item = &'a str>,
    key: Option<&PrivacyKey>,
) -> Vec<String> {
    let Some(key) = key else {
        return Vec::new();
    };
    if !suppressed.iter().any(|a| a.starts_with(HASH_PREFIX)) {
        return Vec::new();
    }
    addresses
        .filter(|a| suppressed.contains(&key.hashed_value(KeyKind::Email, a)))
        .map(str::to_owned)
        .collect()
}

/// Who the campaign reaches at `now` with control seed `seed`: the
/// matched count, the outcome and the baselines. `key` (the privacy key)
/// recognises addresses suppressed as keyed hashes.
pub fn audience(
    c: &mut DbConnection,
    campaign: &Campaign,
    cap_default: u32,
    key: Option<&PrivacyKey>,
    now: NaiveDateTime,
    seed: u64,
) -> Result<(usize, Audience, HashMap<String, Baseline>), DbError> {
    let filter = filter_of(campaign)?;
    let (all, baselines) = candidates(c, &filter)?;
    let (mut suppressed, capped) = blocked_addresses(c, cap_days(campaign, cap_default), now)?;
    let addresses: Vec<String> = all
        .iter()
        .filter_map(|c| usable_address(c.email.as_deref()))
        .collect();
    let hashed = suppressed_by_hash(&suppressed, addresses.iter().map(String::as_str), key);
    suppressed.extend(hashed);
    let outcome = classify(&all, &suppressed, &capped, campaign.control_share, seed);
    Ok((all.len(), outcome, baselines))
}

/// What freezing needs besides the database.
pub struct FreezeContext<'a> {
    /// Signs the unsubscribe and survey links.
    pub links: &'a LinkSigner,
    /// The domain of `Message-ID`s (the sender's).
    pub message_domain: &'a str,
    /// Campaigns' default frequency cap in days.
    pub cap_default: u32,
    /// The privacy key, if set: recognises addresses suppressed as keyed hashes.
    pub privacy_key: Option<&'a PrivacyKey>,
}

/// Freezes campaign `id`'s audience and starts sending, if it is in `from`
/// (None otherwise, nothing written). An empty audience ends `SENT` at once.
pub fn freeze(
    c: &mut DbConnection,
    cx: &FreezeContext<'_>,
    id: i64,
    from: CampaignStatus,
    now: NaiveDateTime,
) -> Result<Option<Campaign>, DbError> {
    c.transaction::<_, DbError, _>(|c| {
        lock_for_write(c)?;
        let Some(campaign) = campaigns::find(c, id)? else {
            return Ok(None);
        };
        if campaign.status != from {
            return Ok(None);
        }
        let seed = rand::random::<i64>() & i64::MAX;
        let seed_bits = u64::try_from(seed).unwrap_or(0);
        let (_, outcome, baselines) =
            audience(c, &campaign, cx.cap_default, cx.privacy_key, now, seed_bits)?;
        write_rows(c, cx, &campaign, &outcome, &baselines, now)?;
        if let Some(survey) = campaign.survey_id {
            invite(c, cx.links, survey, campaign.id, &outcome.recipients, now)?;
        }
        let exclusions: serde_json::Map<String, serde_json::Value> = Exclusion::ALL
            .iter()
            .map(|r| {
                let n = outcome.exclusions.get(r).copied().unwrap_or(0);
                (r.as_str().to_string(), serde_json::Value::from(n))
            })
            .collect();
        let exclusions = serde_json::Value::Object(exclusions).to_string();
        let started = campaigns::start_sending(c, id, from, seed, &exclusions, now)?;
        if outcome.recipients.is_empty() {
            return campaigns::transition(
                c,
                id,
                CampaignStatus::Sending,
                CampaignStatus::Sent,
                now,
            );
        }
        Ok(started)
    })
}

/// The outbox rows of `outcome`: recipients queued, the control group held out.
fn write_rows(
    c: &mut DbConnection,
    cx: &FreezeContext<'_>,
    campaign: &Campaign,
    outcome: &Audience,
    baselines: &HashMap<String, Baseline>,
    now: NaiveDateTime,
) -> Result<usize, DbError> {
    let ids: Vec<(String, String)> = outcome
        .recipients
        .iter()
        .map(|(customer, _)| {
            (
                new_message_id(campaign.id, cx.message_domain),
                links::unsubscribe(cx.links, campaign.id, customer).hash,
            )
        })
        .collect();
    let row = |customer: &str, address: &str, status, ids: Option<&(String, String)>| {
        let b = baselines.get(customer).copied().unwrap_or_default();
        (
            customer.to_string(),
            address.to_string(),
            status,
            ids.cloned(),
            b,
        )
    };
    let mut owned = Vec::with_capacity(outcome.recipients.len() + outcome.control.len());
    for ((customer, address), ids) in outcome.recipients.iter().zip(&ids) {
        owned.push(row(customer, address, RecipientStatus::Queued, Some(ids)));
    }
    for (customer, address) in &outcome.control {
        owned.push(row(customer, address, RecipientStatus::Control, None));
    }
    let rows: Vec<NewRecipient<'_>> = owned
        .iter()
        .map(|(customer, address, status, ids, b)| NewRecipient {
            campaign_id: campaign.id,
            customer_id: customer,
            address: Some(address),
            status: *status,
            message_id: ids.as_ref().map(|(m, _)| m.as_str()),
            unsubscribe_hash: ids.as_ref().map(|(_, h)| h.as_str()),
            base_orders: b.orders,
            base_revenue: b.revenue,
            base_p_alive: b.p_alive,
            queued_at: now,
        })
        .collect();
    outbox::freeze(c, &rows)
}

/// Invitations to `survey_id` for the recipients, carrying the campaign
/// (answers through them are attributed to it); an unanswered invitation
/// without a campaign is claimed by this one.
fn invite(
    c: &mut DbConnection,
    links: &LinkSigner,
    survey_id: i64,
    campaign_id: i64,
    recipients: &[(String, String)],
    now: NaiveDateTime,
) -> Result<(), DbError> {
    use cvm_shared::db::schema::{answers, invitations as inv};
    let hashes: Vec<String> = recipients
        .iter()
        .map(|(customer, _)| survey_link(links, survey_id, customer).hash)
        .collect();
    let expires_at = now + Duration::days(i64::from(DEFAULT_EXPIRES_IN_DAYS));
    let rows: Vec<NewInvitation<'_>> = recipients
        .iter()
        .zip(&hashes)
        .map(|((customer, _), hash)| NewInvitation {
            survey_id,
            customer_id: customer,
            token_hash: hash,
            created_at: now,
            expires_at,
            campaign_id: Some(campaign_id),
        })
        .collect();
    invitations::insert_new(c, &rows)?;
    let ids: Vec<&str> = recipients.iter().map(|(c, _)| c.as_str()).collect();
    for part in ids.chunks(5000) {
        let answered = answers::table.select(answers::invitation_id);
        diesel::update(
            inv::table
                .filter(inv::survey_id.eq(survey_id))
                .filter(inv::campaign_id.is_null())
                .filter(inv::customer_id.eq_any(part))
                .filter(inv::id.ne_all(answered)),
        )
        .set(inv::campaign_id.eq(campaign_id))
        .execute(c)
        .map_err(DbError::query("invitations", "attribute to the campaign"))?;
    }
    Ok(())
}
