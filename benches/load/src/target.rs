//! The `ws://` URL a load run connects to. Benchmarks only ever target this machine, so any host
//! but a loopback address is refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context, Result};

/// Where to connect and what to ask for in the upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The Host header: the URL's authority as written.
    pub host: String,
    /// Path and query of the request line.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target> {
        let uri: http::Uri = url.parse().with_context(|| format!("bad URL `{url}`"))?;
        if uri.scheme_str() != Some("ws") {
            bail!("`{url}`: only ws:// URLs are supported");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("`{url}` has no host"))?;
        let port = authority
            .port_u16()
            .with_context(|| format!("`{url}` has no port"))?;
        let host = authority.host();
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .with_context(|| format!("`{url}`: the host must be an IP address or localhost"))?
        };
        if !ip.is_loopback() {
            bail!("`{url}`: only loopback addresses are allowed as load targets");
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            host: authority.as_str().to_owned(),
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_url_with_path_and_query() {
        let target = Target::parse("ws://127.0.0.1:8080/ws?room=1").unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target.host, "127.0.0.1:8080");
        assert_eq!(target.path, "/ws?room=1");
    }

    #[test]
    fn missing_path_is_root() {
        assert_eq!(Target::parse("ws://127.0.0.1:9").unwrap().path, "/");
    }

    #[test]
    fn localhost_and_ipv6_loopback() {
        assert_eq!(
            Target::parse("ws://localhost:81/").unwrap().addr,
            "127.0.0.1:81".parse().unwrap()
        );
        assert_eq!(
            Target::parse("ws://[::1]:81/").unwrap().addr,
            "[::1]:81".parse().unwrap()
        );
    }

    #[test]
    fn non_loopback_hosts_are_refused() {
        for url in [
            "ws://10.0.0.1:80/",
            "ws://192.168.1.2:80/",
            "ws://example.com:80/",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn other_schemes_and_missing_port_are_refused() {
        assert!(Target::parse("wss://127.0.0.1:443/").is_err());
        assert!(Target::parse("http://127.0.0.1:80/").is_err());
        assert!(Target::parse("ws://127.0.0.1/").is_err());
    }
}
