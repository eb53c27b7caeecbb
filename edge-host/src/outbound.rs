//! Allowed outbound hosts, enforced: every outbound HTTP request a component makes is checked
//! against its `allowed_outbound_hosts` before a connection is opened; a request to any other
//! host fails with `wasi:http`'s `HTTP-request-denied` (fail closed) and the host logs why. Raw
//! sockets are not offered at all.
//!
//! Patterns follow Spin: `scheme://host:port`, where the scheme may be `*`, the host `*` or
//! `*.suffix`, and the port `*`, a number or a range `8000..8100`; without a port, the scheme's
//! default port (80 for http, 443 for https).

use crate::error::HostError;

/// One allowed-host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    host: HostMatch,
    port: PortMatch,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com` matches subdomains of `example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortMatch {
    Any,
    Range(u16, u16),
    /// No port given: the scheme's default port.
    Default,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, HostError> {
        let bad = |why: &str| HostError::OutboundHost(format!("{text:?}: {why}"));
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host[:port], e.g. http://127.0.0.1:8080"))?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_string()),
            _ => return Err(bad("the scheme must be http, https or *")),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("a host pattern has no path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
            _ => (rest, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = match host {
            "" => return Err(bad("the host is empty")),
            "*" => HostMatch::Any,
            h => match h.strip_prefix("*.") {
                Some(suffix) if !suffix.is_empty() => {
                    HostMatch::Suffix(suffix.to_ascii_lowercase())
                }
                Some(_) => return Err(bad("`*.` needs a domain after it")),
                None if h.contains('*') => {
                    return Err(bad(
                        "`*` is allowed only as the whole host or as `*.domain`",
                    ));
                }
                None => HostMatch::Exact(h.to_ascii_lowercase()),
            },
        };
        let port = match port {
            None => PortMatch::Default,
            Some("*") => PortMatch::Any,
            Some(p) => match p.split_once("..") {
                Some((lo, hi)) => {
                    let lo = lo.parse().map_err(|_| bad("bad port range"))?;
                    let hi = hi.parse().map_err(|_| bad("bad port range"))?;
                    if lo > hi {
                        return Err(bad("bad port range"));
                    }
                    PortMatch::Range(lo, hi)
                }
                None => {
                    let n = p
                        .parse()
                        .map_err(|_| bad("the port must be a number, a range or *"))?;
                    PortMatch::Range(n, n)
                }
            },
        };
        if scheme.is_none() && port == PortMatch::Default {
            return Err(bad("with scheme `*`, give a port (or `*`)"));
        }
        Ok(HostPattern {
            scheme,
            host,
            port,
            text: text.to_string(),
        })
    }

    /// Whether a request to `scheme://host:port` is allowed (`port` is the effective port).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => *h == host,
            HostMatch::Suffix(s) => host
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.ends_with('.')),
        };
        let port_ok = match self.port {
            PortMatch::Any => true,
            PortMatch::Range(lo, hi) => (lo..=hi).contains(&port),
            PortMatch::Default => Some(port) == default_port(scheme),
        };
        host_ok && port_ok
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// A component's allowed outbound hosts.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    patterns: Vec<HostPattern>,
}

impl AllowedHosts {
    pub fn new(patterns: Vec<HostPattern>) -> Self {
        AllowedHosts { patterns }
    }

    /// Checks a request URI; `Err` says why it is refused.
    pub fn check(&self, uri: &http::Uri) -> Result<(), String> {
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri
            .host()
            .ok_or_else(|| format!("outbound request to {uri} has no host"))?;
        let port = uri
            .port_u16()
            .or_else(|| default_port(scheme))
            .ok_or_else(|| format!("outbound request to {uri}: unsupported scheme"))?;
        if self.patterns.iter().any(|p| p.allows(scheme, host, port)) {
            Ok(())
        } else {
            Err(format!(
                "outbound request to {scheme}://{host}:{port} is not allowed: the component's \
                 allowed_outbound_hosts are [{}]",
                self.patterns
                    .iter()
                    .map(|p| p.text.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts::new(
            patterns
                .iter()
                .map(|p| HostPattern::parse(p).unwrap())
                .collect(),
        )
    }

    #[test]
    fn exact_wildcards_and_default_ports() {
        let a = allowed(&[
            "http://127.0.0.1:8080",
            "https://*.example.com",
            "http://localhost:*",
        ]);
        let ok = |u: &str| a.check(&u.parse().unwrap()).is_ok();
        assert!(ok("http://127.0.0.1:8080/v1/chat/completions"));
        assert!(!ok("http://127.0.0.1:8081/"));
        assert!(!ok("https://127.0.0.1:8080/"));
        assert!(ok("https://api.example.com/x"));
        assert!(!ok("https://example.com/x"));
        assert!(!ok("https://evil-example.com/x"));
        assert!(!ok("https://api.example.com:8443/x"));
        assert!(ok("http://LOCALHOST:1234/"));
        let any = allowed(&["*://*:*"]);
        assert!(any.check(&"http://10.0.0.1:5/".parse().unwrap()).is_ok());
        let none = allowed(&[]);
        let err = none
            .check(&"http://10.0.0.1/".parse().unwrap())
            .unwrap_err();
        assert!(err.contains("not allowed"), "{err}");
    }

    #[test]
    fn ranges_and_bad_patterns() {
        let a = allowed(&["http://127.0.0.1:8000..8002"]);
        assert!(a.check(&"http://127.0.0.1:8001/".parse().unwrap()).is_ok());
        assert!(a.check(&"http://127.0.0.1:8003/".parse().unwrap()).is_err());
        for bad in [
            "127.0.0.1:80",
            "ftp://x",
            "http://x/path",
            "http://a*b",
            "*://x",
            "http://x:y",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
