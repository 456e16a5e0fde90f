//! `[http]`: the read-only web page and Prometheus metrics the daemon serves.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Where the web page is served by default: loopback only, so nothing is published until
/// an operator says so.
pub const DEFAULT_HTTP_BIND: &str = "127.0.0.1:47680";

/// The web page and metrics (`[http]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether to serve at all (`false` turns it off, as does an empty `bind`).
    pub enabled: bool,
    /// `IP:port` to listen on. Port 0 picks a free port (`lootsync status` shows the URL).
    /// When the port is taken (another daemon on this machine has it), the daemon warns and
    /// runs without the web page rather than fail. A non-loopback address publishes the page
    /// (read-only) to whoever can reach it, and is logged with a warning.
    pub bind: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            bind: DEFAULT_HTTP_BIND.to_owned(),
        }
    }
}

impl HttpConfig {
    /// The address to listen on, or `None` when the web page is off.
    pub fn address(&self) -> Option<SocketAddr> {
        if !self.enabled || self.bind.trim().is_empty() {
            return None;
        }
        self.bind.trim().parse().ok()
    }

    /// Checks that `bind` is empty or an `IP:port` of a unicast address.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bind = self.bind.trim();
        if bind.is_empty() {
            return Ok(());
        }
        let addr: SocketAddr = bind.parse().map_err(|_| {
            invalid(
                "http.bind",
                format!(
                    "{bind:?} is not an IP:port (e.g. \"{DEFAULT_HTTP_BIND}\", or \"\" for no \
                     web page)"
                ),
            )
        })?;
        if addr.ip().is_multicast() || addr.ip() == std::net::Ipv4Addr::BROADCAST {
            return Err(invalid(
                "http.bind",
                format!("{} is not a unicast address", addr.ip()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_invalid, assert_parse_error, parse};

    #[test]
    fn each_http_validation_error_names_its_key() {
        assert_invalid("[http]\nbind = \"localhost\"", "http.bind");
        assert_invalid("[http]\nbind = \"127.0.0.1\"", "http.bind");
        assert_invalid("[http]\nbind = \"127.0.0.1:99999\"", "http.bind");
        assert_invalid("[http]\nbind = \"239.1.2.3:80\"", "http.bind");
        assert_parse_error("[http]\nport = 80\n", "port", 2);
        assert_parse_error("[http]\nenabled = \"yes\"\n", "enabled", 2);
    }

    #[test]
    fn empty_bind_or_disabled_turns_the_page_off() {
        let c = parse("").unwrap();
        assert_eq!(c.http.address(), Some("127.0.0.1:47680".parse().unwrap()));
        assert_eq!(parse("[http]\nbind = \"\"").unwrap().http.address(), None);
        assert_eq!(
            parse("[http]\nenabled = false").unwrap().http.address(),
            None
        );
        let c = parse("[http]\nbind = \"[::1]:0\"").unwrap();
        assert_eq!(c.http.address(), Some("[::1]:0".parse().unwrap()));
    }
}
