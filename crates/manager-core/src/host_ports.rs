//! The host's side of bucket ports: Linux hands out ephemeral ports (the local end of outgoing
//! connections) from `ip_local_port_range`, 32768–60999 by default, which overlaps the default
//! bucket range 40000–50000. A port the kernel gave an outgoing connection cannot be bound by
//! Docker's proxy meanwhile. So the range is added to `ip_local_reserved_ports` (the kernel then
//! never picks those ports for outgoing connections; explicit binds still work), and when a
//! port is taken anyway, the process holding it is named.
//!
//! Assumption: the daemon shares the network namespace Docker publishes ports in (the host's).
//! Writing the sysctl needs root; without it the overlap is logged with what to do.

use std::collections::BTreeSet;
use std::path::Path;

use crate::ports::PortRange;

const EPHEMERAL: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// The kernel's ephemeral port range.
pub fn ephemeral_range() -> Option<PortRange> {
    let text = std::fs::read_to_string(EPHEMERAL).ok()?;
    let mut it = text
        .split_whitespace()
        .filter_map(|t| t.parse::<u16>().ok());
    Some(PortRange {
        start: it.next()?,
        end: it.next()?,
    })
}

/// Whether two ranges share a port.
pub fn overlaps(a: PortRange, b: PortRange) -> bool {
    a.start <= b.end && b.start <= a.end
}

/// Parses `ip_local_reserved_ports` (`8080,40000-50000`).
fn parse_reserved(text: &str) -> Vec<PortRange> {
    text.trim()
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .filter_map(|t| {
            let t = t.trim();
            match t.split_once('-') {
                Some((a, b)) => Some(PortRange {
                    start: a.trim().parse().ok()?,
                    end: b.trim().parse().ok()?,
                }),
                None => {
                    let p = t.parse().ok()?;
                    Some(PortRange { start: p, end: p })
                }
            }
        })
        .collect()
}

/// Whether every port of `range` is in `reserved`.
fn covered(reserved: &[PortRange], range: PortRange) -> bool {
    let mut ports: BTreeSet<u16> = (range.start..=range.end).collect();
    for r in reserved {
        ports.retain(|p| !r.contains(*p));
    }
    ports.is_empty()
}

/// What became of the kernel reservation of a bucket port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The range lies outside the ephemeral range: nothing to do.
    NotNeeded,
    /// It was reserved already.
    Already,
    /// It is reserved now.
    Made,
    /// It could not be reserved (the reason): outgoing connections may take bucket ports.
    Failed(String),
}

/// Adds `range` to the kernel's reserved ports when it overlaps the ephemeral range, keeping
/// what is reserved already.
pub fn reserve(range: PortRange) -> Reservation {
    reserve_at(range, Path::new(RESERVED), ephemeral_range())
}

fn reserve_at(range: PortRange, file: &Path, ephemeral: Option<PortRange>) -> Reservation {
    if ephemeral.is_some_and(|e| !overlaps(e, range)) {
        return Reservation::NotNeeded;
    }
    let current = match read_whole(file) {
        Ok(t) => t,
        Err(e) => return Reservation::Failed(format!("reading {}: {e}", file.display())),
    };
    let mut reserved = parse_reserved(&current);
    if covered(&reserved, range) {
        return Reservation::Already;
    }
    reserved.push(range);
    let text = reserved
        .iter()
        .map(|r| {
            if r.start == r.end {
                r.start.to_string()
            } else {
                r.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    match std::fs::write(file, text) {
        Ok(()) => Reservation::Made,
        Err(e) => Reservation::Failed(format!("writing {}: {e}", file.display())),
    }
}

/// A sysctl file's text, read in one call: the kernel answers a second read of this file with
/// its end, so reading in small pieces (as `read_to_string` starts) would cut it.
fn read_whole(file: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 20];
    let n = std::fs::File::open(file)?.read(&mut buf)?;
    buf.truncate(n);
    String::from_utf8(buf).map_err(std::io::Error::other)
}

/// Who holds local TCP port `port` on this host: `process 1234 (curl)`, or what is known when
/// the owning process cannot be found (another namespace, no permission).
pub fn holder(port: u16) -> String {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = cols.get(1) else { continue };
            let Some((_, hex_port)) = local.rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(hex_port, 16).ok() == Some(port) {
                if let Some(inode) = cols.get(9).filter(|i| **i != "0") {
                    inodes.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    if inodes.is_empty() {
        return "something outside this daemon's view".to_string();
    }
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                    let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                    return format!("process {pid} ({})", comm.trim());
                }
            }
        }
    }
    "a socket whose process this daemon cannot see".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_keep_what_is_there_and_add_the_range() {
        let dir = std::env::temp_dir().join(format!("kalpana-reserved-{}", std::process::id()));
        std::fs::write(&dir, "8080,30000-30010\n").expect("write");
        let range = PortRange {
            start: 40000,
            end: 50000,
        };
        let eph = Some(PortRange {
            start: 32768,
            end: 60999,
        });
        assert_eq!(reserve_at(range, &dir, eph), Reservation::Made);
        assert_eq!(
            std::fs::read_to_string(&dir).expect("read"),
            "8080,30000-30010,40000-50000"
        );
        assert_eq!(reserve_at(range, &dir, eph), Reservation::Already);
        let outside = PortRange {
            start: 20000,
            end: 20010,
        };
        assert_eq!(reserve_at(outside, &dir, eph), Reservation::NotNeeded);
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn the_holder_of_a_listening_port_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let who = holder(port);
        assert!(
            who.contains(&format!("process {}", std::process::id())),
            "{who}"
        );
    }
}
