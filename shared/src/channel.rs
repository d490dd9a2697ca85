//! Sales channels and transaction kinds as they appear in the warehouse.

use std::fmt;

/// The channel a consolidated transaction came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// In-store point of sale.
    Pos,
    /// E-commerce web shop.
    Web,
    /// Mobile app.
    App,
    /// Generic `transactions/*.csv` feed from any other system.
    Other,
}

impl Channel {
    /// All channels, in warehouse order.
    pub const ALL: [Channel; 4] = [Channel::Pos, Channel::Web, Channel::App, Channel::Other];

    /// The name written to the warehouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Pos => "pos",
            Channel::Web => "web",
            Channel::App => "app",
            Channel::Other => "other",
        }
    }

    /// Parses a warehouse channel name.
    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether money came in or went back out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TxnKind {
    /// A sale; its amount is >= 0.
    Purchase,
    /// Money returned to the customer; its amount is <= 0.
    Refund,
}

impl TxnKind {
    /// The name written to the warehouse.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnKind::Purchase => "purchase",
            TxnKind::Refund => "refund",
        }
    }

    /// Parses a warehouse kind name.
    pub fn parse(s: &str) -> Option<TxnKind> {
        match s {
            "purchase" => Some(TxnKind::Purchase),
            "refund" => Some(TxnKind::Refund),
            _ => None,
        }
    }
}

impl fmt::Display for TxnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("fax"), None);
    }

    #[test]
    fn kind_names_round_trip() {
        for k in [TxnKind::Purchase, TxnKind::Refund] {
            assert_eq!(TxnKind::parse(k.as_str()), Some(k));
        }
    }
}
