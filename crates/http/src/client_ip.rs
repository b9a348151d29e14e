//! The address a request comes from, as recorded on sessions. The direct
//! peer's address is the only one nobody can forge; `X-Forwarded-For` is
//! believed only as far as a chain of configured trusted proxies vouches for
//! it (`serve.public.trusted_proxies`, none by default).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// A trusted proxy entry that is not an address or network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("`{text}` is not an IP address or a network such as 10.0.0.0/8")]
    Address { text: String, source: std::net::AddrParseError },
    #[error("`{text}` has a prefix length outside 0..={bits}")]
    Prefix { text: String, bits: u8 },
}

/// One trusted address or network (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// An address (`127.0.0.1`) or a network in CIDR notation (`fd00::/8`).
    pub fn parse(text: &str) -> Result<Self, NetworkError> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr =
            addr.parse().map_err(|source| NetworkError::Address { text: text.to_string(), source })?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| NetworkError::Prefix { text: text.to_string(), bits })?,
        };
        Ok(Self { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, width) = match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        // Equal in the first `prefix` bits; a /0 shifts everything out.
        (net ^ ip).checked_shr(width - u32::from(self.prefix)).unwrap_or(0) == 0
    }
}

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    pub fn new(networks: Vec<Network>) -> Self {
        Self(networks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy;
    /// then `X-Forwarded-For` is read from the right (each proxy appends the
    /// address it was reached from) and the first hop that is not a trusted
    /// proxy is the client. An entry that is not an address ends the walk at
    /// the last address believed, so nothing unparsed is ever recorded.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let mut client = peer?.ip().to_canonical();
        if !self.trusts(client) {
            return Some(client);
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.into_iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// `203.0.113.7`, `2001:db8::1`, and the forms with a port some proxies
/// write (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(networks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(networks.iter().map(|n| Network::parse(n).unwrap()).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    const PEER: &str = "127.0.0.1:50000";

    #[test]
    fn networks_parse_and_match() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.1.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()), "IPv4-mapped peers count as IPv4");
        let v6 = Network::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()) && !v6.contains("fe80::1".parse().unwrap()));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains("203.0.113.9".parse().unwrap()));
        assert!(Network::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap()));
        for bad in ["", "localhost", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/x"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let peer = Some(PEER.parse().unwrap());
        let spoofed = forwarded(&["198.51.100.1"]);
        // Nobody trusted (the default): the peer, whatever the header says.
        assert_eq!(TrustedProxies::default().client_ip(&spoofed, peer), ip("127.0.0.1"));
        assert_eq!(trusted(&["10.0.0.1"]).client_ip(&spoofed, peer), ip("127.0.0.1"));
        // A trusted peer: the right-most address that is not a trusted proxy.
        let proxies = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        let chain = forwarded(&["198.51.100.1, 203.0.113.7", "10.0.0.2"]);
        assert_eq!(proxies.client_ip(&chain, peer), ip("203.0.113.7"));
        assert_eq!(
            trusted(&["127.0.0.1", "10.0.0.0/8", "203.0.113.0/24"]).client_ip(&chain, peer),
            ip("198.51.100.1")
        );
        // Only proxies in the chain: the left-most.
        assert_eq!(proxies.client_ip(&forwarded(&["10.1.1.1, 10.0.0.2"]), peer), ip("10.1.1.1"));
        // No header: the proxy itself.
        assert_eq!(proxies.client_ip(&HeaderMap::new(), peer), ip("127.0.0.1"));
        // Garbage ends the walk at the last address believed.
        assert_eq!(proxies.client_ip(&forwarded(&["203.0.113.7, <script>"]), peer), ip("127.0.0.1"));
        assert_eq!(proxies.client_ip(&forwarded(&["unknown, 10.0.0.3"]), peer), ip("10.0.0.3"));
        // Ports and brackets.
        assert_eq!(proxies.client_ip(&forwarded(&["[2001:db8::1]:4711"]), peer), ip("2001:db8::1"));
        assert_eq!(proxies.client_ip(&forwarded(&[" 203.0.113.7:80 "]), peer), ip("203.0.113.7"));
        // No peer known: nothing is believed.
        assert_eq!(proxies.client_ip(&chain, None), None);
    }
}
