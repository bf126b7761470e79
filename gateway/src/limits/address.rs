//! Who the client is, by address: the peer, or — when the peer is a trusted proxy — the
//! rightmost hop of `X-Forwarded-For` / `Forwarded` that is not itself a trusted proxy. Only
//! hops appended by trusted proxies are believed: anything left of the first untrusted hop
//! was written by the client and may be forged.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use flashgate_config::{Cidr, ForwardedHeader};
use http::HeaderMap;

/// The client's address, as a request extension (set by the router when a per-address limit
/// needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub IpAddr);

/// The peer address of a connection, as a request extension (set by the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl Client {
    /// The address as a rate-limit key: an IPv4 address as is, an IPv6 one by its /64 (one
    /// subscriber gets a whole /64, so counting single IPv6 addresses counts nothing).
    pub fn key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & (u128::MAX << 64);
                format!("{}/64", Ipv6Addr::from(net))
            }
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The client of a request that came from `peer` with `headers`, trusting `proxies` to append
/// to `header`.
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    proxies: &[Cidr],
    header: ForwardedHeader,
) -> IpAddr {
    let peer = canonical(peer);
    let trusted = |ip: IpAddr| proxies.iter().any(|net| net.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    // Hops in the order they were appended (the client's first); several header lines
    // count as one list, in order.
    let mut hops: Vec<Option<IpAddr>> = Vec::new();
    match header {
        ForwardedHeader::XForwardedFor => {
            for line in headers.get_all("x-forwarded-for") {
                let Ok(line) = line.to_str() else {
                    hops.push(None);
                    continue;
                };
                hops.extend(line.split(',').map(|hop| parse_hop(hop.trim())));
            }
        }
        ForwardedHeader::Forwarded => {
            for line in headers.get_all("forwarded") {
                let Ok(line) = line.to_str() else {
                    hops.push(None);
                    continue;
                };
                hops.extend(split_outside_quotes(line, ',').map(forwarded_for));
            }
        }
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            // A hop a trusted proxy could not name (`unknown`, an obfuscated identifier,
            // garbage): the last address known is as far as the chain can be followed.
            None => return client,
            Some(ip) => {
                client = canonical(ip);
                if !trusted(client) {
                    return client;
                }
            }
        }
    }
    client
}

/// An IPv4-mapped IPv6 address as its IPv4 one, so one client has one key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` hop: `192.0.2.1`, `2001:db8::1`, and the forms some proxies write
/// with a port, `192.0.2.1:5000` and `[2001:db8::1]:5000`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim_matches('"');
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.60;proto=http;by=...`), RFC 7239:
/// the parameter name is case-insensitive, the value a token or a quoted string; an IPv6 node
/// is bracketed (and then quoted), a port may follow.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    split_outside_quotes(element, ';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        // `for=` present but not an address (`unknown`, `_hidden`): no address for this hop.
        Some(parse_hop(&value.replace("\\\"", "\"")))
    })?
}

/// `text` split at `sep` except inside double quotes (with `\` escapes), each part trimmed.
fn split_outside_quotes(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(text[start..i].trim());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn proxies() -> Vec<Cidr> {
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn xff(peer: &str, pairs: &[(&'static str, &str)]) -> IpAddr {
        client_address(
            ip(peer),
            &headers(pairs),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        )
    }

    fn fwd(peer: &str, pairs: &[(&'static str, &str)]) -> IpAddr {
        client_address(
            ip(peer),
            &headers(pairs),
            &proxies(),
            ForwardedHeader::Forwarded,
        )
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(
            xff("203.0.113.9", &[("x-forwarded-for", "1.2.3.4")]),
            ip("203.0.113.9")
        );
        assert_eq!(
            fwd("203.0.113.9", &[("forwarded", "for=1.2.3.4")]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        // The client forged a first hop; the proxies appended the real one and themselves.
        assert_eq!(
            xff(
                "10.0.0.2",
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.1")]
            ),
            ip("198.51.100.7")
        );
        // Several lines are one list, in order.
        assert_eq!(
            xff(
                "10.0.0.2",
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "198.51.100.7")
                ]
            ),
            ip("198.51.100.7")
        );
        // Ports and brackets some proxies write.
        assert_eq!(
            xff("10.0.0.2", &[("x-forwarded-for", "[2001:db8::7]:4711")]),
            ip("2001:db8::7")
        );
        assert_eq!(
            xff("10.0.0.2", &[("x-forwarded-for", "198.51.100.7:5000")]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_trusted_peer_without_a_usable_hop_is_the_client_itself() {
        assert_eq!(xff("10.0.0.2", &[]), ip("10.0.0.2"));
        assert_eq!(
            xff("10.0.0.2", &[("x-forwarded-for", "unknown")]),
            ip("10.0.0.2")
        );
        // Garbage right of a real hop stops the walk at the last proxy known.
        assert_eq!(
            xff("10.0.0.2", &[("x-forwarded-for", "198.51.100.7, nonsense")]),
            ip("10.0.0.2")
        );
        // Every hop trusted: the leftmost is as far as it goes.
        assert_eq!(
            xff("10.0.0.2", &[("x-forwarded-for", "10.9.9.9, 10.0.0.1")]),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn the_other_header_is_ignored() {
        assert_eq!(
            xff("10.0.0.2", &[("forwarded", "for=198.51.100.7")]),
            ip("10.0.0.2")
        );
        assert_eq!(
            fwd("10.0.0.2", &[("x-forwarded-for", "198.51.100.7")]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_elements_are_read_as_rfc_7239_writes_them() {
        assert_eq!(
            fwd(
                "10.0.0.2",
                &[(
                    "forwarded",
                    "for=6.6.6.6, For=\"198.51.100.7:4711\";proto=https;by=10.0.0.1"
                )]
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            fwd(
                "fd00::2",
                &[(
                    "forwarded",
                    "for=\"[2001:db8:cafe::17]:4711\", for=10.0.0.1"
                )]
            ),
            ip("2001:db8:cafe::17")
        );
        // A quoted comma does not split elements.
        assert_eq!(
            fwd("10.0.0.2", &[("forwarded", "for=198.51.100.7;ext=\"a,b\"")]),
            ip("198.51.100.7")
        );
        assert_eq!(
            fwd("10.0.0.2", &[("forwarded", "for=_hidden")]),
            ip("10.0.0.2")
        );
        assert_eq!(
            fwd("10.0.0.2", &[("forwarded", "proto=https")]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ipv4_mapped_peers_and_ipv6_prefixes_make_one_key_per_client() {
        assert_eq!(
            xff("::ffff:203.0.113.9", &[]),
            ip("203.0.113.9"),
            "a mapped address is its IPv4 one"
        );
        assert_eq!(Client(ip("203.0.113.9")).key(), "203.0.113.9");
        assert_eq!(
            Client(ip("2001:db8:1:2:aaaa::1")).key(),
            Client(ip("2001:db8:1:2:bbbb::9")).key()
        );
        assert_eq!(Client(ip("2001:db8:1:2::1")).key(), "2001:db8:1:2::/64");
    }
}
