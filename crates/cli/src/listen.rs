//! The flags every listening command shares (`server`, `serve`): TLS and the connection
//! limits of `shipyard-listener`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct ListenerArgs {
    /// Serve HTTPS with this certificate chain (PEM: the leaf first, then intermediates).
    #[arg(long, requires = "tls_key", env = "SHIPYARD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", env = "SHIPYARD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Ask clients for a certificate issued by this CA (PEM); clients without one are still
    /// served and authenticate otherwise.
    #[arg(long, requires = "tls_cert", env = "SHIPYARD_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Seconds a client may take to send a request's head (also: longest idle keep-alive).
    #[arg(long, default_value_t = 10.0)]
    pub header_read_timeout: f64,
    /// Seconds a request body may go without sending anything.
    #[arg(long, default_value_t = 30.0)]
    pub body_read_timeout: f64,
    /// Seconds a response may go unread by its client before the connection is closed.
    #[arg(long, default_value_t = 30.0)]
    pub write_timeout: f64,
    /// Most connections open at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
}

impl Default for ListenerArgs {
    fn default() -> Self {
        ListenerArgs {
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            header_read_timeout: 10.0,
            body_read_timeout: 30.0,
            write_timeout: 30.0,
            max_connections: 4096,
        }
    }
}

fn seconds(flag: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{flag} must be a positive number of seconds, not {value}"))
}

impl ListenerArgs {
    /// The listener's settings; reads the TLS files now, so a bad one stops the command at once.
    pub fn settings(&self) -> Result<shipyard_listener::Settings> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(shipyard_listener::tls_config(cert, key, self.tls_client_ca.as_deref())?),
            _ => None,
        };
        Ok(shipyard_listener::Settings {
            header_read_timeout: seconds("header-read-timeout", self.header_read_timeout)?,
            body_read_timeout: seconds("body-read-timeout", self.body_read_timeout)?,
            write_timeout: seconds("write-timeout", self.write_timeout)?,
            max_connections: self.max_connections.max(1),
            tls,
            ..shipyard_listener::Settings::default()
        })
    }
}
