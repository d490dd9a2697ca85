//! The variables one message's templates see (portal-api.md, "Template
//! variables"): the customer's fields and latest scores as in GraphQL
//! (snake_case; enum values as GraphQL spells them, e.g. `AT_RISK`), the
//! offer code, the personal survey and unsubscribe links, the campaign's name.

use cvm_shared::db::models::customers::Customer;
use cvm_shared::db::models::scores::Score;
use minijinja::{Value, context};

/// A stored enum text as GraphQL spells it (`at_risk` → `AT_RISK`).
fn graphql_enum(text: Option<&str>) -> Option<String> {
    text.map(str::to_ascii_uppercase)
}

/// The context of one message.
pub struct MessageContext<'a> {
    /// The recipient.
    pub customer: &'a Customer,
    /// Their latest scores (never scored: every score field is none).
    pub score: Option<&'a Score>,
    /// The campaign's name.
    pub campaign_name: &'a str,
    /// The campaign's offer code.
    pub offer_code: Option<&'a str>,
    /// The personal survey link, when the campaign carries a survey.
    pub survey_url: Option<String>,
    /// The personal unsubscribe link.
    pub unsubscribe_url: String,
}

impl MessageContext<'_> {
    /// The template context.
    pub fn value(&self) -> Value {
        let c = self.customer;
        let channels: Vec<String> = c
            .channels
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let customer = context! {
            id => c.customer_id.clone(), is_guest => c.is_guest, email => c.email.clone(),
            first_name => c.first_name.clone(), last_name => c.last_name.clone(), country => c.country.clone(),
            email_opt_in => c.email_opt_in, active => c.active, channels => channels,
        };
        let s = self.score;
        let score = context! {
            as_of => s.map(|s| s.as_of.to_string()),
            orders => s.map(|s| s.orders),
            frequency => s.map(|s| s.frequency),
            total_revenue => s.map(|s| s.total_revenue.clone()),
            rfm_segment => s.map(|s| s.rfm_segment.clone()),
            r_score => s.and_then(|s| s.r_score),
            f_score => s.and_then(|s| s.f_score),
            m_score => s.and_then(|s| s.m_score),
            p_alive => s.and_then(|s| s.p_alive),
            expected_purchases_90d => s.and_then(|s| s.expected_purchases_90d),
            clv_12m => s.and_then(|s| s.clv_12m),
            churn_risk => s.and_then(|s| s.churn_risk),
            lifecycle_stage => graphql_enum(s.and_then(|s| s.lifecycle_stage.as_deref())),
            value_tier => graphql_enum(s.and_then(|s| s.value_tier.as_deref())),
            loyalty_index => s.and_then(|s| s.loyalty_index),
            nps_last => s.and_then(|s| s.nps_last),
            nps_class => graphql_enum(s.and_then(|s| s.nps_class.as_deref())),
        };
        context! {
            customer => customer,
            score => score,
            offer_code => self.offer_code.map(String::from),
            survey_url => self.survey_url.clone(),
            unsubscribe_url => self.unsubscribe_url.clone(),
            campaign => context! { name => self.campaign_name.to_string() },
        }
    }
}
