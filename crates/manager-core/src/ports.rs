//! Host port allocation: pick ports from the configured range that nobody has reserved and that
//! no process on this host listens on.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::str::FromStr;

use rand::Rng;

use crate::error::{Error, Result};

/// An inclusive range of host ports, e.g. `40000-50000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port of the range.
    pub start: u16,
    /// Last port of the range (inclusive).
    pub end: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// A range always holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            start: 40000,
            end: 50000,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for PortRange {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad =
            || Error::InvalidConfig(format!("port range {s:?} is not of the form 40000-50000"));
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let start: u16 = a.trim().parse().map_err(|_| bad())?;
        let end: u16 = b.trim().parse().map_err(|_| bad())?;
        if start == 0 || start > end {
            return Err(bad());
        }
        Ok(PortRange { start, end })
    }
}

/// Chooses free host ports for new buckets.
///
/// Guarantees: the ports returned are distinct, inside the range, not in `reserved`, and could be
/// bound on the bind address at the moment they were chosen. Caveat: another process may take a
/// port between the check and Docker's bind; the caller persists the reservation and retries.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    range: PortRange,
    bind_ip: IpAddr,
}

impl PortAllocator {
    /// An allocator over `range` that probes ports on `bind_ip`.
    pub fn new(range: PortRange, bind_ip: IpAddr) -> Self {
        PortAllocator { range, bind_ip }
    }

    /// The configured range.
    pub fn range(&self) -> PortRange {
        self.range
    }

    /// Picks `count` ports, starting the walk at a random place so that concurrent daemons and
    /// freshly released ports do not collide on the lowest numbers.
    pub fn allocate(&self, count: usize, reserved: &HashSet<u16>) -> Result<Vec<u16>> {
        let offset = rand::rng().random_range(0..self.range.len());
        pick_ports(self.range, offset, count, |p| {
            !reserved.contains(&p) && self.is_bindable(p)
        })
        .ok_or_else(|| Error::PortsExhausted(self.range.to_string()))
    }

    fn is_bindable(&self, port: u16) -> bool {
        // A listener on the wildcard address also makes a specific-address bind fail, so one
        // probe on the address Docker will bind covers both.
        TcpListener::bind(SocketAddr::new(self.bind_ip, port)).is_ok()
    }
}

/// Walks `range` once from `offset` (wrapping) and returns the first `count` ports `usable`
/// accepts, or `None` when there are not that many.
pub fn pick_ports(
    range: PortRange,
    offset: usize,
    count: usize,
    mut usable: impl FnMut(u16) -> bool,
) -> Option<Vec<u16>> {
    let len = range.len();
    let mut picked = Vec::with_capacity(count);
    if count == 0 {
        return Some(picked);
    }
    for i in 0..len {
        let idx = (offset + i) % len;
        let port = range.start + u16::try_from(idx).ok()?;
        if usable(port) {
            picked.push(port);
            if picked.len() == count {
                return Some(picked);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn parses_ranges() {
        let r: PortRange = "40000-40009".parse().expect("valid");
        assert_eq!(r.len(), 10);
        assert!(r.contains(40009) && !r.contains(40010));
        for bad in ["", "40000", "5-1", "0-10", "a-b", "40000-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn picks_distinct_unreserved_ports_and_wraps() {
        let range = PortRange {
            start: 100,
            end: 109,
        };
        let reserved: HashSet<u16> = [107, 108, 100].into();
        let got = pick_ports(range, 7, 3, |p| !reserved.contains(&p)).expect("enough ports");
        assert_eq!(got, vec![109, 101, 102]);
        assert_eq!(pick_ports(range, 0, 8, |p| !reserved.contains(&p)), None);
    }

    #[test]
    fn pairs_stay_distinct_across_many_allocations() {
        let alloc = PortAllocator::new(
            PortRange {
                start: 41000,
                end: 41999,
            },
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        );
        let mut reserved = HashSet::new();
        for _ in 0..20 {
            let pair = alloc.allocate(2, &reserved).expect("free ports");
            assert_eq!(pair.len(), 2);
            assert_ne!(pair[0], pair[1]);
            for p in pair {
                assert!(reserved.insert(p), "port {p} handed out twice");
            }
        }
    }

    #[test]
    fn skips_ports_another_process_listens_on() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let busy = listener.local_addr().expect("addr").port();
        let alloc = PortAllocator::new(
            PortRange {
                start: busy,
                end: busy,
            },
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        );
        assert!(matches!(
            alloc.allocate(1, &HashSet::new()),
            Err(Error::PortsExhausted(_))
        ));
    }
}
