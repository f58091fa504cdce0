//! Where moat listens and with what: the `listen`, `tls` and `metrics`
//! sections.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// `host:port` of the mutual-TLS listener. Port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub tcp: SocketAddr,
    /// A local unix socket serving the same pipeline, its clients
    /// identified by the kernel (`SO_PEERCRED`) and mapped to groups by
    /// `auth.local`. Absent: no local socket.
    #[serde(default)]
    pub unix: Option<PathBuf>,
    /// The socket file's mode, octal (`"0666"`: anyone may connect, since
    /// identity comes from the kernel, not from file permissions).
    #[serde(default = "default_unix_mode", deserialize_with = "octal_mode")]
    pub unix_mode: u32,
    /// The socket file's group (a name from the group database). Absent:
    /// moat's own group.
    #[serde(default)]
    pub unix_group: Option<String>,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            tcp: default_listen(),
            unix: None,
            unix_mode: default_unix_mode(),
            unix_group: None,
        }
    }
}

impl Listen {
    pub(super) fn resolve_paths(&mut self, r: &impl Fn(&mut PathBuf)) {
        if let Some(p) = &mut self.unix {
            r(p);
        }
    }
}

fn default_unix_mode() -> u32 {
    0o666
}

/// `"0660"` (a string of octal digits, as `chmod` takes it).
fn octal_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let s = String::deserialize(d)?;
    u32::from_str_radix(&s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "listen.unix_mode `{s}` is not a file mode: write it as an octal string, e.g. \"0660\""
            ))
        })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2376))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCert {
    /// Every client must present a certificate chaining to `client_ca`.
    #[default]
    Required,
    /// A client may connect without a certificate and authenticate with a
    /// bearer token instead. A certificate that is presented must still verify.
    Optional,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Certificate revocation list (PEM), reloaded when it changes.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    #[serde(default)]
    pub client_cert: ClientCert,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Plain-HTTP listener for `/metrics`, `/healthz` and `/readyz`.
    /// `null` turns it off.
    #[serde(default = "default_metrics_listen")]
    pub listen: Option<SocketAddr>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9323)))
}

impl Tls {
    pub(super) fn resolve_paths(&mut self, r: &impl Fn(&mut PathBuf)) {
        r(&mut self.cert);
        r(&mut self.key);
        r(&mut self.client_ca);
        if let Some(crl) = &mut self.crl {
            r(crl);
        }
    }
}
