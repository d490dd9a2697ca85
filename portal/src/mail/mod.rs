//! Campaign mail: templates (checked when a campaign is saved, rendered per
//! recipient). The outbox sender and its transports build on this.

pub mod template;
