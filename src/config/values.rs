//! Value types of the config file whose parse errors say what was expected.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written as a string with units: `"200ms"`, `"5s"`, `"2m"`,
/// `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }
    pub const fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }
}

impl Deref for Duration {
    type Target = std::time::Duration;
    fn deref(&self) -> &std::time::Duration {
        &self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// An IPv4 or IPv6 address written as a string, e.g. `"10.0.0.10"` or
/// `"2001:db8::10"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ip(pub IpAddr);

impl Deref for Ip {
    type Target = IpAddr;
    fn deref(&self) -> &IpAddr {
        &self.0
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An address and port written as a string: `"10.0.1.10:8080"`, or for
/// IPv6 the address in brackets, `"[2001:db8::21]:8443"` (RFC 3986 §3.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Socket(pub SocketAddr);

impl Deref for Socket {
    type Target = SocketAddr;
    fn deref(&self) -> &SocketAddr {
        &self.0
    }
}

impl fmt::Display for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A range of ports written as a string, e.g. `"1024-65535"` (both ends
/// included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.last) + 1 - usize::from(self.first)
    }

    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParsedString {
            expected: "a port range such as \"1024-65535\" (first and last, first no higher)",
            parse: |s| {
                let (first, last) = s.split_once('-')?;
                let (first, last) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
                (first > 0 && first <= last).then_some(PortRange { first, last })
            },
        })
    }
}

/// Deserializes a string through `parse`, and on failure says what was
/// expected and what was found.
struct ParsedString<T> {
    expected: &'static str,
    parse: fn(&str) -> Option<T>,
}

impl<'de, T> Visitor<'de> for ParsedString<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.parse)(value)
            .ok_or_else(|| E::custom(format!("expected {}, found `{value}`", self.expected)))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParsedString {
            expected: "a duration with units such as \"200ms\", \"5s\" or \"2m\"",
            parse: |s| humantime::parse_duration(s).ok().map(Duration),
        })
    }
}

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParsedString {
            expected: "an IPv4 or IPv6 address such as \"10.0.0.10\" or \"2001:db8::10\"",
            parse: |s| IpAddr::from_str(s).ok().map(Ip),
        })
    }
}

impl<'de> Deserialize<'de> for Socket {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParsedString {
            expected: "an address and port such as \"10.0.1.10:8080\" or \"[2001:db8::21]:8443\"",
            parse: |s| SocketAddr::from_str(s).ok().map(Socket),
        })
    }
}

/// Written back as the string it is read from (`"5s"`, `"10.0.0.10"`).
macro_rules! serialize_as_display {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}

serialize_as_display!(Duration, Ip, Socket, PortRange);
