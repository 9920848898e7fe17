//! Webhook deliveries: the only requests Shipyard makes to an address a user typed.
//!
//! A monitor's configuration names its webhooks, so whoever may configure a monitor chooses
//! where this server sends requests from inside the operator's network (server-side request
//! forgery: MLflow needed CVE-2026-2393, GHSA-7gwp-5pfp-969j and a connect-time check to close
//! the same hole). So a delivery:
//!
//! - goes only to `http`/`https` URLs;
//! - connects only to public addresses: a host name is resolved once, by [`GuardedResolver`],
//!   and the connection is made to the addresses it let through, so a name that resolves (or
//!   re-resolves) to loopback, a private network, link-local (the cloud metadata service at
//!   169.254.169.254), or any other special-purpose range is refused; an address literal is
//!   checked before the request, in every spelling the URL parser accepts (`127.1`,
//!   `0x7f.1`, `2130706433`, `[::ffff:127.0.0.1]`, 6to4 and NAT64 forms unwrapped);
//! - unless the operator's allow-list ([`EgressPolicy`]) names the network or the host;
//! - never follows a redirect (a 3xx is a failed attempt), and ignores the proxy environment
//!   variables unless a proxy is configured;
//! - is signed: `X-Shipyard-Signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
//!   with `X-Shipyard-Delivery-Id` (the same on every retry of one alert's delivery: a receiver
//!   can drop repeats) and `X-Shipyard-Timestamp` (Unix seconds: a receiver can refuse old ones),
//!   the scheme MLflow's webhooks use, so a receiver can verify the sender.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use ipnet::IpNet;

/// Why an address may not be contacted, or `None` when it is public.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "a private network",
        (169, 254, _) => "link-local (the cloud metadata service's range)",
        (0, _, _) => "'this network'",
        (100, 64..=127, _) => "shared address space (carrier-grade NAT)",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // Forms that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4);
    }
    if s[0] == 0x2002 {
        // 6to4: 2002:AABB:CCDD::/48 routes to AA.BB.CC.DD.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return special_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64 (64:ff9b::/96) to the IPv4 address in the last 32 bits.
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return special_v4(v4);
    }
    Some(match s[0] {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        0 if s[1..6] == [0, 0, 0, 0, 0] => "an IPv4-compatible address (deprecated)",
        0x64 if s[1] == 0xff9b => "local-use NAT64",
        0x100 if s[1..4] == [0, 0, 0] => "discard-only",
        0x2001 if s[1] < 0x200 => "IETF protocol assignments (Teredo among them)",
        0x2001 if s[1] == 0xdb8 => "documentation",
        0xfc00..=0xfdff => "unique local (a private network)",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local (deprecated)",
        0xff00..=0xffff => "multicast",
        _ => return None,
    })
}

/// Where deliveries may go besides public addresses, and through what.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Networks allowed although special-purpose (e.g. `10.0.0.0/8`, `127.0.0.1`).
    pub networks: Vec<IpNet>,
    /// Host names allowed whatever they resolve to, lowercase.
    pub hosts: Vec<String>,
    /// A proxy every delivery goes through (`http://...`); none by default, whatever the
    /// environment says.
    pub proxy: Option<String>,
}

impl EgressPolicy {
    /// The allow-list from the operator's entries: an address or a network in CIDR notation
    /// (`10.1.0.0/16`, `::1`), or a host name.
    pub fn parse(entries: &[String], proxy: Option<String>) -> Result<EgressPolicy, String> {
        let mut policy = EgressPolicy { proxy, ..EgressPolicy::default() };
        for entry in entries.iter().flat_map(|e| e.split(',')).map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.networks.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(ip));
            } else if entry.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
                policy.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!("'{entry}' is neither an address, a network (CIDR) nor a host name"));
            }
        }
        Ok(policy)
    }

    /// Why `ip` may not be contacted under this policy, or `None`.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = canonical(ip);
        special_purpose(ip).filter(|_| !self.networks.iter().any(|n| n.contains(&ip)))
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (so an allow-list entry matches).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Resolves a delivery's host name once and hands the HTTP client only the addresses the policy
/// allows: the connection is made to what was checked (no second lookup to rebind).
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.allows_host(&host) {
                return Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs);
            }
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                found.into_iter().partition(|a| policy.refusal(a.ip()).is_none());
            if allowed.is_empty() {
                let why = refused
                    .first()
                    .map(|a| format!("{} ({})", a.ip(), policy.refusal(a.ip()).unwrap_or("refused")))
                    .unwrap_or_else(|| "nothing".to_owned());
                let refused: Box<dyn std::error::Error + Send + Sync> = Box::new(NameRefused(format!(
                    "{host} resolves to {why}, which webhooks may not reach (allow it with --webhook-allow)"
                )));
                return Err(refused);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The resolver's refusal, told apart from a lookup failure (a refusal is not retried).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NameRefused(String);

/// Why a delivery was not made or not accepted.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("'{0}' is not an http(s) URL")]
    NotHttp(String),
    #[error("{url}: the address {ip} is {why}, which webhooks may not reach (allow it with --webhook-allow)")]
    Refused { url: String, ip: IpAddr, why: &'static str },
    #[error("{url}: {message}")]
    NameRefused { url: String, message: String },
    #[error("{url}: answered {status}{}", if *redirect { " (a redirect, which is not followed)" } else { "" })]
    Status { url: String, status: u16, redirect: bool },
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
}

impl DeliveryError {
    /// Whether trying again could help (an answer or a network failure, not a refusal).
    pub fn retryable(&self) -> bool {
        matches!(self, DeliveryError::Status { .. } | DeliveryError::Failed { .. })
    }
}

/// The settings of [`Webhooks`].
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    pub policy: EgressPolicy,
    /// The signing key; `None`: the store's shared secret `webhook.signing`
    /// (`shipyard monitor webhook-secret` prints it).
    pub signing_key: Option<String>,
}

/// The secret name under which the store keeps the default signing key.
pub const SIGNING_SECRET: &str = "webhook.signing";

/// The delivery client: guarded resolution, no redirects, no environment proxies, a 5 s
/// timeout per attempt.
#[derive(Clone)]
pub struct Webhooks {
    http: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

/// One delivery's identity and signature headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub delivery_id: String,
    pub timestamp: u64,
    /// `v1,<base64>`.
    pub value: String,
}

/// Signs `body` for delivery `delivery_id` at `timestamp` with `key`.
pub fn sign(key: &[u8], delivery_id: &str, timestamp: u64, body: &[u8]) -> Signature {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(delivery_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Signature { delivery_id: delivery_id.to_owned(), timestamp, value: format!("v1,{digest}") }
}

impl Webhooks {
    pub fn new(policy: EgressPolicy) -> Result<Webhooks, String> {
        shipyard_store::artifacts::ensure_tls_provider();
        let policy = Arc::new(policy);
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() }));
        if let Some(proxy) = &policy.proxy {
            let proxy = reqwest::Proxy::all(proxy).map_err(|e| format!("the webhook proxy '{proxy}': {e}"))?;
            builder = builder.proxy(proxy);
        }
        let http = builder.build().map_err(|e| format!("building the webhook client: {e}"))?;
        Ok(Webhooks { http, policy })
    }

    /// Checks `url` (scheme, and an address literal against the policy) before any connection.
    pub fn check(&self, url: &str) -> Result<reqwest::Url, DeliveryError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| DeliveryError::NotHttp(url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(DeliveryError::NotHttp(url.to_owned()));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if let Some(ip) = literal
            && let Some(why) = self.policy.refusal(ip)
        {
            return Err(DeliveryError::Refused { url: url.to_owned(), ip, why });
        }
        Ok(parsed)
    }

    /// One attempt: POSTs `body` (JSON) to `url`, signed.
    pub async fn deliver(&self, url: &str, body: &[u8], signature: &Signature) -> Result<u16, DeliveryError> {
        let parsed = self.check(url)?;
        let answer = self
            .http
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Shipyard-Delivery-Id", &signature.delivery_id)
            .header("X-Shipyard-Timestamp", signature.timestamp.to_string())
            .header("X-Shipyard-Signature", &signature.value)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| match refusal_in(&e) {
                Some(message) => DeliveryError::NameRefused { url: url.to_owned(), message },
                None => DeliveryError::Failed { url: url.to_owned(), message: error_chain(&e) },
            })?;
        let status = answer.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(DeliveryError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                redirect: status.is_redirection(),
            })
        }
    }
}

/// The resolver's refusal among `e`'s causes.
fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(refused) = c.downcast_ref::<NameRefused>() {
            return Some(refused.0.clone());
        }
        cause = c.source();
    }
    None
}

/// An error with its causes ("error sending request: ...: 127.0.0.1 is loopback ...").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        let hooks = Webhooks::new(EgressPolicy::default()).expect("client");
        matches!(hooks.check(url), Err(DeliveryError::Refused { .. } | DeliveryError::NotHttp(_)))
    }

    #[test]
    fn every_spelling_of_a_special_address_is_refused() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://[fe80::1%25eth0]/",
            "http://u@127.0.0.1/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[fd00:ec2::254]/",
            "http://[::127.0.0.1]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "file:///etc/passwd",
            "gopher://127.0.0.1:25/",
            "ftp://example.com/",
            "http://[::ffff:a9fe:a9fe]/",
        ] {
            assert!(refused(url), "{url} was let through");
        }
        for url in ["https://hooks.example.com/x", "http://93.184.216.34/", "http://[2606:4700::1111]/"] {
            assert!(!refused(url), "{url} was refused");
        }
    }

    #[test]
    fn the_allow_list_admits_named_networks_and_hosts_only() {
        let policy = EgressPolicy::parse(&["127.0.0.1, 10.0.0.0/8".to_owned(), "alerts.internal".to_owned()], None)
            .expect("parse");
        let hooks = Webhooks::new(policy.clone()).expect("client");
        assert!(hooks.check("http://127.0.0.1:9000/hook").is_ok());
        assert!(hooks.check("http://[::ffff:127.0.0.1]/").is_ok(), "the mapped form matches the IPv4 entry");
        assert!(hooks.check("http://10.200.0.1/").is_ok());
        assert!(hooks.check("http://127.0.0.2/").is_err());
        assert!(hooks.check("http://169.254.169.254/").is_err());
        assert!(policy.allows_host("Alerts.Internal."));
        assert!(!policy.allows_host("alerts.internal.evil.com"));
        assert!(EgressPolicy::parse(&["not a host!".to_owned()], None).is_err());
    }

    #[test]
    fn a_signature_is_hmac_sha256_over_id_timestamp_and_body() {
        // Computed independently: python -c "import hmac,hashlib,base64;
        //   print(base64.b64encode(hmac.new(b'key', b'd1.1700000000.{}', hashlib.sha256).digest()))"
        let signature = sign(b"key", "d1", 1_700_000_000, b"{}");
        assert_eq!(signature.value, "v1,RQgESqs9IW4P4+a7EMExtXumM3E+hwEBKsGuUJpW/JI=");
        assert_ne!(sign(b"key", "d2", 1_700_000_000, b"{}").value, signature.value);
        assert_ne!(sign(b"other", "d1", 1_700_000_000, b"{}").value, signature.value);
    }
}
