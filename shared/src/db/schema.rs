//! The diesel table definitions, shared by both backends.
//!
//! Only types both SQLite and PostgreSQL support are used (`Text`, `BigInt`,
//! `Integer`, `Double`, `Bool`, `Date`, `Timestamp`); the backend-specific SQL
//! lives in `migrations/sqlite` and `migrations/postgres`, which must keep the
//! same tables and columns as this file. Timestamps are UTC.

diesel::table! {
    /// One row per customer ever loaded from the warehouse (never deleted).
    customers (customer_id) {
        /// CRM id or guest id.
        customer_id -> Text,
        /// True for customers not in CRM.
        is_guest -> Bool,
        /// Normalised email.
        email -> Nullable<Text>,
        /// Phone in E.164.
        phone -> Nullable<Text>,
        /// Given name.
        first_name -> Nullable<Text>,
        /// Family name.
        last_name -> Nullable<Text>,
        /// ISO 3166-1 alpha-2.
        country -> Nullable<Text>,
        /// CRM signup date.
        signup_date -> Nullable<Date>,
        /// CRM birth date.
        birth_date -> Nullable<Date>,
        /// Marketing email consent.
        email_opt_in -> Bool,
        /// When the consent value was set (CRM `updated_at`, or an unsubscribe).
        consent_updated_at -> Nullable<Timestamp>,
        /// Earliest of the first transaction and the signup date.
        first_seen -> Nullable<Timestamp>,
        /// Channels the customer bought through, comma-separated, sorted.
        channels -> Text,
        /// False once the customer is no longer in the warehouse.
        active -> Bool,
        /// When the last load wrote this row.
        loaded_at -> Timestamp,
        /// True once erased on request: the id is a pseudonym and the personal fields are empty.
        erased -> Bool,
    }
}

diesel::table! {
    /// The latest scores per customer (columns as in `ScoreRow`).
    scores (customer_id) {
        /// Customer id (references `customers`).
        customer_id -> Text,
        /// The day the scores are computed for.
        as_of -> Date,
        /// Purchase occasions.
        orders -> BigInt,
        /// Repeat occasions.
        frequency -> BigInt,
        /// First to last occasion, in periods.
        recency -> Double,
        /// First occasion to `as_of`, in periods.
        t -> Double,
        /// Mean value of repeat occasions.
        monetary_avg -> Double,
        /// Net revenue, exact decimal text in the base currency.
        total_revenue -> Text,
        /// First occasion.
        first_purchase -> Nullable<Date>,
        /// Last occasion.
        last_purchase -> Nullable<Date>,
        /// Days from the last occasion to `as_of`.
        days_since_last_purchase -> Nullable<Integer>,
        /// RFM recency score 1..5.
        r_score -> Nullable<Integer>,
        /// RFM frequency score 1..5.
        f_score -> Nullable<Integer>,
        /// RFM monetary score 1..5.
        m_score -> Nullable<Integer>,
        /// Named RFM segment.
        rfm_segment -> Text,
        /// P(alive) under BG/NBD.
        p_alive -> Nullable<Double>,
        /// Expected purchases in the next 90 days.
        expected_purchases_90d -> Nullable<Double>,
        /// Expected purchases in the next 365 days.
        expected_purchases_365d -> Nullable<Double>,
        /// Gamma-Gamma expected average order value.
        expected_avg_value -> Nullable<Double>,
        /// Discounted 12-month CLV.
        clv_12m -> Nullable<Double>,
        /// `1 - p_alive`.
        churn_risk -> Nullable<Double>,
        /// Latest NPS answer 0..10.
        nps_last -> Nullable<Integer>,
        /// `promoter`, `passive` or `detractor`.
        nps_class -> Nullable<Text>,
        /// Engagement events in the last 90 days.
        engagement_90d -> BigInt,
        /// Lifecycle stage (null when it needs P(alive) and the model could not be fitted).
        lifecycle_stage -> Nullable<Text>,
        /// Value tier (null for a purchaser without a CLV).
        value_tier -> Nullable<Text>,
        /// Loyalty index 0..100.
        loyalty_index -> Nullable<Double>,
        /// When the last load wrote this row.
        loaded_at -> Timestamp,
    }
}

diesel::table! {
    /// Surveys run by marketing staff (an NPS question, optionally CSAT and a comment).
    surveys (id) {
        /// Surrogate key.
        id -> BigInt,
        /// Display name (shown to the customer).
        name -> Text,
        /// The NPS question (0-10).
        question -> Text,
        /// The CSAT question (1-5); null when the survey asks none.
        csat_question -> Nullable<Text>,
        /// The prompt of the optional comment.
        comment_prompt -> Nullable<Text>,
        /// When answers start being accepted.
        opens_at -> Timestamp,
        /// When answers stop being accepted; null: open-ended.
        closes_at -> Nullable<Timestamp>,
        /// `open` or `closed` ([`crate::db::models::surveys::SurveyStatus`]).
        status -> Text,
        /// Staff name of the creator.
        created_by -> Text,
        /// Creation time.
        created_at -> Timestamp,
        /// When it was closed by staff.
        closed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Survey invitations: one per survey and customer (unique), each with its
    /// signed link token, stored only as a hash.
    invitations (id) {
        /// Surrogate key.
        id -> BigInt,
        /// The survey.
        survey_id -> BigInt,
        /// The invited customer.
        customer_id -> Text,
        /// SHA-256 of the link token (never the token), unique.
        token_hash -> Text,
        /// Creation time.
        created_at -> Timestamp,
        /// After this, the link is refused.
        expires_at -> Timestamp,
        /// The campaign whose email carried the link, if any.
        campaign_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Survey answers: at most one per invitation (unique), replaced in place
    /// by a later submission.
    answers (id) {
        /// Surrogate key.
        id -> BigInt,
        /// The invitation answered (unique).
        invitation_id -> BigInt,
        /// NPS answer 0..10 (checked by the database).
        score -> Integer,
        /// CSAT answer 1..5 (checked by the database).
        csat -> Nullable<Integer>,
        /// Free-text comment, verbatim.
        comment -> Nullable<Text>,
        /// First submission.
        answered_at -> Timestamp,
        /// Latest submission (equals `answered_at` until replaced).
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Job runs (`load`, `nightly`, ...), for operators and the portal.
    job_runs (run_id) {
        /// Run id.
        run_id -> Text,
        /// The command (`load`, `nightly`, ...).
        command -> Text,
        /// `running`, `succeeded` or `failed`.
        status -> Text,
        /// Start time.
        started_at -> Timestamp,
        /// End time; null while running (or after a crash).
        finished_at -> Nullable<Timestamp>,
        /// The as-of date the run worked on.
        as_of -> Nullable<Date>,
        /// JSON summary (counts).
        summary -> Nullable<Text>,
        /// One-line error of a failed run.
        error -> Nullable<Text>,
    }
}

diesel::table! {
    /// Unsubscribe events: who, through which campaign's link, how, when.
    unsubscribes (id) {
        /// Surrogate key.
        id -> BigInt,
        /// The customer, when known.
        customer_id -> Nullable<Text>,
        /// The campaign whose link or header was used.
        campaign_id -> Nullable<BigInt>,
        /// The unsubscribed address, normalised (trimmed, lower-case).
        address -> Text,
        /// `page`, `one_click`, `mailto` or `staff` ([`crate::db::models::unsubscribes::UnsubscribeSource`]).
        source -> Text,
        /// When.
        at -> Timestamp,
    }
}

diesel::table! {
    /// Retention email campaigns created by staff.
    campaigns (id) {
        /// Surrogate key.
        id -> BigInt,
        /// Display name.
        name -> Text,
        /// [`crate::db::models::campaigns::CampaignStatus`].
        status -> Text,
        /// The audience filter (the GraphQL `CustomerFilter`), JSON.
        audience -> Text,
        /// Subject template (minijinja).
        subject -> Text,
        /// Text part template (minijinja).
        text_template -> Text,
        /// HTML part template (minijinja), optional.
        html_template -> Nullable<Text>,
        /// The survey each message invites to.
        survey_id -> Nullable<BigInt>,
        /// Offer code shown in the message.
        offer_code -> Nullable<Text>,
        /// Share of the frozen audience held out as a control group, 0 to 0.5.
        control_share -> Double,
        /// Frequency cap in days (null: the setting; 0: none).
        frequency_cap_days -> Nullable<Integer>,
        /// When sending starts (null: when sendCampaign is called).
        send_at -> Nullable<Timestamp>,
        /// Seed of the control group's draw, recorded when the audience is frozen.
        seed -> Nullable<BigInt>,
        /// Exclusion counts by reason when the audience was frozen, JSON.
        exclusions -> Nullable<Text>,
        /// Staff name of the creator.
        created_by -> Text,
        /// Creation time.
        created_at -> Timestamp,
        /// Last change.
        updated_at -> Timestamp,
        /// When the audience was frozen and sending started.
        started_at -> Nullable<Timestamp>,
        /// When every recipient had a final fate (or the campaign was cancelled).
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The durable outbox: one row per campaign and recipient, holding the
    /// recipient's fate ([`crate::db::models::outbox::RecipientStatus`]).
    outbox (id) {
        /// Surrogate key.
        id -> BigInt,
        /// The campaign.
        campaign_id -> BigInt,
        /// The recipient customer.
        customer_id -> Text,
        /// Normalised address the message goes to (null only for control rows).
        address -> Nullable<Text>,
        /// The recipient's fate so far.
        status -> Text,
        /// `Message-ID`, chosen before the SMTP transaction, unique.
        message_id -> Nullable<Text>,
        /// SMTP transactions started.
        attempts -> Integer,
        /// The server's reply (or the error) of the last failed attempt.
        last_error -> Nullable<Text>,
        /// Why a frozen recipient was suppressed before sending.
        suppressed_reason -> Nullable<Text>,
        /// Not before this (retry backoff).
        next_attempt_at -> Nullable<Timestamp>,
        /// The sender process holding the row's lease.
        lease_owner -> Nullable<Text>,
        /// The lease's end.
        lease_until -> Nullable<Timestamp>,
        /// When the audience was frozen.
        queued_at -> Timestamp,
        /// When the server accepted the message.
        sent_at -> Nullable<Timestamp>,
        /// SHA-256 of the recipient's unsubscribe token (how `/u/{token}` finds the row), unique.
        unsubscribe_hash -> Nullable<Text>,
        /// The recipient's `scores.orders` when frozen (campaignUplift's baseline).
        base_orders -> Nullable<BigInt>,
        /// The recipient's `scores.total_revenue` when frozen.
        base_revenue -> Nullable<Double>,
        /// The recipient's `scores.p_alive` when frozen.
        base_p_alive -> Nullable<Double>,
    }
}

diesel::table! {
    /// Addresses never to mail again, by normalised address; kept when the
    /// customer row changes or goes.
    suppressions (address) {
        /// Normalised address (trimmed, lower-case).
        address -> Text,
        /// `unsubscribed`, `hard_bounced`, `erased` or `staff`.
        reason -> Text,
        /// The customer at the time, if known (no foreign key: kept regardless).
        customer_id -> Nullable<Text>,
        /// The campaign that caused it, if any.
        campaign_id -> Nullable<BigInt>,
        /// When.
        at -> Timestamp,
    }
}

diesel::table! {
    /// Staff API tokens (several per staff name), stored only as hashes.
    api_tokens (id) {
        /// Surrogate key.
        id -> BigInt,
        /// Staff name (`me.name`).
        name -> Text,
        /// `viewer`, `marketer` or `admin` ([`crate::db::models::api_tokens::Role`]).
        role -> Text,
        /// SHA-256 of the token (never the token), unique.
        token_hash -> Text,
        /// Creation time.
        created_at -> Timestamp,
        /// Last authenticated use (updated at most about once a minute).
        last_used_at -> Nullable<Timestamp>,
        /// When revoked; a revoked token is refused.
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Every change of a customer's email consent: what it became, when, why.
    consent_changes (id) {
        /// Surrogate key.
        id -> BigInt,
        /// The customer (no foreign key: a load records the change before it merges the row).
        customer_id -> Text,
        /// The consent it became.
        email_opt_in -> Bool,
        /// `crm`, `unsubscribe`, `staff` or `erasure` ([`crate::db::models::consent_changes::ConsentSource`]).
        source -> Text,
        /// When it took effect (the CRM record's `updated_at`, the unsubscribe's time, ...).
        at -> Timestamp,
        /// The record that caused it (the load run, the campaign and link, the staff name).
        record -> Nullable<Text>,
        /// When it was written here.
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    /// Staff access to personal data, exports and erasures (who, when, whom).
    audit_log (id) {
        /// Surrogate key.
        id -> BigInt,
        /// When.
        at -> Timestamp,
        /// The staff token's name, or `cli:<user>` for the command line.
        actor -> Text,
        /// [`crate::db::models::audit_log::AuditAction`].
        action -> Text,
        /// The operation, or the reason given.
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    /// The customers an audit entry concerns (ids, or pseudonyms once erased).
    audit_log_customers (customer_id, audit_id) {
        /// The customer.
        customer_id -> Text,
        /// The entry.
        audit_id -> BigInt,
    }
}

diesel::table! {
    /// Customers erased on request, by pseudonym (never the erased id).
    erasures (pseudonym) {
        /// The keyed hash that replaced the customer id.
        pseudonym -> Text,
        /// When the database part was done.
        erased_at -> Timestamp,
        /// Who asked for it (staff token name or `cli:<user>`).
        erased_by -> Text,
        /// Why (as given).
        reason -> Text,
        /// When the warehouse's versions were rewritten; null until then.
        warehouse_done_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Keyed hashes of an erased customer's normalised keys (never the keys).
    erasure_keys (pseudonym, kind, key_hash) {
        /// The erasure.
        pseudonym -> Text,
        /// `customer_id`, `email` or `phone`.
        kind -> Text,
        /// The keyed hash (`CVM_PRIVACY_KEY`), 32 hex digits.
        key_hash -> Text,
    }
}

diesel::joinable!(scores -> customers (customer_id));
diesel::joinable!(audit_log_customers -> audit_log (audit_id));
diesel::joinable!(erasure_keys -> erasures (pseudonym));
diesel::joinable!(invitations -> surveys (survey_id));
diesel::joinable!(invitations -> customers (customer_id));
diesel::joinable!(invitations -> campaigns (campaign_id));
diesel::joinable!(answers -> invitations (invitation_id));
diesel::joinable!(outbox -> campaigns (campaign_id));
diesel::joinable!(outbox -> customers (customer_id));
diesel::joinable!(unsubscribes -> customers (customer_id));
diesel::joinable!(unsubscribes -> campaigns (campaign_id));
diesel::joinable!(suppressions -> campaigns (campaign_id));
diesel::joinable!(campaigns -> surveys (survey_id));

diesel::allow_tables_to_appear_in_same_query!(
    customers,
    scores,
    surveys,
    invitations,
    answers,
    job_runs,
    unsubscribes,
    campaigns,
    outbox,
    suppressions,
    api_tokens,
    consent_changes,
    audit_log,
    audit_log_customers,
    erasures,
    erasure_keys,
);
