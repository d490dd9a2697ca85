//! Campaign templates: subject, text part and HTML part in minijinja.
//!
//! Strict on two levels. Before a campaign is saved, every variable any of
//! its templates mentions, in any branch, is checked against what a message
//! provides ([`VARIABLES`]): a typo is `BAD_USER_INPUT` at
//! `createCampaign`/`updateCampaign`, never a broken email at send time.
//! While rendering, an undefined value is an error, never an empty string.
//! The HTML part escapes every value (autoescape); the subject is one header
//! line (line breaks in values become spaces).

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

/// The customer fields a template may use (`customer.*`), as in GraphQL's `Customer`, snake_case.
pub const CUSTOMER_FIELDS: &[&str] = &[
    "id",
    "is_guest",
    "email",
    "first_name",
    "last_name",
    "country",
    "email_opt_in",
    "active",
    "channels",
];

/// The score fields a template may use (`score.*`), as in GraphQL's `Score`, snake_case.
pub const SCORE_FIELDS: &[&str] = &[
    "as_of",
    "orders",
    "frequency",
    "total_revenue",
    "rfm_segment",
    "r_score",
    "f_score",
    "m_score",
    "p_alive",
    "expected_purchases_90d",
    "clv_12m",
    "churn_risk",
    "lifecycle_stage",
    "value_tier",
    "loyalty_index",
    "nps_last",
    "nps_class",
];

/// The plain variables (portal-api.md, "Template variables").
pub const VARIABLES: &[&str] = &["offer_code", "survey_url", "unsubscribe_url"];

/// minijinja's global functions, which templates may call.
const BUILTIN_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug"];

/// Why a campaign's templates cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse.
    #[error("{part}: {message}")]
    Syntax {
        /// `subject`, `textTemplate` or `htmlTemplate`.
        part: &'static str,
        /// minijinja's message (with the line).
        message: String,
    },
    /// The template names a variable no message has.
    #[error("{part}: unknown variable {name:?}; the variables are customer.{{{}}}, score.{{{}}}, {}, campaign.name", CUSTOMER_FIELDS.join(","), SCORE_FIELDS.join(","), VARIABLES.join(", "))]
    UnknownVariable {
        /// `subject`, `textTemplate` or `htmlTemplate`.
        part: &'static str,
        /// The variable as written, e.g. `customer.firstname`.
        name: String,
    },
    /// Rendering failed (e.g. a filter applied to a value of the wrong type).
    #[error("{part}: {message}")]
    Render {
        /// `subject`, `textTemplate` or `htmlTemplate`.
        part: &'static str,
        /// minijinja's message.
        message: String,
    },
}

/// A campaign's templates, parsed and checked.
pub struct Templates {
    env: Environment<'static>,
    html: bool,
}

/// One message's rendered parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line.
    pub subject: String,
    /// The text part.
    pub text: String,
    /// The HTML part, when the campaign has one.
    pub html: Option<String>,
}

const SUBJECT: &str = "subject";
const TEXT: &str = "textTemplate";
const HTML: &str = "htmlTemplate";

fn known(name: &str) -> bool {
    match name.split_once('.') {
        Some(("customer", field)) => CUSTOMER_FIELDS.contains(&field),
        Some(("score", field)) => SCORE_FIELDS.contains(&field),
        Some(("campaign", field)) => field == "name",
        Some(_) => false,
        None => {
            VARIABLES.contains(&name)
                || BUILTIN_GLOBALS.contains(&name)
                || matches!(name, "customer" | "score" | "campaign")
        }
    }
}

impl Templates {
    /// Parses and checks `subject`, `text` and `html`.
    pub fn new(subject: &str, text: &str, html: Option<&str>) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Only the HTML part escapes; the names below are ours, not the user's.
        env.set_auto_escape_callback(|name| {
            if name == HTML {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let parts = [(SUBJECT, Some(subject)), (TEXT, Some(text)), (HTML, html)];
        for (part, source) in parts {
            let Some(source) = source else { continue };
            env.add_template_owned(part, source.to_string())
                .map_err(|e| TemplateError::Syntax {
                    part,
                    message: e.to_string(),
                })?;
            let template = env.get_template(part).map_err(|e| TemplateError::Syntax {
                part,
                message: e.to_string(),
            })?;
            let mut names: Vec<String> = template.undeclared_variables(true).into_iter().collect();
            names.sort();
            if let Some(name) = names.into_iter().find(|n| !known(n)) {
                return Err(TemplateError::UnknownVariable { part, name });
            }
        }
        Ok(Templates {
            env,
            html: html.is_some(),
        })
    }

    /// Renders one message from its context (see [`VARIABLES`]).
    pub fn render(&self, context: &Value) -> Result<Rendered, TemplateError> {
        let one = |part: &'static str| {
            self.env
                .get_template(part)
                .and_then(|t| t.render(context))
                .map_err(|e| TemplateError::Render {
                    part,
                    message: e.to_string(),
                })
        };
        let subject = one(SUBJECT)?
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Rendered {
            subject,
            text: one(TEXT)?,
            html: if self.html { Some(one(HTML)?) } else { None },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use minijinja::context;

    fn ctx(first_name: &str) -> Value {
        context! {
            customer => context! { first_name => first_name, id => "c1" },
            score => context! { clv_12m => 120.5, rfm_segment => "At Risk" },
            offer_code => "BACK10",
            survey_url => "https://shop.example/s/t",
            unsubscribe_url => "https://shop.example/u/t",
            campaign => context! { name => "Win back" },
        }
    }

    #[test]
    fn an_unknown_variable_in_any_branch_is_refused_before_saving() {
        let e = Templates::new(
            "Hi",
            "{% if score.clv_12m > 100 %}{{ customer.firstname }}{% endif %}",
            None,
        )
        .err();
        assert_eq!(
            e,
            Some(TemplateError::UnknownVariable {
                part: "textTemplate",
                name: "customer.firstname".into()
            })
        );
        assert!(matches!(
            Templates::new("{{ coupon }}", "x", None),
            Err(TemplateError::UnknownVariable {
                part: "subject",
                ..
            })
        ));
        assert!(matches!(
            Templates::new("x", "{% if %}", None),
            Err(TemplateError::Syntax {
                part: "textTemplate",
                ..
            })
        ));
    }

    #[test]
    fn values_are_escaped_in_html_only_and_the_subject_stays_one_line() {
        let t = Templates::new(
            "Hello {{ customer.first_name }}",
            "Dear {{ customer.first_name }}, use {{ offer_code }}: {{ unsubscribe_url }}",
            Some("<p>Dear {{ customer.first_name }}</p>"),
        )
        .unwrap();
        let r = t.render(&ctx("<b>Ann</b>\r\nBcc: x@evil.example")).unwrap();
        assert_eq!(r.subject, "Hello <b>Ann</b> Bcc: x@evil.example");
        assert!(r.text.starts_with("Dear <b>Ann</b>"));
        assert!(r.text.ends_with("use BACK10: https://shop.example/u/t"));
        let html = r.html.unwrap();
        assert!(html.starts_with("<p>Dear &lt;b&gt;Ann&lt;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }

    #[test]
    fn a_missing_value_is_an_error_not_an_empty_string() {
        let t = Templates::new("x", "{{ score.loyalty_index }}", None).unwrap();
        assert!(matches!(
            t.render(&ctx("Ann")),
            Err(TemplateError::Render {
                part: "textTemplate",
                ..
            })
        ));
    }
}
