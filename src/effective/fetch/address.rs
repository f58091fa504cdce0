//! Where an address points, from its text alone: the host and port of a
//! URL, of `host:port`, of an image reference's registry, and the class of
//! the host (loopback, link-local, private, …).
//!
//! Nothing here resolves a name. The engine resolves names itself, later
//! and maybe differently (its own resolver, `/etc/hosts`, a changed DNS
//! answer): a check on moat's own lookup would be a time-of-check to
//! time-of-use gap. So literal addresses are classified, in every form the
//! engine's resolver might accept (IPv4 in `inet_aton`'s decimal, octal,
//! hex and short forms; IPv6 bracketed, with a zone, v4-mapped), and any
//! other host is a `name`, except `localhost` and `*.localhost`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// What a host is, as far as its text tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressClass {
    /// 127.0.0.0/8, `::1`, `localhost`, `*.localhost`, a unix socket.
    Loopback,
    /// 169.254.0.0/16, fe80::/10 (cloud metadata services live here).
    LinkLocal,
    /// Not routed on the internet: RFC 1918, 100.64.0.0/10, fc00::/7,
    /// fec0::/10, multicast, broadcast and reserved ranges.
    Private,
    /// No host, `0.0.0.0/8` or `::`: a connection to it reaches the host
    /// itself.
    Unspecified,
    /// Any other literal address.
    Public,
    /// A name, not resolved by moat.
    Name,
}

/// A host (without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: Option<u16>,
}

impl Endpoint {
    fn new(host: &str, port: Option<u16>) -> Self {
        Endpoint {
            host: host.to_ascii_lowercase(),
            port,
        }
    }

    pub fn class(&self) -> AddressClass {
        classify_host(&self.host)
    }
}

/// The endpoint of a URL `scheme://[userinfo@]host[:port][/path][?q][#f]`,
/// split as Go's `net/url` splits it (the userinfo ends at the authority's
/// last `@`). A value without `://` is read as `host[:port][/path]`, which
/// is what the engine does with a scheme-less `fromSrc`. `unix://` and
/// `unixgram://` URLs name a socket on the engine's host: their host is the
/// path and they are [`AddressClass::Loopback`].
pub fn url(value: &str) -> Endpoint {
    let (scheme, rest) = match value.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => (String::new(), value),
    };
    if scheme == "unix" || scheme == "unixgram" {
        return Endpoint {
            host: rest.to_owned(),
            port: None,
        };
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    host_port_of(host_port)
}

/// The endpoint of `host[:port]`: `[v6]:port`, `[v6]`, a bare IPv6 address
/// (more than one `:`), or `host:port`.
pub fn host_port(value: &str) -> Endpoint {
    host_port_of(value.trim())
}

fn host_port_of(value: &str) -> Endpoint {
    let value = percent_decode(value);
    if let Some(rest) = value.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return Endpoint::new(host, port);
        }
        return Endpoint::new(rest, None);
    }
    match value.rsplit_once(':') {
        // A bare IPv6 address: more than one colon and no brackets.
        Some((host, _)) if host.contains(':') => Endpoint::new(&value, None),
        Some((host, port)) => Endpoint::new(host, port.parse().ok()),
        None => Endpoint::new(&value, None),
    }
}

/// `%XX` decoded (Go's URL parser decodes the host); invalid escapes stay.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The registry an image reference names, as the docker reference grammar
/// derives it (`splitDockerDomain`): the first `/`-separated component if it
/// contains `.` or `:`, is `localhost`, or has an upper-case letter (the
/// newest grammar's rule; 20.10 refuses such names); `docker.io` otherwise.
/// `index.docker.io` is `docker.io`.
pub fn registry_of_reference(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            normalize_registry(first)
        }
        _ => "docker.io".to_owned(),
    }
}

/// The registry of `/auth`'s `serveraddress`, as the daemon's
/// `ConvertToHostname` derives it: without `http://`/`https://` and without
/// a path; empty is Docker Hub.
pub fn registry_of_server_address(address: &str) -> String {
    let lower = address.trim();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(lower);
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return "docker.io".to_owned();
    }
    normalize_registry(host)
}

fn normalize_registry(domain: &str) -> String {
    let lower = domain.to_ascii_lowercase();
    if lower == "index.docker.io" {
        "docker.io".to_owned()
    } else {
        lower
    }
}

/// The class of a host (as [`Endpoint`] holds it: no brackets).
pub fn classify_host(host: &str) -> AddressClass {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return AddressClass::Unspecified;
    }
    if host.starts_with('/') || host.starts_with('@') {
        // A unix socket path (or an abstract socket) on the engine's host.
        return AddressClass::Loopback;
    }
    let no_zone = host.split('%').next().unwrap_or("");
    if let Ok(v6) = no_zone.parse::<Ipv6Addr>() {
        return classify_ip(IpAddr::V6(v6));
    }
    if let Some(v4) = inet_aton(&host) {
        return classify_ip(IpAddr::V4(v4));
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return AddressClass::Loopback;
    }
    AddressClass::Name
}

/// An IPv4 address in any form C's `inet_aton` accepts (which a resolver
/// using it, such as glibc's `getaddrinfo`, turns into an address): 1 to 4
/// parts, each decimal, octal (leading `0`) or hex (`0x`), the last part
/// filling the remaining bytes: `2130706433`, `0177.0.0.1`, `0x7f.1`,
/// `127.1`.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"))
        {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        let n = if digits.is_empty() {
            0
        } else {
            if !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u64::from_str_radix(digits, radix).ok()?
        };
        nums.push(n);
    }
    let last = nums.len() - 1;
    let last_max: u64 = match last {
        0 => u64::from(u32::MAX),
        1 => 0xff_ffff,
        2 => 0xffff,
        _ => 0xff,
    };
    if nums[last] > last_max || nums[..last].iter().any(|&n| n > 0xff) {
        return None;
    }
    let mut addr: u64 = nums[last];
    for (i, n) in nums[..last].iter().enumerate() {
        addr |= n << (24 - 8 * i);
    }
    Some(Ipv4Addr::from(u32::try_from(addr).ok()?))
}

fn classify_ip(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if v6.is_unspecified() {
                AddressClass::Unspecified
            } else if v6.is_loopback() {
                AddressClass::Loopback
            } else if let Some(v4) = embedded_v4(&v6) {
                classify_v4(v4)
            } else if seg[0] & 0xffc0 == 0xfe80 {
                AddressClass::LinkLocal
            } else if seg[0] & 0xfe00 == 0xfc00
                || seg[0] & 0xffc0 == 0xfec0
                || seg[0] & 0xff00 == 0xff00
            {
                AddressClass::Private
            } else {
                AddressClass::Public
            }
        }
    }
}

/// The IPv4 address inside a v4-mapped (`::ffff:a.b.c.d`), v4-compatible
/// (`::a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) IPv6 address.
fn embedded_v4(v6: &Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s[..6] {
        [0, 0, 0, 0, 0, 0xffff] | [0, 0, 0, 0, 0, 0] | [0x64, 0xff9b, 0, 0, 0, 0] => Some(tail),
        _ => None,
    }
}

fn classify_v4(v4: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = v4.octets();
    if a == 0 {
        AddressClass::Unspecified
    } else if a == 127 {
        AddressClass::Loopback
    } else if a == 169 && b == 254 {
        AddressClass::LinkLocal
    } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) || a >= 224 {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    /// (URL as a client sends it, host, port, class).
    const URLS: &[(&str, &str, Option<u16>, AddressClass)] = &[
        ("http://127.0.0.1:8080/x", "127.0.0.1", Some(8080), Loopback),
        (
            "http://user:pw@evil.com@127.0.0.1/x",
            "127.0.0.1",
            None,
            Loopback,
        ),
        ("HTTPS://Example.COM/ctx.tar", "example.com", None, Name),
        ("http://[::1]:80/x", "::1", Some(80), Loopback),
        (
            "http://[::ffff:127.0.0.1]/x",
            "::ffff:127.0.0.1",
            None,
            Loopback,
        ),
        (
            "http://[::ffff:7f00:1]:9/x",
            "::ffff:7f00:1",
            Some(9),
            Loopback,
        ),
        ("http://[fe80::1%25eth0]/x", "fe80::1%eth0", None, LinkLocal),
        ("http://2130706433/x", "2130706433", None, Loopback),
        ("http://0177.0.0.1/x", "0177.0.0.1", None, Loopback),
        ("http://0x7f.1/x", "0x7f.1", None, Loopback),
        ("http://127.1:5/x", "127.1", Some(5), Loopback),
        (
            "http://169.254.169.254/latest/meta-data",
            "169.254.169.254",
            None,
            LinkLocal,
        ),
        ("http://10.1.2.3/x", "10.1.2.3", None, Private),
        ("http://100.64.0.1/x", "100.64.0.1", None, Private),
        ("http://[fd00::1]/x", "fd00::1", None, Private),
        ("http://0.0.0.0:2375/x", "0.0.0.0", Some(2375), Unspecified),
        ("http://[::]:1/x", "::", Some(1), Unspecified),
        ("http:///x", "", None, Unspecified),
        ("http://localhost:1/x", "localhost", Some(1), Loopback),
        ("http://LOCALHOST./x", "localhost.", None, Loopback),
        ("http://a.localhost/x", "a.localhost", None, Loopback),
        ("http://8.8.8.8/x", "8.8.8.8", None, Public),
        ("http://[2001:db8::1]/x", "2001:db8::1", None, Public),
        ("http://%31%32%37.0.0.1/x", "127.0.0.1", None, Loopback),
        ("http://127.0.0.1.nip.io/x", "127.0.0.1.nip.io", None, Name),
        ("127.0.0.1:9/x.tar", "127.0.0.1", Some(9), Loopback),
        ("example.com/x.tar", "example.com", None, Name),
        ("git://github.com/a/b", "github.com", None, Name),
        ("tcp://192.168.1.1:514", "192.168.1.1", Some(514), Private),
        ("udp://[::1]:514", "::1", Some(514), Loopback),
        ("unix:///dev/log", "/dev/log", None, Loopback),
        (
            "http://[::ffff:169.254.169.254]/",
            "::ffff:169.254.169.254",
            None,
            LinkLocal,
        ),
        (
            "http://[64:ff9b::7f00:1]/",
            "64:ff9b::7f00:1",
            None,
            Loopback,
        ),
        ("http://1.2.3.4:notaport/x", "1.2.3.4", None, Public),
    ];

    #[test]
    fn urls() {
        for &(value, host, port, class) in URLS {
            let e = url(value);
            assert_eq!(e.host, host, "{value}");
            assert_eq!(e.port, port, "{value}");
            assert_eq!(e.class(), class, "{value}");
        }
    }

    /// (host[:port], host, port, class).
    const HOST_PORTS: &[(&str, &str, Option<u16>, AddressClass)] = &[
        ("10.0.0.1:2377", "10.0.0.1", Some(2377), Private),
        ("[::1]:2377", "::1", Some(2377), Loopback),
        ("::1", "::1", None, Loopback),
        ("fe80::1", "fe80::1", None, LinkLocal),
        ("manager.example", "manager.example", None, Name),
        ("localhost:24224", "localhost", Some(24224), Loopback),
        (" 127.0.0.1:1 ", "127.0.0.1", Some(1), Loopback),
        ("", "", None, Unspecified),
    ];

    #[test]
    fn host_ports() {
        for &(value, host, port, class) in HOST_PORTS {
            let e = host_port(value);
            assert_eq!(
                (e.host.as_str(), e.port, e.class()),
                (host, port, class),
                "{value}"
            );
        }
    }

    /// (reference, registry): the docker reference grammar's examples.
    const REFERENCES: &[(&str, &str)] = &[
        ("busybox", "docker.io"),
        ("busybox:latest", "docker.io"),
        ("library/busybox", "docker.io"),
        ("docker.io/library/busybox", "docker.io"),
        ("index.docker.io/x/y", "docker.io"),
        ("user/image:tag", "docker.io"),
        ("127.0.0.1:5000/img", "127.0.0.1:5000"),
        ("localhost/img", "localhost"),
        ("localhost:5000/img", "localhost:5000"),
        ("[::1]:5000/img", "[::1]:5000"),
        ("[::ffff:127.0.0.1]:5000/img", "[::ffff:127.0.0.1]:5000"),
        ("ghcr.io/o/i@sha256:abc", "ghcr.io"),
        ("Registry/img", "registry"),
        ("localhost", "docker.io"),
    ];

    #[test]
    fn registries() {
        for &(reference, registry) in REFERENCES {
            assert_eq!(registry_of_reference(reference), registry, "{reference}");
        }
        for (address, registry) in [
            ("", "docker.io"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
            ("localhost:5000", "localhost:5000"),
        ] {
            assert_eq!(registry_of_server_address(address), registry, "{address}");
        }
    }

    /// Odd and hostile values: no panic, and a host moat cannot read is
    /// not mistaken for an allowed one.
    #[test]
    fn hostile_values_do_not_panic() {
        for v in [
            "",
            "[",
            "]",
            "[:",
            "[]:",
            "@",
            "%",
            "%4",
            "%zz",
            "%ff%fe",
            "::::",
            "0x",
            "0x.0x.0x.0x",
            "0xffffffffffffffffffff",
            "99999999999999999999999",
            "1.2.3.4.",
            "ü@[ü]:ü",
            "://",
            ":///",
            "http://[::1",
            "http://@",
            "http://:@:/",
            "git@",
            "//",
            "\\\\x",
            "a:b:c",
        ] {
            for e in [url(v), host_port(v)] {
                let _ = e.class();
            }
            let _ = registry_of_reference(v);
            let _ = registry_of_server_address(v);
            let _ = inet_aton(v);
        }
    }

    #[test]
    fn inet_aton_forms() {
        for (s, want) in [
            ("127.0.0.1", Some([127, 0, 0, 1])),
            ("2130706433", Some([127, 0, 0, 1])),
            ("017700000001", Some([127, 0, 0, 1])),
            ("0x7f000001", Some([127, 0, 0, 1])),
            ("127.0.1", Some([127, 0, 0, 1])),
            ("0x0", Some([0, 0, 0, 0])),
            ("256.0.0.1", None),
            ("1.2.3.4.5", None),
            ("08.0.0.1", None),
            ("example", None),
            ("", None),
            ("1..2", None),
        ] {
            assert_eq!(inet_aton(s), want.map(Ipv4Addr::from), "{s}");
        }
    }
}
