//! The product's loop, end to end, as users run it: the demo's nightly job
//! loads scores; staff create a survey and invite customers through the
//! portal; customers answer (through the API and through the survey page's
//! form); the next nightly job reads the answers, and each customer's
//! `nps_class` shows in the scores and in `customer(id)`.

use cvm_e2e::{Portal, demo_with_token, run};
use serde_json::{Value, json};

fn token_of(url: &str) -> &str {
    url.rsplit_once("/s/").map(|(_, t)| t).expect("an /s/ link")
}

#[test]
fn answers_given_in_the_portal_reach_the_next_nightly_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    let demo_s = demo.to_str().unwrap();

    // Night 1: the demo generates a drop and runs the nightly job into SQLite.
    let (db_url, token) = demo_with_token(&demo, 300, 11, "ada");

    let portal = Portal::start(&db_url, &[]);
    let staff = Some(token.as_str());
    let survey = portal.gql(
        staff,
        "mutation { createSurvey(input: {name: \"After purchase\", question: \"How likely are you to recommend us?\", csatQuestion: \"How satisfied are you?\"}) { id } }",
        json!({}),
    );
    let survey_id = survey["createSurvey"]["id"].as_str().unwrap().to_string();
    let batch = portal.gql(
        staff,
        "mutation($s: ID!) { createInvitations(surveyId: $s, filter: {emailOptIn: true}) { created alreadyInvited } }",
        json!({"s": survey_id}),
    );
    let created = batch["createInvitations"]["created"].as_i64().unwrap();
    assert!(created >= 3, "{batch}");
    let page = portal.gql(
        staff,
        "query($s: ID!) { survey(id: $s) { invitations(first: 3) { edges { node { url customer { id score { npsLast } } } } } } }",
        json!({"s": survey_id}),
    );
    let invited: Vec<(String, String)> = page["survey"]["invitations"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["node"]["customer"]["score"]["npsLast"], Value::Null);
            (
                e["node"]["customer"]["id"].as_str().unwrap().to_string(),
                token_of(e["node"]["url"].as_str().unwrap()).to_string(),
            )
        })
        .collect();
    assert_eq!(invited.len(), 3);

    // Customers answer: one through the API, one through the page's form,
    // one through the API and then again (the second answer replaces the first).
    let submit = "mutation($t: String!, $s: Int!) { submitFeedback(input: {token: $t, score: $s}) { updated } }";
    let r = portal.gql(None, submit, json!({"t": invited[0].1, "s": 10}));
    assert_eq!(r["submitFeedback"]["updated"], false);
    let form_url = format!("{}/s/{}", portal.base, invited[1].1);
    assert_eq!(portal.get(&form_url).0, 200);
    let (status, location) = portal.post_form(&form_url, "score=0&csat=2&comment=Late+delivery");
    assert_eq!(
        status, 303,
        "the form answers with a redirect to the thank-you page"
    );
    assert!(location.is_some());
    portal.gql(None, submit, json!({"t": invited[2].1, "s": 6}));
    let r = portal.gql(None, submit, json!({"t": invited[2].1, "s": 8}));
    assert_eq!(r["submitFeedback"]["updated"], true);

    // Night 2: the nightly job reads the answers from the database.
    run(
        "cvm-etl",
        &[
            "--quiet",
            "nightly",
            "--input",
            &format!("{demo_s}/drop"),
            "--warehouse",
            &format!("{demo_s}/warehouse"),
            "--db",
            &db_url,
        ],
        &[],
    );
    let expected = [(10, "PROMOTER"), (0, "DETRACTOR"), (8, "PASSIVE")];
    for ((id, _), (score, class)) in invited.iter().zip(expected) {
        let c = portal.gql(
            staff,
            "query($id: ID!) { customer(id: $id) { score { npsLast npsClass } feedback { totalCount } } }",
            json!({"id": id}),
        );
        assert_eq!(
            c["customer"]["score"],
            json!({"npsLast": score, "npsClass": class}),
            "customer {id}"
        );
        assert_eq!(
            c["customer"]["feedback"]["totalCount"], 1,
            "one answer per invitation"
        );
    }
    // The loaded scores select by NPS class (what campaigns target).
    let classes = portal.gql(
        staff,
        "{ p: customers(filter: {npsClass: [PROMOTER]}) { totalCount } d: customers(filter: {npsClass: [DETRACTOR]}) { totalCount } s: npsSummary { responses promoters passives detractors nps } }",
        json!({}),
    );
    assert_eq!(classes["p"]["totalCount"], 1);
    assert_eq!(classes["d"]["totalCount"], 1);
    assert_eq!(
        classes["s"],
        json!({"responses": 3, "promoters": 1, "passives": 1, "detractors": 1, "nps": 0.0})
    );
}
