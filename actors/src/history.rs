//! State machines and their history (DOMAIN.md §State machines), shared by
//! every stateful object: cardholder, card, top-up, order, withdrawal.
//!
//! Each status enum is declared with [`state_machine!`]: its API strings and
//! the table of allowed edges, in one place. A change goes through
//! [`Stateful::transition`] (or the card's own, which names the action): the
//! edge is checked against the table, then status, `status_history` and
//! `version` move together; any other edge is a `Reject::InvalidState` that
//! names the current state. The history is typed ([`History<S>`]); on disk its
//! statuses are their API strings, the layout records were first written
//! with, so records of older data dirs read as they are (golden test below).

use std::fmt;

use pelago_storage::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Reject;

crate::wire_enum! {
    /// Who caused a status change.
    pub enum Source {
        Merchant = "merchant",
        Channel = "channel",
        Gateway = "gateway",
        Operator = "operator",
        System = "system",
    }
}

/// A status of one state machine.
pub trait Status: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// What the object is called in a refusal (`"top-up"`).
    const OBJECT: &'static str;
    /// Every status, in declaration order.
    const ALL: &'static [Self];
    /// The API string (`"pending_payment"`).
    fn as_str(self) -> &'static str;
    /// The edges of DOMAIN.md's table; anything else is 409 `invalid_state`.
    fn can_become(self, to: Self) -> bool;

    fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == raw)
    }
}

/// Declares a plain enum (no edges) with its API strings: `ALL`, `as_str`
/// and `parse`, the one place each string is spelled.
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == raw)
            }
        }
    };
}

/// Declares a status enum, its API strings and its allowed edges: each
/// status with the statuses it may move to (`Active = "active" -> Frozen |
/// Deleted,`).
#[macro_export]
macro_rules! state_machine {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($object:literal) {
            $($variant:ident = $text:literal $(-> $($to:ident)|+)?),+ $(,)?
        }
    ) => {
        $crate::state_machine!(@declare [$(#[$meta])*] $name $object [$($variant = $text),+] |from, to| {
            match from {
                $($name::$variant => $crate::state_machine!(@targets to $name [$($($to)|+)?])),+
            }
        });
    };
    (@targets $to:ident $name:ident []) => {
        false
    };
    (@targets $to:ident $name:ident [$($target:ident)|+]) => {
        matches!($to, $($name::$target)|+)
    };
    (
        @declare [$(#[$meta:meta])*] $name:ident $object:literal [$($variant:ident = $text:literal),+]
        |$from:ident, $to:ident| $can_become:block
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                <Self as $crate::history::Status>::as_str(self)
            }

            pub fn parse(raw: &str) -> Option<Self> {
                <Self as $crate::history::Status>::parse(raw)
            }

            pub fn can_become(self, to: Self) -> bool {
                <Self as $crate::history::Status>::can_become(self, to)
            }
        }

        impl $crate::history::Status for $name {
            const OBJECT: &'static str = $object;
            const ALL: &'static [Self] = &[$($name::$variant),+];

            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            fn can_become(self, $to: Self) -> bool {
                let $from = self;
                $can_become
            }
        }
    };
}

/// One status change: `from` is `None` for the creation of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange<S> {
    pub from: Option<S>,
    pub to: S,
    pub reason: Option<String>,
    pub source: Source,
    pub at: Timestamp,
}

/// The stored layout of a change: statuses as their API strings.
#[derive(Serialize, Deserialize)]
struct StoredChange<'a> {
    from: Option<std::borrow::Cow<'a, str>>,
    to: std::borrow::Cow<'a, str>,
    reason: Option<String>,
    source: Source,
    at: Timestamp,
}

impl<S: Status> Serialize for StatusChange<S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        StoredChange {
            from: self.from.map(|s| s.as_str().into()),
            to: self.to.as_str().into(),
            reason: self.reason.clone(),
            source: self.source,
            at: self.at,
        }
        .serialize(serializer)
    }
}

impl<'de, S: Status> Deserialize<'de> for StatusChange<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredChange::deserialize(deserializer)?;
        let parse = |raw: &str| {
            S::parse(raw).ok_or_else(|| {
                serde::de::Error::custom(format!("unknown {} status `{raw}` in its history", S::OBJECT))
            })
        };
        Ok(StatusChange {
            from: stored.from.as_deref().map(parse).transpose()?,
            to: parse(&stored.to)?,
            reason: stored.reason,
            source: stored.source,
            at: stored.at,
        })
    }
}

/// At most this many changes are kept per object (oldest dropped first), so a
/// card frozen and unfrozen forever cannot grow without bound.
pub const MAX_HISTORY: usize = 64;

/// The status history of one object, oldest first, bounded by [`MAX_HISTORY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "S: Status", transparent)]
pub struct History<S>(Vec<StatusChange<S>>);

impl<S: Status> History<S> {
    /// The history of an object created in `status`.
    pub fn created(status: S, source: Source, at: Timestamp) -> History<S> {
        History(vec![StatusChange { from: None, to: status, reason: None, source, at }])
    }

    pub fn changes(&self) -> &[StatusChange<S>] {
        &self.0
    }

    fn push(&mut self, change: StatusChange<S>) {
        if self.0.len() >= MAX_HISTORY {
            self.0.remove(0);
        }
        self.0.push(change);
    }
}

/// Checks `from → to` against the table and records it; the caller moves its
/// status and version with it (see [`Stateful::transition`]).
pub fn record<S: Status>(
    history: &mut History<S>,
    from: S,
    to: S,
    reason: Option<String>,
    source: Source,
    at: Timestamp,
) -> Result<(), Reject> {
    if !from.can_become(to) {
        return Err(Reject::state(format!(
            "the {} is {}; it cannot become {}",
            S::OBJECT,
            from.as_str(),
            to.as_str()
        )));
    }
    history.push(StatusChange { from: Some(from), to, reason, source, at });
    Ok(())
}

/// `impl Stateful` for a record whose fields are `status`, `status_history`
/// and `version` (every stateful record here).
#[macro_export]
macro_rules! stateful {
    ($record:ty, $status:ty) => {
        impl $crate::history::Stateful for $record {
            type Status = $status;
            fn state_mut(&mut self) -> (&mut $status, &mut $crate::history::History<$status>, &mut u64) {
                (&mut self.status, &mut self.status_history, &mut self.version)
            }
        }
    };
}

/// An object with a status, its history and a version that move together.
pub trait Stateful {
    type Status: Status;

    /// The status, the history and the version, to be moved together.
    fn state_mut(&mut self) -> (&mut Self::Status, &mut History<Self::Status>, &mut u64);

    /// The checked transition: the edge must be in the table (else 409
    /// `invalid_state` naming the current state, nothing changed); then the
    /// status, its history and the version move.
    fn transition(
        &mut self,
        to: Self::Status,
        reason: Option<String>,
        source: Source,
        at: Timestamp,
    ) -> Result<(), Reject> {
        let (status, history, version) = self.state_mut();
        record(history, *status, to, reason, source, at)?;
        *status = to;
        *version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
