//! The campaign tables (campaigns, outbox, suppressions, unsubscribes) on
//! both backends: what the database itself guarantees.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use super::models::campaigns::{self, CampaignContent, CampaignStatus};
use super::models::invitations;
use super::models::outbox::{self, NewRecipient, RecipientStatus};
use super::models::suppressions::{self, Suppression, SuppressionReason};
use super::models::surveys::{self, NewSurvey, SurveyStatus};
use super::models::unsubscribes::{self, NewUnsubscribe, UnsubscribeSource};
use super::tests::{C1_LOADED, open_with_c1, ts};
use super::{Backend, DbConnection};

crate::both_backends!(
    a_draft_changes_until_it_is_frozen_and_transitions_happen_once,
    freezing_twice_adds_each_recipient_once,
    the_database_refuses_what_the_model_forbids,
    a_suppressed_address_keeps_its_first_reason,
    invitations_still_name_the_campaign_that_carried_them,
    a_claimed_row_is_one_senders_and_an_expired_lease_is_in_doubt,
);

fn content(name: &str) -> CampaignContent<'_> {
    CampaignContent {
        name,
        audience: r#"{"lifecycleStage":["AT_RISK"]}"#,
        subject: "We miss you, {{ customer.first_name }}",
        text_template: "Hello {{ customer.first_name }}",
        html_template: None,
        survey_id: None,
        offer_code: Some("BACK10"),
        control_share: 0.1,
        frequency_cap_days: None,
        send_at: None,
    }
}

fn draft(c: &mut DbConnection) -> campaigns::Campaign {
    campaigns::create(c, content("Win back"), "ada", ts(C1_LOADED)).unwrap()
}

fn a_draft_changes_until_it_is_frozen_and_transitions_happen_once(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let d = draft(&mut c);
    assert_eq!(d.status, CampaignStatus::Draft);
    assert_eq!(d.offer_code.as_deref(), Some("BACK10"));
    let mut changed = content("Win back, v2");
    changed.offer_code = None;
    let later = ts("2024-03-02 09:00:00");
    let updated = campaigns::update_draft(&mut c, d.id, changed.clone(), later)
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            updated.name.as_str(),
            updated.offer_code,
            updated.updated_at
        ),
        ("Win back, v2", None, later),
        "a None clears the stored value"
    );
    let sending = campaigns::transition(
        &mut c,
        d.id,
        CampaignStatus::Draft,
        CampaignStatus::Sending,
        later,
    )
    .unwrap();
    assert_eq!(sending.map(|s| s.status), Some(CampaignStatus::Sending));
    assert_eq!(
        campaigns::transition(
            &mut c,
            d.id,
            CampaignStatus::Draft,
            CampaignStatus::Sending,
            later
        )
        .unwrap(),
        None,
        "a second process making the same transition gets nothing"
    );
    assert_eq!(
        campaigns::update_draft(&mut c, d.id, changed, later).unwrap(),
        None,
        "a campaign that is sending is no longer a draft"
    );
    let sent = campaigns::transition(
        &mut c,
        d.id,
        CampaignStatus::Sending,
        CampaignStatus::Sent,
        later,
    )
    .unwrap()
    .unwrap();
    assert_eq!(sent.finished_at, Some(later));
    assert_eq!(campaigns::find(&mut c, d.id).unwrap(), Some(sent));
}

/// c1 queued in campaign `id`, frozen when c1 was loaded.
pub(super) fn queued_c1(id: i64) -> NewRecipient<'static> {
    NewRecipient {
        campaign_id: id,
        customer_id: "c1",
        address: Some("ann@example.com"),
        status: RecipientStatus::Queued,
        message_id: Some("<m1@shop.example>"),
        unsubscribe_hash: Some("h1"),
        base_orders: Some(2),
        base_revenue: Some(40.0),
        base_p_alive: Some(0.3),
        queued_at: ts(C1_LOADED),
    }
}

fn freezing_twice_adds_each_recipient_once(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let d = draft(&mut c);
    let rows = [queued_c1(d.id)];
    assert_eq!(outbox::freeze(&mut c, &rows).unwrap(), 1);
    assert_eq!(outbox::freeze(&mut c, &rows).unwrap(), 0);
    assert_eq!(
        outbox::counts(&mut c, d.id).unwrap(),
        [(RecipientStatus::Queued, 1)]
    );
}

fn the_database_refuses_what_the_model_forbids(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let mut too_many = content("Half and more");
    too_many.control_share = 0.6;
    assert!(
        campaigns::create(&mut c, too_many, "ada", ts(C1_LOADED)).is_err(),
        "a control share above 0.5"
    );
    let d = draft(&mut c);
    let no_address = [NewRecipient {
        address: None,
        message_id: None,
        unsubscribe_hash: None,
        ..queued_c1(d.id)
    }];
    assert!(
        outbox::freeze(&mut c, &no_address).is_err(),
        "only control rows go without an address"
    );
    let control = [NewRecipient {
        status: RecipientStatus::Control,
        ..no_address[0].clone()
    }];
    assert_eq!(outbox::freeze(&mut c, &control).unwrap(), 1);
}

fn a_suppressed_address_keeps_its_first_reason(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let d = draft(&mut c);
    let first = Suppression {
        address: suppressions::normalize_address(" Ann@Example.com "),
        reason: SuppressionReason::Unsubscribed,
        customer_id: Some("c1".into()),
        campaign_id: Some(d.id),
        at: ts(C1_LOADED),
    };
    assert!(suppressions::add(&mut c, &first).unwrap());
    let again = Suppression {
        reason: SuppressionReason::HardBounced,
        at: ts("2024-03-05 00:00:00"),
        ..first.clone()
    };
    assert!(!suppressions::add(&mut c, &again).unwrap());
    assert_eq!(
        suppressions::find(&mut c, "ANN@example.COM").unwrap(),
        Some(first)
    );
    unsubscribes::insert(
        &mut c,
        &NewUnsubscribe {
            customer_id: Some("c1"),
            campaign_id: Some(d.id),
            address: "ann@example.com",
            source: UnsubscribeSource::OneClick,
            at: ts(C1_LOADED),
        },
    )
    .unwrap();
    assert_eq!(unsubscribes::count_for_campaign(&mut c, d.id).unwrap(), 1);
}

fn invitations_still_name_the_campaign_that_carried_them(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let d = draft(&mut c);
    let survey = surveys::insert(
        &mut c,
        &NewSurvey {
            name: "After the campaign",
            question: "Recommend us?",
            csat_question: None,
            comment_prompt: None,
            opens_at: ts(C1_LOADED),
            closes_at: None,
            status: SurveyStatus::Open,
            created_by: "ada",
            created_at: ts(C1_LOADED),
        },
    )
    .unwrap();
    let row = |campaign_id, hash| invitations::NewInvitation {
        survey_id: survey.id,
        customer_id: "c1",
        token_hash: hash,
        created_at: ts(C1_LOADED),
        expires_at: ts("2024-04-01 00:00:00"),
        campaign_id,
    };
    assert!(
        invitations::insert(&mut c, &row(Some(d.id + 1000), "h0")).is_err(),
        "the foreign key to campaigns holds after the reshape"
    );
    invitations::insert(&mut c, &row(Some(d.id), "h1")).unwrap();
}

fn a_claimed_row_is_one_senders_and_an_expired_lease_is_in_doubt(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let d = draft(&mut c);
    let now = ts(C1_LOADED);
    let rows = [queued_c1(d.id)];
    outbox::freeze(&mut c, &rows).unwrap();
    let lease = now + chrono::Duration::seconds(30);
    assert!(
        outbox::claim(&mut c, "a", now, lease, 10)
            .unwrap()
            .is_empty(),
        "a draft's rows are not due"
    );
    campaigns::transition(
        &mut c,
        d.id,
        CampaignStatus::Draft,
        CampaignStatus::Sending,
        now,
    )
    .unwrap()
    .unwrap();
    let claimed = outbox::claim(&mut c, "a", now, lease, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].status, RecipientStatus::Sending);
    assert!(
        outbox::claim(&mut c, "b", now, lease, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        !outbox::record(&mut c, claimed[0].id, "b", &outbox::Fate::Sent(now)).unwrap(),
        "only the lease holder records a fate"
    );
    assert_eq!(
        outbox::expire_leases(&mut c, now).unwrap(),
        0,
        "the lease runs"
    );
    let later = lease + chrono::Duration::seconds(1);
    assert!(outbox::any_expired(&mut c, later).unwrap());
    assert_eq!(outbox::expire_leases(&mut c, later).unwrap(), 1);
    assert_eq!(
        outbox::counts(&mut c, d.id).unwrap(),
        [(RecipientStatus::InDoubt, 1)]
    );
    assert!(
        outbox::claim(&mut c, "b", later, later, 10)
            .unwrap()
            .is_empty(),
        "never resent"
    );
    // The stalled holder still records what it learnt.
    assert!(outbox::record(&mut c, claimed[0].id, "a", &outbox::Fate::Sent(later)).unwrap());
    assert_eq!(
        outbox::counts(&mut c, d.id).unwrap(),
        [(RecipientStatus::Sent, 1)]
    );
}
