//! `--cgminer-api-allow`: who may do what, in cgminer's `--api-allow` form
//! (`W:127.0.0.1/32,R:10.0.0/24,192.168.1.5`). `W:` entries may use the
//! privileged commands; `R:` and bare entries only read. The first entry
//! that matches an address decides, as in cgminer.
//!
//! Where cgminer answers only the listed addresses, hashrig does so too as
//! soon as the list has a read-only entry. A list of `W:` entries alone
//! grants privilege and leaves every other address that reaches the port
//! (chosen with `--cgminer-api`) its reads: farm tools that only poll keep
//! working while control stays with the listed hosts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an address may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Not answered at all: the list names who may connect, not this one.
    None,
    /// Read-only commands.
    Read,
    /// Every command, privileged ones included.
    Write,
}

/// A bad `--cgminer-api-allow` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllowListError {
    /// A group other than `W` or `R`.
    #[error("{entry:?}: group {group:?} is not W or R (hashrig has no other API groups)")]
    Group {
        /// The list entry, as given.
        entry: String,
        /// The group letter given.
        group: String,
    },
    /// An entry that is not an address.
    #[error("{entry:?}: not an IPv4 or IPv6 address")]
    Address {
        /// The list entry, as given.
        entry: String,
    },
    /// A prefix length out of range.
    #[error("{entry:?}: prefix {prefix:?} is not 0 to {max}")]
    Prefix {
        /// The list entry, as given.
        entry: String,
        /// The prefix length given.
        prefix: String,
        /// The largest allowed.
        max: u8,
    },
    /// An empty list.
    #[error("the list is empty")]
    Empty,
    /// A list longer than hashrig takes.
    #[error("more than {max} entries")]
    TooLong {
        /// The largest allowed.
        max: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    write: bool,
    network: IpAddr,
    prefix: u8,
}

impl Entry {
    fn matches(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A parsed allow list. The default (no flag) gives every address that
/// reaches the port read access and none privilege.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

/// An operator's list is short; this bounds a config file's.
const MAX_ENTRIES: usize = 256;

impl AllowList {
    /// What `ip` may do.
    pub fn access(&self, ip: IpAddr) -> Access {
        let ip = ip.to_canonical();
        if let Some(entry) = self.entries.iter().find(|e| e.matches(ip)) {
            return if entry.write {
                Access::Write
            } else {
                Access::Read
            };
        }
        if self.entries.iter().any(|e| !e.write) {
            Access::None
        } else {
            Access::Read
        }
    }

    /// Whether any address may use the privileged commands.
    pub fn grants_privilege(&self) -> bool {
        self.entries.iter().any(|e| e.write)
    }
}

impl std::str::FromStr for AllowList {
    type Err = AllowListError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let entries = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()?;
        if entries.is_empty() {
            return Err(AllowListError::Empty);
        }
        if entries.len() > MAX_ENTRIES {
            return Err(AllowListError::TooLong { max: MAX_ENTRIES });
        }
        Ok(AllowList { entries })
    }
}

fn parse_entry(entry: &str) -> Result<Entry, AllowListError> {
    let (write, rest) = match entry.split_once(':') {
        // An IPv6 address has colons of its own: a group is one letter.
        Some((group, rest))
            if group.len() == 1 && group.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            match group.to_ascii_uppercase().as_str() {
                "W" => (true, rest),
                "R" => (false, rest),
                _ => {
                    return Err(AllowListError::Group {
                        entry: entry.to_owned(),
                        group: group.to_owned(),
                    })
                }
            }
        }
        _ => (false, entry),
    };
    let (address, prefix) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let network = parse_address(address).ok_or_else(|| AllowListError::Address {
        entry: entry.to_owned(),
    })?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    let prefix =
        match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                AllowListError::Prefix {
                    entry: entry.to_owned(),
                    prefix: p.to_owned(),
                    max,
                }
            })?,
        };
    Ok(Entry {
        write,
        network,
        prefix,
    })
}

/// An address, IPv4 padded with `.0`s as cgminer does (`10.0.0` is
/// `10.0.0.0`, `0` is `0.0.0.0`).
fn parse_address(text: &str) -> Option<IpAddr> {
    if text.contains(':') {
        return text.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(&parts) {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cgminer_forms_parse_and_match() {
        let list: AllowList = "W:127.0.0.1/32, R:10.0.0/24 ,192.168.1.5,W:fd00::/8"
            .parse()
            .unwrap();
        assert_eq!(list.access(ip("127.0.0.1")), Access::Write);
        assert_eq!(list.access(ip("::ffff:127.0.0.1")), Access::Write);
        assert_eq!(list.access(ip("10.0.0.77")), Access::Read);
        assert_eq!(list.access(ip("192.168.1.5")), Access::Read);
        assert_eq!(list.access(ip("fd12::1")), Access::Write);
        // Read-only entries make it a list of who may connect at all.
        assert_eq!(list.access(ip("10.0.1.1")), Access::None);
        assert_eq!(list.access(ip("127.0.0.2")), Access::None);
        assert!(list.grants_privilege());
    }

    #[test]
    fn privilege_only_lists_leave_reads_open() {
        let list: AllowList = "W:127.0.0.1".parse().unwrap();
        assert_eq!(list.access(ip("127.0.0.1")), Access::Write);
        assert_eq!(list.access(ip("127.0.0.2")), Access::Read);
        let everyone: AllowList = "W:0/0".parse().unwrap();
        assert_eq!(everyone.access(ip("203.0.113.9")), Access::Write);
        assert_eq!(AllowList::default().access(ip("127.0.0.1")), Access::Read);
        assert!(!AllowList::default().grants_privilege());
    }

    #[test]
    fn bad_entries_are_named() {
        for (text, needle) in [
            ("P:127.0.0.1", "group \"P\""),
            ("W:127.0.0.300", "not an IPv4"),
            ("W:1.2.3.4.5", "not an IPv4"),
            ("W:10.0.0.0/33", "prefix \"33\" is not 0 to 32"),
            ("W:::1/129", "not 0 to 128"),
            ("W:host.example", "not an IPv4"),
            (" , ", "empty"),
        ] {
            let error = text.parse::<AllowList>().unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
