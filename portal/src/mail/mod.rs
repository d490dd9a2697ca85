//! Campaign mail: templates (checked when a campaign is saved, rendered per
//! recipient) and the audience's exclusions (who gets a message, and why
//! the others do not). The outbox sender and its transports build on these.

pub mod audience;
pub mod context;
pub mod template;
