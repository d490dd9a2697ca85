//! The survey page in a real browser: headless Chromium (Debian's
//! `chromium`) at a 360×740 phone viewport opens `/s/{token}`, answers with
//! taps and typing, submits, lands on the thank-you page, and the answer is
//! in the database. With `CVM_UPDATE_SCREENSHOT=1` it saves the filled form
//! to `docs/survey-page.png`.
//!
//! Without Chromium the test reports itself skipped (and passes) outside CI;
//! with `CI` set a missing Chromium fails it (`.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use common::TestServer;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::customers::{self, NewCustomer};
use cvm_shared::db::schema::answers;
use cvm_shared::db::{Backend, DbConnection};
use diesel::prelude::*;
use headless_chrome::protocol::cdp::{Emulation, Page};
use headless_chrome::{Browser, LaunchOptions};
use serde_json::json;

/// Where Debian installs Chromium (also looked up on PATH).
const CHROMIUM_NAMES: [&str; 2] = ["chromium", "chromium-browser"];

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CVM_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| CHROMIUM_NAMES.map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A survey with CSAT and comment, and customer c1 invited: its link token.
fn invited(s: &TestServer) -> String {
    let now = Utc::now().naive_utc();
    let mut c = DbConnection::connect_for_write(&s.db.url).unwrap();
    customers::upsert(
        &mut c,
        &[NewCustomer {
            customer_id: "c1",
            is_guest: false,
            email: Some("ada@example.com"),
            phone: None,
            first_name: Some("Ada"),
            last_name: Some("Lovelace"),
            country: Some("GB"),
            signup_date: None,
            birth_date: None,
            email_opt_in: true,
            consent_updated_at: Some(now),
            first_seen: Some(now),
            channels: "web".into(),
            active: true,
            loaded_at: now,
        }],
    )
    .unwrap();
    let marketer = s.token("mark", Role::Marketer);
    let (_, body) = s.gql(
        Some(&marketer),
        "mutation($input: SurveyInput!) { createSurvey(input: $input) { id } }",
        json!({"input": {
            "name": "Your order from Shop",
            "question": "How likely are you to recommend Shop to a friend or colleague?",
            "csatQuestion": "How satisfied are you with your last order?",
            "commentPrompt": "What is the main reason for your score?",
        }}),
    );
    let survey = body["data"]["createSurvey"]["id"].clone();
    s.gql(
        Some(&marketer),
        "mutation($id: ID!) { createInvitations(surveyId: $id) { created } }",
        json!({"id": survey}),
    );
    let (_, body) = s.gql(
        Some(&marketer),
        "query($id: ID!) { survey(id: $id) { invitations { edges { node { url } } } } }",
        json!({"id": survey}),
    );
    let url = body["data"]["survey"]["invitations"]["edges"][0]["node"]["url"]
        .as_str()
        .expect("an invitation")
        .to_string();
    url.strip_prefix("http://portal.test/s/")
        .unwrap()
        .to_string()
}

#[test]
#[cfg_attr(
    cvm_browser_tests_ignored,
    ignore = "chromium is not installed (apt-get install chromium, or set CVM_CHROMIUM)"
)]
fn a_phone_browser_answers_the_survey_page_and_the_answer_is_stored() {
    let path = chromium().expect(
        "chromium is not installed: the browser test cannot run (apt-get install chromium, or set CVM_CHROMIUM)",
    );
    let s = TestServer::start(Backend::Sqlite);
    let token = invited(&s);

    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(path))
            .headless(true)
            // Containers run tests as root, where Chromium's sandbox cannot start.
            .sandbox(false)
            .window_size(Some((360, 740)))
            .idle_browser_timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    )
    .unwrap();
    let tab = browser.new_tab().unwrap();
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width: 360,
        height: 740,
        device_scale_factor: 2.0,
        mobile: true,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .unwrap();
    tab.navigate_to(&format!("{}/s/{token}", s.base))
        .unwrap()
        .wait_until_navigated()
        .unwrap();

    // The whole 0-10 scale fits the phone's width, each target at least 44 px.
    let layout = tab
        .evaluate(
            "JSON.stringify([document.documentElement.scrollWidth, window.innerWidth, \
             ...Array.from(document.querySelectorAll('.nps label')).map(l => Math.round(Math.min(l.getBoundingClientRect().width, l.getBoundingClientRect().height)))])",
            false,
        )
        .unwrap()
        .value
        .unwrap();
    let sizes: Vec<i64> = serde_json::from_str(layout.as_str().unwrap()).unwrap();
    assert_eq!(sizes[0], sizes[1], "no horizontal scrolling: {sizes:?}");
    assert_eq!(sizes.len(), 2 + 11);
    assert!(
        sizes[2..].iter().all(|&s| s >= 44),
        "44 px targets: {sizes:?}"
    );

    tab.find_element("label[for=score-9]")
        .unwrap()
        .click()
        .unwrap();
    tab.find_element("label[for=csat-4]")
        .unwrap()
        .click()
        .unwrap();
    tab.find_element("#comment").unwrap().click().unwrap();
    tab.type_str("Fast delivery & friendly <staff>").unwrap();
    // Back to the top for the picture of the filled form.
    tab.evaluate(
        "document.activeElement.blur(); window.scrollTo(0, 0)",
        false,
    )
    .unwrap();
    if std::env::var_os("CVM_UPDATE_SCREENSHOT").is_some() {
        // The whole page, down to the submit button, as a phone shows it scrolled.
        let height = tab
            .evaluate("document.documentElement.scrollHeight", false)
            .unwrap()
            .value
            .and_then(|v| v.as_f64())
            .unwrap();
        let png = tab
            .call_method(Page::CaptureScreenshot {
                format: Some(Page::CaptureScreenshotFormatOption::Png),
                quality: None,
                clip: Some(Page::Viewport {
                    x: 0.0,
                    y: 0.0,
                    width: 360.0,
                    height,
                    scale: 1.0,
                }),
                from_surface: Some(true),
                capture_beyond_viewport: Some(true),
                optimize_for_speed: None,
            })
            .unwrap()
            .data;
        let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, png).unwrap();
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/survey-page.png");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, png).unwrap();
        eprintln!("saved {}", out.display());
    }
    tab.find_element("button[type=submit]")
        .unwrap()
        .click()
        .unwrap();
    // Only the thank-you page links back to the form.
    tab.wait_for_element("a[href^='../']").unwrap();
    assert!(
        tab.get_url().ends_with(&format!("/s/{token}/thanks")),
        "{}",
        tab.get_url()
    );
    assert!(tab.get_content().unwrap().contains("9 out of 10"));

    let mut c = DbConnection::connect(&s.db.url).unwrap();
    let stored: Vec<(i32, Option<i32>, Option<String>)> =
        cvm_shared::with_backend!(&mut c, c => answers::table
        .select((answers::score, answers::csat, answers::comment))
        .load(c))
        .unwrap();
    assert_eq!(
        stored,
        [(
            9,
            Some(4),
            Some("Fast delivery & friendly <staff>".to_string())
        )]
    );
}
