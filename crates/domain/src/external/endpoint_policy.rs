//! Where the daemon may connect when a user gives it an endpoint (external buckets): not to
//! loopback, private, link-local (cloud metadata at 169.254.169.254 included), unspecified or
//! other non-public addresses, nor to the daemon's own bucket ports, unless
//! `KALPANA_EXTERNAL_ALLOW` lets an address range or host name through.
//!
//! Guarantee: the check runs on every address a host name resolves to when the client connects
//! (see `kalpana_s3_ops::RemoteOptions`), so a name that resolves to a public address when
//! checked and to 127.0.0.1 when used (DNS rebinding) is still refused.

use std::net::IpAddr;
use std::sync::Arc;

use kalpana_manager_core::PortRange;

use crate::error::{Error, Result};

/// One entry of `KALPANA_EXTERNAL_ALLOW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// Addresses in `addr/prefix`.
    Cidr(IpAddr, u8),
    /// A host name, allowed whatever it resolves to.
    Host(String),
}

impl AllowEntry {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (AllowEntry::Cidr(IpAddr::V4(net), len), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (AllowEntry::Cidr(IpAddr::V6(net), len), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Parses `10.0.0.0/8, 127.0.0.2/32, minio.internal`.
pub fn parse_allow_list(list: &str) -> std::result::Result<Vec<AllowEntry>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            if let Some((addr, len)) = e.split_once('/') {
                let addr: IpAddr = addr.parse().map_err(|_| format!("{e:?} is not a CIDR"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let len: u8 = len
                    .parse()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("{e:?} has a bad prefix length"))?;
                Ok(AllowEntry::Cidr(addr, len))
            } else if let Ok(addr) = e.parse::<IpAddr>() {
                Ok(AllowEntry::Cidr(
                    addr,
                    if addr.is_ipv4() { 32 } else { 128 },
                ))
            } else if e
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                Ok(AllowEntry::Host(e.to_ascii_lowercase()))
            } else {
                Err(format!("{e:?} is neither a CIDR nor a host name"))
            }
        })
        .collect()
}

/// Whether `ip` is an address on the public internet (what external endpoints may use).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // Only global unicast (2000::/3) is public; inside it, ranges that are not.
            (s[0] & 0xe000) == 0x2000
                && !((s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                    || (s[0] & 0xfff0) == 0x3ff0 // documentation 3fff::/20
                    || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32: a tunnel to anywhere
                    || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0) // benchmarking
                    || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010) // ORCHID
                    || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0020)) // ORCHIDv2
        }
    }
}

/// The IPv4 address an IPv6 address carries and reaches, in every form that leads to it:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), IPv4-translated
/// (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`, and anything in the local-use
/// `64:ff9b:1::/48`, taken as 0.0.0.0 since where it embeds the address is the network's
/// choice) and 6to4 (`2002:AABB:CCDD::`). `::` and `::1` are not taken for IPv4.
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    use std::net::Ipv4Addr;
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 1, ..] => Some(Ipv4Addr::UNSPECIFIED),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// The policy of one daemon.
#[derive(Debug, Clone)]
pub struct EndpointPolicy {
    allow: Vec<AllowEntry>,
    own_ports: PortRange,
}

/// An endpoint that passed the static checks: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEndpoint {
    /// The origin to use, normalised (`https://host[:port]`, no default port, no path).
    pub origin: String,
    /// Whether the host was allowed by name (then any address it resolves to is accepted).
    pub host_allowed: bool,
}

impl EndpointPolicy {
    /// The policy from the allow list and the daemon's own port range.
    pub fn new(allow: Vec<AllowEntry>, own_ports: PortRange) -> Self {
        EndpointPolicy { allow, own_ports }
    }

    /// Whether the daemon may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        // An allowed IPv4 range also lets the same addresses through in IPv6 dress.
        let v4 = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        is_public(ip)
            || self
                .allow
                .iter()
                .any(|a| a.contains(ip) || v4.is_some_and(|v4| a.contains(v4)))
    }

    /// Checks an endpoint URL before anything connects to it: http(s), a host, no credentials,
    /// path or query, not one of the daemon's own bucket ports, and an address literal only if
    /// allowed. Host names are checked again on every resolution.
    pub fn check(&self, endpoint: &str) -> Result<CheckedEndpoint> {
        let refuse = |why: String| Error::EndpointNotAllowed(format!("endpoint {endpoint}: {why}"));
        let url = url::Url::parse(endpoint)
            .map_err(|e| Error::Invalid(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Invalid(format!(
                "endpoint {endpoint:?} must be an http or https URL"
            )));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
            || !matches!(url.path(), "" | "/")
        {
            return Err(Error::Invalid(format!(
                "endpoint {endpoint:?} must be an origin only (scheme, host, port): no credentials, path or query"
            )));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        if self.own_ports.contains(port) {
            return Err(refuse(format!(
                "port {port} is in this daemon's bucket port range"
            )));
        }
        let (host_allowed, literal) = match url.host() {
            Some(url::Host::Domain(name)) => {
                let name = name.to_ascii_lowercase();
                (
                    self.allow
                        .iter()
                        .any(|a| matches!(a, AllowEntry::Host(h) if *h == name)),
                    None,
                )
            }
            Some(url::Host::Ipv4(ip)) => (false, Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (false, Some(IpAddr::V6(ip))),
            None => return Err(Error::Invalid(format!("endpoint {endpoint:?} has no host"))),
        };
        if let Some(ip) = literal {
            if !self.allows(ip) {
                return Err(refuse(format!(
                    "{ip} is not a public address (allow it with KALPANA_EXTERNAL_ALLOW)"
                )));
            }
        }
        let mut origin = url.origin().ascii_serialization();
        if origin.ends_with(":443") && url.scheme() == "https" {
            origin.truncate(origin.len() - 4);
        }
        Ok(CheckedEndpoint {
            origin,
            host_allowed,
        })
    }

    /// The address filter a client for `checked` connects through.
    pub fn filter(&self, checked: &CheckedEndpoint) -> kalpana_s3_ops::AddressFilter {
        if checked.host_allowed {
            return Arc::new(|_| true);
        }
        let policy = self.clone();
        Arc::new(move |ip| policy.allows(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &str) -> EndpointPolicy {
        EndpointPolicy::new(
            parse_allow_list(allow).expect("allow list"),
            PortRange {
                start: 40000,
                end: 40999,
            },
        )
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            // Loopback and private IPv4 inside IPv6, in every form that carries it.
            "::7f00:1",
            "::ffff:0:7f00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::7f00:1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "::a00:1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "3fff::1",
            "fec0::1",
            "100::1",
            "ff02::1",
            "::",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "52.216.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:101:101::1",
        ] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn literal_endpoints_follow_the_allow_list() {
        let p = policy("");
        for e in [
            "http://127.0.0.1:9000",
            "http://169.254.169.254",
            "http://[::1]:9000",
            "http://10.0.0.5:9000",
        ] {
            assert!(
                matches!(p.check(e), Err(Error::EndpointNotAllowed(_))),
                "{e}"
            );
        }
        let p = policy("127.0.0.2/32, minio.internal");
        assert!(p.check("http://127.0.0.2:9000").is_ok());
        assert!(p.check("http://127.0.0.1:9000").is_err());
        assert!(
            p.check("http://minio.internal:9000")
                .expect("named")
                .host_allowed
        );
        assert!(
            !p.check("https://s3.amazonaws.com")
                .expect("public")
                .host_allowed
        );
    }

    #[test]
    fn the_daemons_own_ports_and_odd_urls_are_refused() {
        let p = policy("127.0.0.0/8");
        assert!(matches!(
            p.check("http://127.0.0.1:40001"),
            Err(Error::EndpointNotAllowed(_))
        ));
        for e in [
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/bucket",
            "https://example.com?x=1",
            "not a url",
        ] {
            assert!(matches!(p.check(e), Err(Error::Invalid(_))), "{e}");
        }
        assert_eq!(
            p.check("https://example.com:443/").expect("ok").origin,
            "https://example.com"
        );
    }

    #[test]
    fn allow_lists_parse_or_say_why_not() {
        assert_eq!(
            parse_allow_list("10.0.0.0/8,host.example").expect("ok"),
            vec![
                AllowEntry::Cidr("10.0.0.0".parse().expect("ip"), 8),
                AllowEntry::Host("host.example".into())
            ]
        );
        assert!(parse_allow_list("10.0.0.0/33").is_err());
        assert!(parse_allow_list("bad host!").is_err());
    }
}
