//! The staff queries through HTTP on both backends: `customer`,
//! `customers` (filters, orders, cursor pagination, stability across a
//! load), `groups`, `surveys`, `npsSummary`, `npsTrend`, their roles, and
//! the number of SQL statements a page costs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{NaiveDate, NaiveDateTime};
use common::{TestServer, error_codes};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::customers::{self, NewCustomer};
use cvm_shared::db::models::scores::{self, NewScore};
use cvm_shared::db::models::surveys::{self, NewSurvey, SurveyStatus};
use cvm_shared::db::models::{answers, invitations};
use cvm_shared::db::{Backend, DbConnection, DbError};
use diesel::Connection;
use serde_json::{Value, json};

cvm_shared::both_backends!(
    pages_of_500_list_every_customer_once_in_every_order,
    a_listing_by_scores_must_restart_after_a_load_but_one_by_id_continues,
    each_kind_of_filter_selects_exactly_the_matching_customers,
    page_sizes_above_500_and_foreign_cursors_are_bad_user_input,
    a_customer_shows_profile_channels_scores_and_feedback_pages,
    a_page_of_customers_with_scores_and_feedback_costs_as_many_statements_for_500_as_for_50,
    groups_count_customers_per_dimension_with_exact_clv_and_churn,
    nps_summary_is_exact_counts_a_zero_as_detractor_and_is_null_without_answers,
    nps_trends_have_every_period_and_group_including_empty_ones,
    viewers_may_run_every_query_and_requests_without_a_token_are_unauthenticated,
    surveys_are_listed_newest_first_in_pages,
);

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
    day(y, m, d).and_hms_opt(h, 0, 0).unwrap()
}

const LOADED: fn() -> NaiveDateTime = || at(2024, 6, 1, 3);

/// A customer as the ETL loads it.
fn customer(id: &str) -> NewCustomer<'_> {
    NewCustomer {
        customer_id: id,
        is_guest: false,
        email: None,
        phone: None,
        first_name: None,
        last_name: None,
        country: Some("DE"),
        signup_date: None,
        birth_date: None,
        email_opt_in: true,
        consent_updated_at: None,
        first_seen: None,
        channels: "online".into(),
        active: true,
        loaded_at: LOADED(),
    }
}

/// A score row with neutral values, as of 2024-06-01.
fn score(id: &str) -> NewScore<'_> {
    NewScore {
        customer_id: id,
        as_of: day(2024, 6, 1),
        orders: 1,
        frequency: 0,
        recency: 0.0,
        t: 10.0,
        monetary_avg: 0.0,
        total_revenue: "10.00".into(),
        first_purchase: None,
        last_purchase: None,
        days_since_last_purchase: None,
        r_score: None,
        f_score: None,
        m_score: None,
        rfm_segment: "Promising",
        p_alive: None,
        expected_purchases_90d: None,
        expected_purchases_365d: None,
        expected_avg_value: None,
        clv_12m: None,
        churn_risk: None,
        nps_last: None,
        nps_class: None,
        engagement_90d: 0,
        lifecycle_stage: None,
        value_tier: None,
        loyalty_index: None,
        loaded_at: LOADED(),
    }
}

/// Loads customers and scores the way the ETL does (one transaction).
fn load(s: &TestServer, rows: &[NewCustomer<'_>], scores_rows: &[NewScore<'_>]) {
    let mut c = DbConnection::connect(&s.db.url).unwrap();
    c.transaction::<_, DbError, _>(|c| {
        customers::upsert(c, rows)?;
        scores::upsert(c, scores_rows)?;
        Ok(())
    })
    .unwrap();
}

/// A survey; returns its id.
fn survey(s: &TestServer, name: &str) -> i64 {
    let mut c = DbConnection::connect(&s.db.url).unwrap();
    surveys::insert(
        &mut c,
        &NewSurvey {
            name,
            question: "Would you recommend us?",
            csat_question: None,
            comment_prompt: None,
            opens_at: at(2024, 1, 1, 0),
            closes_at: None,
            status: SurveyStatus::Open,
            created_by: "test",
            created_at: at(2024, 1, 1, 0),
        },
    )
    .unwrap()
    .id
}

/// An invitation of `customer` to `survey` answered with `score` at `when`.
fn answer(
    c: &mut DbConnection,
    survey: i64,
    customer: &str,
    score: i32,
    when: NaiveDateTime,
) -> i64 {
    let hash = format!("{survey}-{customer}");
    let inv = invitations::insert(
        c,
        &invitations::NewInvitation {
            survey_id: survey,
            customer_id: customer,
            token_hash: &hash,
            created_at: when,
            expires_at: at(2030, 1, 1, 0),
            campaign_id: None,
        },
    )
    .unwrap();
    answers::upsert(c, inv, score, None, Some("fine"), when)
        .unwrap()
        .0
        .id
}

/// The customer ids of a `customers` answer.
fn ids(body: &Value) -> Vec<String> {
    body["data"]["customers"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no edges in {body}"))
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect()
}

const PAGE: &str =
    "query($filter: CustomerFilter, $order: CustomerOrder, $first: Int, $after: String) {
  customers(filter: $filter, orderBy: $order, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id } }
  } }";

/// Every page of a listing: (ids in order, number of pages).
fn all_pages(
    s: &TestServer,
    token: &str,
    order: Value,
    filter: Value,
    first: i64,
) -> (Vec<String>, usize) {
    let (mut seen, mut after, mut pages) = (Vec::new(), Value::Null, 0);
    loop {
        let vars = json!({"order": order, "filter": filter, "first": first, "after": after});
        let (_, body) = s.gql(Some(token), PAGE, vars);
        let conn = &body["data"]["customers"];
        assert!(conn.is_object(), "{body}");
        let info = &conn["pageInfo"];
        assert_eq!(info["hasPreviousPage"], json!(pages > 0), "{order}: {info}");
        let page = ids(&body);
        if let (Some(first_id), Some(edge)) = (page.first(), conn["edges"].get(0)) {
            assert_eq!(info["startCursor"], edge["cursor"], "{first_id}");
        }
        seen.extend(page);
        pages += 1;
        if info["hasNextPage"] != json!(true) {
            assert_eq!(conn["totalCount"], json!(seen.len()), "{order}");
            return (seen, pages);
        }
        after = info["endCursor"].clone();
    }
}

/// The ids of `customers` in `order` by one plain SQL query (no pagination).
fn reference_order(s: &TestServer, column: &str, desc: bool) -> Vec<String> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Text)]
        customer_id: String,
    }
    let dir = if desc { "DESC" } else { "ASC" };
    let order = if column == "customer_id" {
        format!("c.customer_id {dir}")
    } else {
        format!("(s.{column} IS NULL), s.{column} {dir}, c.customer_id {dir}")
    };
    let sql = format!(
        "SELECT c.customer_id FROM customers c LEFT JOIN scores s ON s.customer_id = c.customer_id \
         WHERE c.active ORDER BY {order}"
    );
    let mut c = DbConnection::connect(&s.db.url).unwrap();
    diesel::sql_query(sql)
        .load::<Id>(&mut c)
        .unwrap()
        .into_iter()
        .map(|r| r.customer_id)
        .collect()
}

/// 1,200 active customers (and a few inactive ones) with ties and nulls in
/// every sort field, and some never scored.
fn many_customers(s: &TestServer) {
    let ids: Vec<String> = (0..1210).map(|i| format!("c{i:05}")).collect();
    let mut rows: Vec<NewCustomer<'_>> = ids.iter().map(|id| customer(id)).collect();
    for r in rows.iter_mut().skip(1200) {
        r.active = false;
    }
    let scored = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 17 != 5)
        .map(|(i, id)| {
            let i = i as u32;
            NewScore {
                clv_12m: (!i.is_multiple_of(13)).then(|| f64::from(i % 97) * 1.5),
                churn_risk: (!i.is_multiple_of(11)).then(|| f64::from(i % 10) / 10.0),
                loyalty_index: (!i.is_multiple_of(7)).then(|| f64::from(i % 50)),
                last_purchase: (!i.is_multiple_of(19)).then(|| day(2024, 1, 1 + i % 28)),
                ..score(id)
            }
        });
    let scored: Vec<NewScore<'_>> = scored.collect();
    load(s, &rows, &scored);
}

const ORDERS: [(&str, &str); 5] = [
    ("CUSTOMER_ID", "customer_id"),
    ("CLV_12M", "clv_12m"),
    ("CHURN_RISK", "churn_risk"),
    ("LOYALTY_INDEX", "loyalty_index"),
    ("LAST_PURCHASE", "last_purchase"),
];

fn pages_of_500_list_every_customer_once_in_every_order(backend: Backend) {
    let s = TestServer::start(backend);
    many_customers(&s);
    let token = s.token("vera", Role::Viewer);
    for (field, column) in ORDERS {
        for (direction, desc) in [("ASC", false), ("DESC", true)] {
            let order = json!({"field": field, "direction": direction});
            let (listed, pages) = all_pages(&s, &token, order, Value::Null, 500);
            assert_eq!(pages, 3, "{field} {direction}");
            let expected = reference_order(&s, column, desc);
            assert_eq!(expected.len(), 1200);
            assert!(
                listed == expected,
                "{field} {direction}: the pages differ from one query"
            );
        }
    }
}

fn a_listing_by_scores_must_restart_after_a_load_but_one_by_id_continues(backend: Backend) {
    let s = TestServer::start(backend);
    many_customers(&s);
    let token = s.token("vera", Role::Viewer);
    let first_page = |order: Value| {
        let (_, body) = s.gql(Some(&token), PAGE, json!({"order": order, "first": 500}));
        (
            ids(&body),
            body["data"]["customers"]["pageInfo"]["endCursor"].clone(),
        )
    };
    let by_clv = json!({"field": "CLV_12M", "direction": "DESC"});
    let by_id = json!({"field": "CUSTOMER_ID", "direction": "ASC"});
    let (_, clv_cursor) = first_page(by_clv.clone());
    let (id_page, id_cursor) = first_page(by_id.clone());
    // A nightly load moves the last customer of the first page to the top.
    let mut moved = score("c00600");
    moved.as_of = day(2024, 6, 2);
    moved.clv_12m = Some(1e9);
    moved.loaded_at = at(2024, 6, 2, 3);
    load(&s, &[], &[moved]);

    let (_, body) = s.gql(
        Some(&token),
        PAGE,
        json!({"order": by_clv, "first": 500, "after": clv_cursor}),
    );
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("restart the listing"), "{message}");
    assert!(
        message.contains("2024-06-01") && message.contains("2024-06-02"),
        "{message}"
    );

    let (_, body) = s.gql(
        Some(&token),
        PAGE,
        json!({"order": by_id, "first": 500, "after": id_cursor}),
    );
    let mut listed = id_page;
    listed.extend(ids(&body));
    assert_eq!(listed, reference_order(&s, "customer_id", false)[..1000]);
}

fn each_kind_of_filter_selects_exactly_the_matching_customers(backend: Backend) {
    let s = TestServer::start(backend);
    let mut rows = vec![
        NewCustomer {
            email: Some("ann@shop.example"),
            first_name: Some("Ann"),
            last_name: Some("Lee"),
            ..customer("a1")
        },
        NewCustomer {
            email: Some("bob@mail.example"),
            first_name: Some("Bob"),
            last_name: Some("O'Hara"),
            email_opt_in: false,
            ..customer("b2")
        },
        NewCustomer {
            email: Some("cy_100%@x.example"),
            ..customer("C3")
        },
        customer("d4"),
        NewCustomer {
            active: false,
            ..customer("e5")
        },
    ];
    rows[3].first_name = Some("Dee");
    let scored = vec![
        NewScore {
            rfm_segment: "At Risk",
            lifecycle_stage: Some("at_risk"),
            value_tier: Some("high"),
            nps_class: Some("detractor"),
            nps_last: Some(0),
            churn_risk: Some(0.6),
            clv_12m: Some(500.0),
            ..score("a1")
        },
        NewScore {
            rfm_segment: "Champions",
            lifecycle_stage: Some("loyal"),
            value_tier: Some("medium"),
            nps_class: Some("promoter"),
            nps_last: Some(10),
            churn_risk: Some(0.1),
            clv_12m: Some(200.0),
            ..score("b2")
        },
        NewScore {
            rfm_segment: "Prospect",
            lifecycle_stage: Some("prospect"),
            value_tier: Some("none"),
            churn_risk: None,
            clv_12m: None,
            ..score("C3")
        },
        NewScore {
            rfm_segment: "At Risk",
            lifecycle_stage: Some("at_risk"),
            value_tier: Some("low"),
            churn_risk: Some(0.5),
            clv_12m: Some(50.0),
            ..score("e5")
        },
    ];
    load(&s, &rows, &scored);
    let token = s.token("vera", Role::Viewer);
    let cases = [
        (json!(null), vec!["C3", "a1", "b2", "d4"]),
        (json!({}), vec!["C3", "a1", "b2", "d4"]),
        (json!({"active": null}), vec!["C3", "a1", "b2", "d4", "e5"]),
        (json!({"active": false}), vec!["e5"]),
        (json!({"rfmSegment": ["At Risk"]}), vec!["a1"]),
        (
            json!({"rfmSegment": ["At Risk", "Champions"], "active": null}),
            vec!["a1", "b2", "e5"],
        ),
        (
            json!({"lifecycleStage": ["AT_RISK", "LOYAL"]}),
            vec!["a1", "b2"],
        ),
        (json!({"valueTier": ["NONE"]}), vec!["C3", "d4"]),
        (json!({"valueTier": ["HIGH", "MEDIUM"]}), vec!["a1", "b2"]),
        (json!({"npsClass": ["DETRACTOR"]}), vec!["a1"]),
        (json!({"minChurnRisk": 0.5}), vec!["a1"]),
        (
            json!({"minChurnRisk": 0.1, "maxChurnRisk": 0.5, "active": null}),
            vec!["b2", "e5"],
        ),
        (
            json!({"minClv12m": 200, "maxClv12m": 500}),
            vec!["a1", "b2"],
        ),
        (json!({"maxClv12m": 199.99}), Vec::<&str>::new()),
        (json!({"emailOptIn": false}), vec!["b2"]),
        (json!({"search": "ANN"}), vec!["a1"]),
        (json!({"search": "ann lee"}), vec!["a1"]),
        (json!({"search": "o'hara"}), vec!["b2"]),
        (json!({"search": "c3"}), vec!["C3"]),
        (json!({"search": "mail.ex"}), vec!["b2"]),
        (json!({"search": "_100%"}), vec!["C3"]),
        (json!({"search": "%"}), vec!["C3"]),
        (json!({"search": "dee"}), vec!["d4"]),
    ];
    for (filter, expected) in cases {
        let (_, body) = s.gql(Some(&token), PAGE, json!({"filter": filter}));
        let mut got = ids(&body);
        got.sort();
        assert_eq!(got, expected, "filter {filter}: {body}");
        assert_eq!(
            body["data"]["customers"]["totalCount"],
            json!(expected.len()),
            "{filter}"
        );
    }
    let (_, body) = s.gql(
        Some(&token),
        PAGE,
        json!({"filter": {"rfmSegment": ["at risk"]}}),
    );
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
}

fn page_sizes_above_500_and_foreign_cursors_are_bad_user_input(backend: Backend) {
    let s = TestServer::start(backend);
    load(&s, &[customer("a"), customer("b"), customer("c")], &[]);
    let token = s.token("vera", Role::Viewer);
    let (_, body) = s.gql(Some(&token), PAGE, json!({}));
    assert_eq!(ids(&body), ["a", "b", "c"], "default order: by id");
    let (_, body) = s.gql(Some(&token), PAGE, json!({"first": 501}));
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    let (_, body) = s.gql(Some(&token), PAGE, json!({"first": 1}));
    let cursor = body["data"]["customers"]["pageInfo"]["endCursor"].clone();
    let (_, body) = s.gql(
        Some(&token),
        PAGE,
        json!({"first": 1, "after": cursor, "order": {"field": "CLV_12M", "direction": "ASC"}}),
    );
    assert_eq!(
        error_codes(&body),
        ["BAD_USER_INPUT"],
        "a cursor of another order: {body}"
    );
    for garbage in ["xyz", "eyJpZCI6MX0", "' OR 1=1 --"] {
        let (_, body) = s.gql(Some(&token), PAGE, json!({"after": garbage}));
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{garbage}: {body}");
    }
    let (_, body) = s.gql(Some(&token), PAGE, json!({"first": 2, "after": cursor}));
    assert_eq!(ids(&body), ["b", "c"]);
    let info = &body["data"]["customers"]["pageInfo"];
    assert_eq!(
        (info["hasPreviousPage"].clone(), info["hasNextPage"].clone()),
        (json!(true), json!(false))
    );
}

const CUSTOMER: &str = "query($id: ID!, $first: Int, $after: String) { customer(id: $id) {
  id isGuest email firstName lastName country emailOptIn active channels
  score { asOf orders frequency totalRevenue rfmSegment rScore clv12m churnRisk lifecycleStage valueTier loyaltyIndex npsLast npsClass expectedPurchases90d pAlive }
  feedback(first: $first, after: $after) { totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { node { id score comment campaignId answeredAt survey { id name } customer { id } } } }
} }";

fn a_customer_shows_profile_channels_scores_and_feedback_pages(backend: Backend) {
    let s = TestServer::start(backend);
    let c = NewCustomer {
        email: Some("ann@shop.example"),
        first_name: Some("Ann"),
        channels: "online,store".into(),
        ..customer("a1")
    };
    let sc = NewScore {
        orders: 3,
        total_revenue: "1234.50".into(),
        r_score: Some(5),
        clv_12m: Some(321.25),
        churn_risk: Some(0.25),
        lifecycle_stage: Some("at_risk"),
        value_tier: Some("high"),
        loyalty_index: Some(77.5),
        nps_last: Some(0),
        nps_class: Some("detractor"),
        ..score("a1")
    };
    load(&s, &[c, customer("b2")], &[sc]);
    let spring = survey(&s, "Spring");
    let autumn = survey(&s, "Autumn");
    let mut c = DbConnection::connect(&s.db.url).unwrap();
    answer(&mut c, spring, "a1", 0, at(2024, 3, 1, 9));
    answer(&mut c, autumn, "a1", 9, at(2024, 9, 1, 9));
    let token = s.token("vera", Role::Viewer);
    let (_, body) = s.gql(Some(&token), CUSTOMER, json!({"id": "a1", "first": 1}));
    let a = &body["data"]["customer"];
    assert_eq!(a["channels"], json!(["online", "store"]), "{body}");
    assert_eq!(
        a["score"],
        json!({"asOf": "2024-06-01", "orders": 3, "frequency": 0, "totalRevenue": "1234.50", "rfmSegment": "Promising",
               "rScore": 5, "clv12m": 321.25, "churnRisk": 0.25, "lifecycleStage": "AT_RISK", "valueTier": "HIGH",
               "loyaltyIndex": 77.5, "npsLast": 0, "npsClass": "DETRACTOR", "expectedPurchases90d": null, "pAlive": null})
    );
    let fb = &a["feedback"];
    assert_eq!(fb["totalCount"], 2);
    assert_eq!(fb["edges"][0]["node"]["score"], 9, "newest first: {fb}");
    assert_eq!(fb["edges"][0]["node"]["survey"]["name"], "Autumn");
    assert_eq!(fb["edges"][0]["node"]["customer"]["id"], "a1");
    assert_eq!(fb["edges"][0]["node"]["answeredAt"], "2024-09-01T09:00:00Z");
    assert_eq!(fb["pageInfo"]["hasNextPage"], true);
    let after = fb["pageInfo"]["endCursor"].clone();
    let (_, body) = s.gql(
        Some(&token),
        CUSTOMER,
        json!({"id": "a1", "first": 10, "after": after}),
    );
    let fb = &body["data"]["customer"]["feedback"];
    assert_eq!(fb["edges"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(
        fb["edges"][0]["node"]["score"], 0,
        "a 0 is an answer, not a blank"
    );
    assert_eq!(fb["pageInfo"]["hasPreviousPage"], true);
    // Never scored, no feedback; and an unknown id is null.
    let (_, body) = s.gql(Some(&token), CUSTOMER, json!({"id": "b2"}));
    assert_eq!(body["data"]["customer"]["score"], Value::Null, "{body}");
    assert_eq!(body["data"]["customer"]["feedback"]["totalCount"], 0);
    let (_, body) = s.gql(Some(&token), CUSTOMER, json!({"id": "nobody"}));
    assert_eq!(body, json!({"data": {"customer": null}}));
}

/// The statements the server's pool has started so far (its `/metrics`).
fn statements(s: &TestServer) -> u64 {
    let (_, text) = s.get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("cvm_portal_db_statements_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no statement counter in {text}"))
}

fn a_page_of_customers_with_scores_and_feedback_costs_as_many_statements_for_500_as_for_50(
    backend: Backend,
) {
    let s = TestServer::start(backend);
    let ids: Vec<String> = (0..600).map(|i| format!("c{i:04}")).collect();
    let rows: Vec<NewCustomer<'_>> = ids.iter().map(|id| customer(id)).collect();
    let scored: Vec<NewScore<'_>> = ids
        .iter()
        .map(|id| NewScore {
            clv_12m: Some(1.0),
            ..score(id)
        })
        .collect();
    load(&s, &rows, &scored);
    let (spring, autumn) = (survey(&s, "Spring"), survey(&s, "Autumn"));
    let mut c = DbConnection::connect(&s.db.url).unwrap();
    for id in &ids {
        answer(&mut c, spring, id, 7, at(2024, 3, 1, 9));
        answer(&mut c, autumn, id, 10, at(2024, 9, 1, 9));
    }
    let token = s.token("vera", Role::Viewer);
    let query = "query($first: Int, $order: CustomerOrder) { customers(first: $first, orderBy: $order) { totalCount edges { node { id
      score { clv12m npsClass }
      feedback(first: 10) { totalCount edges { node { score survey { name } } } } } } } }";
    // A first request records the token's use (a write off the request's
    // path): wait for it, so the counts below hold only the queries.
    s.gql(Some(&token), "{ me { name } }", json!({}));
    let recorded = (0..400).any(|_| {
        let t = cvm_shared::db::models::api_tokens::list(&mut c).unwrap();
        t.iter().all(|t| t.last_used_at.is_some()) || {
            std::thread::sleep(std::time::Duration::from_millis(25));
            false
        }
    });
    assert!(recorded);
    let mut cost = Vec::new();
    for order in [
        json!(null),
        json!({"field": "CLV_12M", "direction": "DESC"}),
    ] {
        for first in [50, 500] {
            let before = statements(&s);
            let (_, body) = s.gql(Some(&token), query, json!({"first": first, "order": order}));
            let edges = body["data"]["customers"]["edges"]
                .as_array()
                .unwrap_or_else(|| panic!("{body}"));
            assert_eq!(edges.len(), first);
            assert_eq!(edges[first - 1]["node"]["feedback"]["totalCount"], 2);
            assert_eq!(
                edges[first - 1]["node"]["feedback"]["edges"][1]["node"]["survey"]["name"],
                "Spring"
            );
            cost.push(statements(&s) - before);
        }
    }
    assert_eq!(cost[0], cost[1], "by id: 50 vs 500 customers: {cost:?}");
    assert_eq!(cost[2], cost[3], "by CLV: 50 vs 500 customers: {cost:?}");
    assert!(
        cost.iter().all(|n| *n <= 12),
        "a page costs a handful of statements: {cost:?}"
    );
}

/// Five customers for groups and NPS: a1..d4 active (d4 never scored), e5 inactive.
fn five_customers(s: &TestServer) {
    let rows = [
        customer("a1"),
        customer("b2"),
        customer("c3"),
        customer("d4"),
        NewCustomer {
            active: false,
            ..customer("e5")
        },
    ];
    let scored = [
        NewScore {
            rfm_segment: "At Risk",
            lifecycle_stage: Some("at_risk"),
            value_tier: Some("high"),
            nps_class: Some("detractor"),
            clv_12m: Some(100.0),
            churn_risk: Some(0.5),
            ..score("a1")
        },
        NewScore {
            rfm_segment: "At Risk",
            lifecycle_stage: Some("loyal"),
            value_tier: Some("medium"),
            nps_class: Some("promoter"),
            clv_12m: Some(50.0),
            churn_risk: Some(0.25),
            ..score("b2")
        },
        NewScore {
            rfm_segment: "Champions",
            lifecycle_stage: Some("loyal"),
            value_tier: Some("none"),
            ..score("c3")
        },
        NewScore {
            rfm_segment: "Champions",
            lifecycle_stage: Some("loyal"),
            value_tier: Some("high"),
            clv_12m: Some(1000.0),
            churn_risk: Some(0.0),
            ..score("e5")
        },
    ];
    load(s, &rows, &scored);
}

fn group(key: &str, customers: i64, avg: Value, total: Value, churn: Value) -> Value {
    json!({"key": key, "customers": customers, "avgClv12m": avg, "totalClv12m": total, "avgChurnRisk": churn})
}

fn groups_count_customers_per_dimension_with_exact_clv_and_churn(backend: Backend) {
    let s = TestServer::start(backend);
    five_customers(&s);
    let token = s.token("vera", Role::Viewer);
    let query = "query($by: Dimension!, $filter: CustomerFilter) { groups(by: $by, filter: $filter) { key customers avgClv12m totalClv12m avgChurnRisk } }";
    let n = Value::Null;
    let cases = [
        (
            "RFM_SEGMENT",
            json!(null),
            vec![
                group("At Risk", 2, json!(75.0), json!(150.0), json!(0.375)),
                group("Champions", 1, n.clone(), n.clone(), n.clone()),
                group("NONE", 1, n.clone(), n.clone(), n.clone()),
            ],
        ),
        (
            "RFM_SEGMENT",
            json!({"active": null}),
            vec![
                group("At Risk", 2, json!(75.0), json!(150.0), json!(0.375)),
                group("Champions", 2, json!(1000.0), json!(1000.0), json!(0.0)),
                group("NONE", 1, n.clone(), n.clone(), n.clone()),
            ],
        ),
        (
            "LIFECYCLE_STAGE",
            json!(null),
            vec![
                group("AT_RISK", 1, json!(100.0), json!(100.0), json!(0.5)),
                group("LOYAL", 2, json!(50.0), json!(50.0), json!(0.25)),
                group("NONE", 1, n.clone(), n.clone(), n.clone()),
            ],
        ),
        (
            "VALUE_TIER",
            json!(null),
            vec![
                group("HIGH", 1, json!(100.0), json!(100.0), json!(0.5)),
                group("MEDIUM", 1, json!(50.0), json!(50.0), json!(0.25)),
                group("NONE", 2, n.clone(), n.clone(), n.clone()),
            ],
        ),
        (
            "NPS_CLASS",
            json!({"rfmSegment": ["At Risk", "Champions"]}),
            vec![
                group("DETRACTOR", 1, json!(100.0), json!(100.0), json!(0.5)),
                group("NONE", 1, n.clone(), n.clone(), n.clone()),
                group("PROMOTER", 1, json!(50.0), json!(50.0), json!(0.25)),
            ],
        ),
    ];
    for (by, filter, expected) in cases {
        let (_, body) = s.gql(Some(&token), query, json!({"by": by, "filter": filter}));
        assert_eq!(
            body["data"]["groups"],
            json!(expected),
            "{by} {filter}: {body}"
        );
    }
}

/// Surveys S1 (four answers, one of an inactive customer), S2 (one), S3 (none).
fn answered_surveys(s: &TestServer) -> (i64, i64, i64) {
    five_customers(s);
    let (s1, s2, s3) = (survey(s, "S1"), survey(s, "S2"), survey(s, "S3"));
    let mut c = DbConnection::connect(&s.db.url).unwrap();
    answer(&mut c, s1, "a1", 0, at(2024, 3, 4, 23)); // Monday
    answer(&mut c, s1, "b2", 10, at(2024, 3, 6, 0));
    answer(&mut c, s1, "c3", 8, at(2024, 3, 20, 12));
    answer(&mut c, s2, "d4", 9, at(2024, 3, 5, 8));
    answer(&mut c, s1, "e5", 3, at(2024, 4, 2, 8));
    (s1, s2, s3)
}

const SUMMARY: &str = "query($survey: ID, $from: DateTime, $to: DateTime, $filter: CustomerFilter) {
  npsSummary(surveyId: $survey, from: $from, to: $to, filter: $filter) { responses promoters passives detractors nps } }";

fn summary(responses: i64, promoters: i64, passives: i64, detractors: i64, nps: Value) -> Value {
    json!({"responses": responses, "promoters": promoters, "passives": passives, "detractors": detractors, "nps": nps})
}

fn nps_summary_is_exact_counts_a_zero_as_detractor_and_is_null_without_answers(backend: Backend) {
    let s = TestServer::start(backend);
    let (s1, s2, s3) = answered_surveys(&s);
    let token = s.token("vera", Role::Viewer);
    let cases = [
        (json!({}), summary(5, 2, 1, 2, json!(0.0))),
        (
            json!({"survey": s1.to_string()}),
            summary(4, 1, 1, 2, json!(-25.0)),
        ),
        (
            json!({"survey": s1.to_string(), "filter": {}}),
            summary(3, 1, 1, 1, json!(0.0)),
        ),
        (
            json!({"survey": s1.to_string(), "filter": {"valueTier": ["HIGH"]}}),
            summary(1, 0, 0, 1, json!(-100.0)),
        ),
        (
            json!({"survey": s2.to_string()}),
            summary(1, 1, 0, 0, json!(100.0)),
        ),
        (
            json!({"from": "2024-03-05T00:00:00Z", "to": "2024-03-20T12:00:00Z"}),
            summary(2, 2, 0, 0, json!(100.0)),
        ),
        (
            json!({"from": "2024-03-05T00:00:00Z", "to": "2024-03-21T00:00:00Z"}),
            summary(3, 2, 1, 0, json!(200.0 / 3.0)),
        ),
        (
            json!({"survey": s3.to_string()}),
            summary(0, 0, 0, 0, Value::Null),
        ),
    ];
    for (vars, expected) in cases {
        let (_, body) = s.gql(Some(&token), SUMMARY, vars.clone());
        assert_eq!(body["data"]["npsSummary"], expected, "{vars}: {body}");
    }
    let (_, body) = s.gql(Some(&token), SUMMARY, json!({"survey": "999"}));
    assert_eq!(error_codes(&body), ["NOT_FOUND"], "{body}");
    let (_, body) = s.gql(
        Some(&token),
        SUMMARY,
        json!({"from": "2024-03-05T00:00:00Z", "to": "2024-03-05T00:00:00Z"}),
    );
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
}

const TREND: &str = "query($survey: ID, $interval: TrendInterval!, $from: DateTime, $to: DateTime, $by: Dimension) {
  npsTrend(surveyId: $survey, interval: $interval, from: $from, to: $to, groupBy: $by) { periodStart group responses nps } }";

fn point(start: &str, group: Value, responses: i64, nps: Value) -> Value {
    json!({"periodStart": start, "group": group, "responses": responses, "nps": nps})
}

fn nps_trends_have_every_period_and_group_including_empty_ones(backend: Backend) {
    let s = TestServer::start(backend);
    let (s1, s2, _) = answered_surveys(&s);
    let token = s.token("vera", Role::Viewer);
    let n = Value::Null;
    let cases = [
        (
            json!({"interval": "WEEK"}),
            vec![
                point("2024-03-04", n.clone(), 3, json!(100.0 / 3.0)),
                point("2024-03-11", n.clone(), 0, n.clone()),
                point("2024-03-18", n.clone(), 1, json!(0.0)),
                point("2024-03-25", n.clone(), 0, n.clone()),
                point("2024-04-01", n.clone(), 1, json!(-100.0)),
            ],
        ),
        (
            json!({"interval": "MONTH", "from": "2024-02-01T00:00:00Z", "to": "2024-05-01T00:00:00Z"}),
            vec![
                point("2024-02-01", n.clone(), 0, n.clone()),
                point("2024-03-01", n.clone(), 4, json!(25.0)),
                point("2024-04-01", n.clone(), 1, json!(-100.0)),
            ],
        ),
        (
            json!({"interval": "DAY", "survey": s2.to_string()}),
            vec![point("2024-03-05", n.clone(), 1, json!(100.0))],
        ),
        (
            json!({"interval": "DAY", "survey": s1.to_string(), "from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}),
            vec![
                point("2024-03-04", n.clone(), 1, json!(-100.0)),
                point("2024-03-05", n.clone(), 0, n.clone()),
                point("2024-03-06", n.clone(), 1, json!(100.0)),
            ],
        ),
        (
            json!({"interval": "WEEK", "survey": s1.to_string(), "by": "LIFECYCLE_STAGE", "from": "2024-03-04T00:00:00Z", "to": "2024-03-18T00:00:00Z"}),
            vec![
                point("2024-03-04", json!("AT_RISK"), 1, json!(-100.0)),
                point("2024-03-04", json!("LOYAL"), 1, json!(100.0)),
                point("2024-03-11", json!("AT_RISK"), 0, n.clone()),
                point("2024-03-11", json!("LOYAL"), 0, n.clone()),
            ],
        ),
        (
            json!({"interval": "MONTH", "by": "RFM_SEGMENT"}),
            vec![
                point("2024-03-01", json!("At Risk"), 2, json!(0.0)),
                point("2024-03-01", json!("Champions"), 1, json!(0.0)),
                point("2024-03-01", json!("NONE"), 1, json!(100.0)),
                point("2024-04-01", json!("At Risk"), 0, n.clone()),
                point("2024-04-01", json!("Champions"), 1, json!(-100.0)),
                point("2024-04-01", json!("NONE"), 0, n.clone()),
            ],
        ),
    ];
    for (vars, expected) in cases {
        let (_, body) = s.gql(Some(&token), TREND, vars.clone());
        assert_eq!(body["data"]["npsTrend"], json!(expected), "{vars}: {body}");
    }
}

fn viewers_may_run_every_query_and_requests_without_a_token_are_unauthenticated(backend: Backend) {
    let s = TestServer::start(backend);
    five_customers(&s);
    let viewer = s.token("vera", Role::Viewer);
    let queries = [
        ("customers", "{ customers { totalCount } }"),
        ("customer", "{ customer(id: \"a1\") { id } }"),
        ("groups", "{ groups(by: VALUE_TIER) { key } }"),
        ("npsSummary", "{ npsSummary { responses } }"),
        ("npsTrend", "{ npsTrend(interval: DAY) { nps } }"),
        ("surveys", "{ surveys { totalCount } }"),
    ];
    for (field, query) in queries {
        let (status, body) = s.gql(Some(&viewer), query, json!({}));
        assert_eq!(status, 200);
        assert!(
            body.get("errors").is_none() && body["data"][field] != Value::Null,
            "{field}: {body}"
        );
        let (status, body) = s.gql(None, query, json!({}));
        assert_eq!(status, 200, "{field}");
        assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{field}: {body}");
    }
}

fn surveys_are_listed_newest_first_in_pages(backend: Backend) {
    let s = TestServer::start(backend);
    let ids: Vec<i64> = ["A", "B", "C"].iter().map(|n| survey(&s, n)).collect();
    let token = s.token("vera", Role::Viewer);
    let query = "query($after: String) { surveys(first: 2, after: $after) { totalCount
      pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { id name } } } }";
    let (_, body) = s.gql(Some(&token), query, json!({}));
    let page = &body["data"]["surveys"];
    assert_eq!(page["totalCount"], 3, "{body}");
    let names = |p: &Value| {
        p["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(page), ["C", "B"]);
    assert_eq!(page["edges"][0]["node"]["id"], ids[2].to_string());
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let (_, body) = s.gql(
        Some(&token),
        query,
        json!({"after": page["pageInfo"]["endCursor"]}),
    );
    let page = &body["data"]["surveys"];
    assert_eq!(names(page), ["A"]);
    assert_eq!(
        (
            page["pageInfo"]["hasNextPage"].clone(),
            page["pageInfo"]["hasPreviousPage"].clone()
        ),
        (json!(false), json!(true))
    );
}
