//! Campaign mail: templates (checked when a campaign is saved, rendered per
//! recipient), the audience's exclusions, freezing the audience into the
//! outbox, the messages with their compliance headers, the transports
//! (SMTP or files) and the background sender that works through the outbox.

pub mod audience;
pub mod config;
pub mod context;
pub mod freeze;
pub mod links;
pub mod message;
pub mod sender;
pub mod template;
pub mod transport;
