//! Protection of the public routes: a per-client-IP rate limit (token
//! bucket: `portal.rate_limit` requests per second, bursts of 5×) and the
//! responses that refuse a request (429, 413) in the contract's shape.
//!
//! The limit applies to the customers' routes (`/s/*`, `/u/*`) and to
//! `/graphql` requests without a staff token; a request with a valid staff
//! token is never limited (staff scripts page through thousands of
//! customers). The client is the TCP peer: behind a reverse proxy every
//! request comes from the proxy, so limit there instead (the README says how).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::graphql::errors::{ApiError, ErrorCode};

/// Bursts allowed, as a multiple of the per-second rate (portal-api.md).
pub const BURST_FACTOR: f64 = 5.0;

/// Forget idle clients every this many checks (their buckets are full again).
const SWEEP_EVERY: u64 = 4096;

/// The per-client-IP limit of the public routes (None inside: off).
pub struct RateLimit {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
}

impl RateLimit {
    /// `per_second` requests per second per IP with bursts of 5×; 0 turns the limit off.
    pub fn new(per_second: f64) -> RateLimit {
        let limiter = (per_second.is_finite() && per_second > 0.0).then(|| {
            let burst = NonZeroU32::new((per_second * BURST_FACTOR).ceil().min(1e9) as u32)
                .unwrap_or(NonZeroU32::MIN);
            let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(burst);
            RateLimiter::keyed(quota)
        });
        RateLimit {
            limiter,
            checks: AtomicU64::new(0),
        }
    }

    /// Ok when `ip` may make one more request now; else how long until it may.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The `Retry-After` value (whole seconds, at least 1) of a wait.
fn retry_after(wait: Duration) -> String {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
        .to_string()
}

/// 429 for a GraphQL client: the contract's error shape, code `RATE_LIMITED`.
pub fn graphql_too_many(wait: Duration) -> HttpResponse {
    let body = ApiError::new(
        ErrorCode::RateLimited,
        "too many requests from this address; retry after the Retry-After seconds",
    )
    .into_response();
    HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
        .insert_header((header::RETRY_AFTER, retry_after(wait)))
        .json(body)
}

/// 429 for a person on a page: plain text they can read.
pub fn page_too_many(wait: Duration) -> HttpResponse {
    HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
        .insert_header((header::RETRY_AFTER, retry_after(wait)))
        .content_type("text/plain; charset=utf-8")
        .body("Too many requests from your network. Please wait a moment and try again.\n")
}

/// A GraphQL error answered with an HTTP status of its own (413, 400, 415).
pub fn graphql_refused(status: StatusCode, code: ErrorCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(ApiError::new(code, message).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_five_seconds_of_burst_then_waits() {
        let limit = RateLimit::new(2.0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..10 {
            assert!(limit.check(a).is_ok());
        }
        let wait = limit.check(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limit.check(b).is_ok(), "another client has its own bucket");
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limit = RateLimit::new(0.0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..10_000).all(|_| limit.check(a).is_ok()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::from_millis(1)), "1");
        assert_eq!(retry_after(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after(Duration::ZERO), "1");
    }
}
