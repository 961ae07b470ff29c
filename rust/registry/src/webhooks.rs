//! Webhook delivery: registry events POSTed as JSON to each model's receivers, signed with
//! HMAC-SHA256 (`X-Pilothouse-Signature: sha256=<hex>` over the body), retried with
//! exponential backoff, each outcome recorded in `deliveries`.
//!
//! Deliveries wait in the registry's `outbox` table, not in a process's memory: a process
//! that exits loses none, and any process with the registry open drains them (rows are
//! claimed with a lease, so two processes never send the same attempt). A background thread
//! does the sending, so a slow or dead receiver never blocks or fails the registry call.
//! HTTPS is verified against the bundled Mozilla roots; redirects are not followed; private,
//! loopback and link-local destinations are refused unless `PILOTHOUSE_WEBHOOK_ALLOW_PRIVATE`
//! is set (a registry user must not be able to make the server call into its own network).

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value as Json};
use sha2::Sha256;

use crate::now_micros;
use crate::store::{Store, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    VersionCreated,
    AliasMoved,
    ApprovalDecided,
    VersionArchived,
    CheckRecorded,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::VersionCreated => "version.created",
            Event::AliasMoved => "alias.moved",
            Event::ApprovalDecided => "approval.decided",
            Event::VersionArchived => "version.archived",
            Event::CheckRecorded => "check.recorded",
        }
    }

    pub fn names() -> [&'static str; 5] {
        [
            "version.created",
            "alias.moved",
            "approval.decided",
            "version.archived",
            "check.recorded",
        ]
    }

    pub fn from_name(name: &str) -> Option<Event> {
        Some(match name {
            "version.created" => Event::VersionCreated,
            "alias.moved" => Event::AliasMoved,
            "approval.decided" => Event::ApprovalDecided,
            "version.archived" => Event::VersionArchived,
            "check.recorded" => Event::CheckRecorded,
            _ => return None,
        })
    }
}

/// One row of the outbox, claimed for an attempt.
struct Job {
    id: i64,
    webhook_id: i64,
    /// webhook (signed, with pilothouse's headers), slack or pagerduty (their own formats).
    kind: String,
    url: String,
    secret: String,
    event: String,
    payload: String,
    delivery: String,
    attempts: u32,
}

/// How hard delivery tries: attempts and the first backoff (doubling each retry).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let ms = |var: &str, default: u64| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        RetryPolicy {
            attempts: ms("PILOTHOUSE_WEBHOOK_ATTEMPTS", 5).clamp(1, 100) as u32,
            first_backoff: Duration::from_millis(
                ms("PILOTHOUSE_WEBHOOK_BACKOFF_MS", 500).min(3_600_000),
            ),
            timeout: Duration::from_millis(
                ms("PILOTHOUSE_WEBHOOK_TIMEOUT_MS", 5000).clamp(1, 600_000),
            ),
        }
    }
}

/// Whether private, loopback and link-local destinations are allowed (tests, on-premise
/// receivers): `PILOTHOUSE_WEBHOOK_ALLOW_PRIVATE=1`.
fn private_allowed() -> bool {
    std::env::var("PILOTHOUSE_WEBHOOK_ALLOW_PRIVATE")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
}

/// Why an address is not a public destination, if it is not.
fn non_public(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
                Some("not a unicast address")
            } else if v4.is_private()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240
                || o[0] == 0
            {
                Some("a private or reserved address")
            } else if v4.is_link_local() {
                Some("a link-local address (cloud metadata lives there)")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
                Some("not a unicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                return Some("a loopback address");
            }
            if v6.is_unspecified() || v6.is_multicast() {
                return Some("not a unicast address");
            }
            let seg = v6.segments();
            let first = seg[0];
            // Forms that carry an IPv4 address inside: judge that address.
            let embedded = match seg {
                [0x64, 0xff9b, 0, 0, 0, 0, a, b] | [0, 0, 0, 0, 0, 0, a, b] if a != 0 || b != 0 => {
                    Some(std::net::Ipv4Addr::from(
                        (u32::from(a) << 16) | u32::from(b),
                    ))
                }
                [0x2002, a, b, ..] => Some(std::net::Ipv4Addr::from(
                    (u32::from(a) << 16) | u32::from(b),
                )),
                _ => None,
            };
            if let Some(v4) = embedded {
                return non_public(IpAddr::V4(v4));
            }
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a unicast address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a private address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else {
                None
            }
        }
    }
}

/// Resolves the URL's host and refuses it when any address it resolves to is not public
/// (unless allowed). The message says what to do about it.
pub(crate) fn check_destination(url: &str) -> Result<(), String> {
    check_destination_kind(url).map_err(|(why, _)| why)
}

/// As `check_destination`, with whether the refusal is final (a private address, a bad URL)
/// or may pass later (the name does not resolve now).
fn check_destination_kind(url: &str) -> Result<(), (String, bool)> {
    let permanent = |m: String| (m, true);
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| permanent(format!("the webhook URL is not a URL: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| permanent("the webhook URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    if private_allowed() {
        return Ok(());
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| (format!("cannot resolve {host}: {e}"), false))?
            .map(|a| a.ip())
            .collect(),
    };
    for ip in addresses {
        if let Some(why) = non_public(ip) {
            return Err(permanent(format!(
                "{host} resolves to {ip}, {why}: webhooks go to public destinations only; set PILOTHOUSE_WEBHOOK_ALLOW_PRIVATE=1 where the registry may call into its own network"
            )));
        }
    }
    Ok(())
}

/// Rows one process claims at a time; its lease covers trying every one of them.
const CLAIM: i64 = 4;

/// The system resolver, refusing every name that resolves to a non-public address (unless
/// private destinations are allowed). ureq connects only to what this returns.
#[derive(Debug)]
struct PublicOnly(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for PublicOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addresses = self.0.resolve(uri, config, timeout)?;
        if !private_allowed() {
            if let Some((ip, why)) = addresses
                .iter()
                .find_map(|a| non_public(a.ip()).map(|why| (a.ip(), why)))
            {
                return Err(ureq::Error::Other(
                    format!(
                        "{} resolved to {ip}, {why}, when connecting: webhooks go to public destinations only",
                        uri.host().unwrap_or("?")
                    )
                    .into(),
                ));
            }
        }
        Ok(addresses)
    }
}

/// How long a process holds claimed rows before another may take them over: every claimed
/// row's attempt at the longest timeout, and a margin.
fn lease(policy: RetryPolicy) -> Duration {
    policy.timeout * CLAIM as u32 + Duration::from_secs(60)
}

pub(crate) struct Webhooks {
    /// Set when new rows may be due: the sender thread drains the outbox.
    wake: Arc<(Mutex<bool>, Condvar)>,
    store: Arc<dyn Store>,
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhooks {
    /// Starts the sender thread, which first drains what earlier processes left.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let wake = Arc::new((Mutex::new(true), Condvar::new()));
        let (signal, thread_store) = (Arc::downgrade(&wake), store.clone());
        let policy = RetryPolicy::default();
        std::thread::Builder::new()
            .name("pilothouse-webhooks".into())
            .spawn(move || {
                let config = ureq::Agent::config_builder()
                    .timeout_global(Some(policy.timeout))
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .build();
                // The addresses checked are the addresses connected to: a name that resolves
                // to a public address for a check and a private one for the connection (DNS
                // rebinding) cannot get through.
                let agent = ureq::Agent::with_parts(
                    config,
                    ureq::unversioned::transport::DefaultConnector::new(),
                    PublicOnly(ureq::unversioned::resolver::DefaultResolver::default()),
                );
                let owner = uuid::Uuid::new_v4().to_string();
                // The thread ends with the last handle of its registry.
                while let Some(wake) = signal.upgrade() {
                    let next_due = drain(&agent, thread_store.as_ref(), policy, &owner);
                    let (lock, cv) = &*wake;
                    let mut woken = lock.lock().unwrap_or_else(|e| e.into_inner());
                    if !*woken {
                        // Until the next retry is due, or a while: rows other processes
                        // left are picked up then, and the thread notices its registry
                        // going away.
                        let idle = Duration::from_secs(2);
                        woken = cv
                            .wait_timeout(woken, next_due.unwrap_or(idle).min(idle))
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    *woken = false;
                }
            })
            .expect("the webhook thread starts");
        Webhooks { wake, store }
    }

    pub(crate) fn poke(&self) {
        let (lock, cv) = &*self.wake;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    /// The active receivers of `model` that asked for `event`: (id, url, secret).
    fn receivers(&self, model: &str, event: Event) -> crate::Result<Vec<(i64, String, String)>> {
        let mut found = Vec::new();
        self.store.read(&mut |tx| {
            found = tx
                .query(
                    "SELECT id, url, secret, events FROM webhooks WHERE model = ? AND active = 1",
                    &[model.into()],
                )?
                .into_iter()
                .filter(|r| {
                    r[3].as_str()
                        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
                        .is_some_and(|events| events.iter().any(|e| e == event.name()))
                })
                .map(|r| {
                    (
                        r[0].as_i64().unwrap_or(0),
                        r[1].as_str().unwrap_or("").into(),
                        r[2].as_str().unwrap_or("").into(),
                    )
                })
                .collect();
            Ok(())
        })?;
        Ok(found)
    }

    /// Puts `event` in the outbox for every receiver of `model` that asked for it. Never
    /// fails the registry call: a problem is logged to stderr.
    pub(crate) fn notify(&self, model: &str, event: Event, data: Json) {
        let hooks = match self.receivers(model, event) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("pilothouse: could not look up webhooks for {model}: {e}");
                return;
            }
        };
        if hooks.is_empty() {
            return;
        }
        let at = now_micros();
        let queued = self.store.transaction(&mut |tx| {
            for (webhook_id, _, _) in &hooks {
                let delivery = uuid::Uuid::new_v4().to_string();
                let body = json!({"event": event.name(), "model": model, "delivery": delivery, "at": at, "data": data}).to_string();
                tx.execute(
                    "INSERT INTO outbox (webhook_id, event, delivery, payload, attempts, next_at, claimed_until, claimed_by, created_at) VALUES (?, ?, ?, ?, 0, ?, 0, '', ?)",
                    &[Value::Int(*webhook_id), event.name().into(), delivery.into(), body.into(), Value::Int(at), Value::Int(at)],
                )?;
            }
            Ok(())
        });
        match queued {
            Ok(()) => self.poke(),
            Err(e) => eprintln!("pilothouse: could not queue webhooks for {model}: {e}"),
        }
    }

    /// Waits until the outbox is empty or `timeout` passes; true when it is empty.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.poke();
            let left = pending(self.store.as_ref()).unwrap_or(1);
            if left == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn pending(store: &dyn Store) -> crate::error::Result<i64> {
    let mut n = 0;
    store.transaction(&mut |tx| {
        n = tx
            .query("SELECT COUNT(*) FROM outbox", &[])?
            .first()
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0);
        Ok(())
    })?;
    Ok(n)
}

/// Claims what is due and tries each once; returns how long until the next retry is due.
fn drain(
    agent: &ureq::Agent,
    store: &dyn Store,
    policy: RetryPolicy,
    owner: &str,
) -> Option<Duration> {
    loop {
        let now = now_micros();
        let mut jobs: Vec<Job> = Vec::new();
        let mut next_due: Option<i64> = None;
        let claimed = store.transaction(&mut |tx| {
            jobs.clear();
            let rows = tx.query(
                "SELECT o.id, o.webhook_id, o.event, o.delivery, o.payload, o.attempts, w.url, w.secret, w.kind FROM outbox o \
                 JOIN webhooks w ON w.id = o.webhook_id WHERE o.next_at <= ? AND o.claimed_until < ? ORDER BY o.id LIMIT ?",
                &[Value::Int(now), Value::Int(now), Value::Int(CLAIM)],
            )?;
            for r in rows {
                let id = r[0].as_i64().unwrap_or(0);
                // Another process may have claimed it since the read: only a row this
                // update changes is ours.
                let taken = tx.execute(
                    "UPDATE outbox SET claimed_until = ?, claimed_by = ? WHERE id = ? AND claimed_until < ?",
                    &[Value::Int(now + lease(policy).as_micros() as i64), owner.into(), Value::Int(id), Value::Int(now)],
                )?;
                if taken == 1 {
                    jobs.push(Job {
                        id,
                        webhook_id: r[1].as_i64().unwrap_or(0),
                        event: r[2].as_str().unwrap_or("").into(),
                        delivery: r[3].as_str().unwrap_or("").into(),
                        payload: r[4].as_str().unwrap_or("").into(),
                        attempts: u32::try_from(r[5].as_i64().unwrap_or(0)).unwrap_or(0),
                        url: r[6].as_str().unwrap_or("").into(),
                        secret: r[7].as_str().unwrap_or("").into(),
                        kind: r[8].as_str().unwrap_or("webhook").into(),
                    });
                }
            }
            next_due = tx
                .query("SELECT MIN(next_at) FROM outbox WHERE next_at > ?", &[Value::Int(now)])?
                .first()
                .and_then(|r| r[0].as_i64());
            Ok(())
        });
        if let Err(e) = claimed {
            eprintln!("pilothouse: cannot read the webhook outbox: {e}");
            return Some(Duration::from_secs(1));
        }
        if jobs.is_empty() {
            return next_due.map(|t| Duration::from_micros((t - now).max(0) as u64));
        }
        for job in &jobs {
            attempt(agent, store, job, policy, owner);
        }
    }
}

/// Posts the job's payload: Slack and PagerDuty read their own JSON; only our webhooks
/// carry our headers and signature.
fn send(
    agent: &ureq::Agent,
    job: &Job,
    signature: &str,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let request = agent
        .post(&job.url)
        .header("Content-Type", "application/json")
        .header(
            "User-Agent",
            concat!("pilothouse/", env!("CARGO_PKG_VERSION")),
        );
    let request = if job.kind == "webhook" {
        request
            .header("X-Pilothouse-Event", &job.event)
            .header("X-Pilothouse-Delivery", &job.delivery)
            .header("X-Pilothouse-Signature", signature)
    } else {
        request
    };
    request.send(job.payload.as_bytes())
}

/// One attempt: on success or a final failure the outcome goes to `deliveries` and the row
/// leaves the outbox; otherwise the row waits for its next try.
fn attempt(agent: &ureq::Agent, store: &dyn Store, job: &Job, policy: RetryPolicy, owner: &str) {
    let signature = sign(&job.secret, job.payload.as_bytes());
    let attempts = job.attempts + 1;
    let (ok, status_code, error, permanent) = match check_destination_kind(&job.url) {
        Err((why, permanent)) => (false, None, Some(why), permanent),
        Ok(()) => match send(agent, job, &signature) {
            Ok(response) => {
                let code = response.status().as_u16();
                match code {
                    200..=299 => (true, Some(i64::from(code)), None, false),
                    300..=399 => (
                        false,
                        Some(i64::from(code)),
                        Some(format!(
                            "the receiver answered HTTP {code}, a redirect (to {}); redirects are not followed: register the final URL",
                            response
                                .headers()
                                .get("location")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("?")
                        )),
                        true,
                    ),
                    _ => (
                        false,
                        Some(i64::from(code)),
                        Some(format!("the receiver answered HTTP {code}")),
                        false,
                    ),
                }
            }
            Err(e) => (false, None, Some(e.to_string()), false),
        },
    };
    let done = ok || permanent || attempts >= policy.attempts;
    let backoff = policy
        .first_backoff
        .saturating_mul(1u32 << (attempts - 1).min(16))
        .min(Duration::from_secs(3600));
    let recorded = store.transaction(&mut |tx| {
        // Still ours? A lease that ran out let another process take the row: its outcome
        // is then the one recorded.
        let ours = tx
            .query(
                "SELECT 1 FROM outbox WHERE id = ? AND claimed_by = ?",
                &[Value::Int(job.id), owner.into()],
            )?
            .len()
            == 1;
        if !ours {
            return Ok(());
        }
        if done {
            tx.execute(
                "INSERT INTO deliveries (webhook_id, event, delivery, payload, attempts, status_code, ok, error, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                &[
                    Value::Int(job.webhook_id),
                    job.event.clone().into(),
                    job.delivery.clone().into(),
                    job.payload.clone().into(),
                    Value::Int(i64::from(attempts)),
                    status_code.into(),
                    Value::Int(i64::from(ok)),
                    error.clone().into(),
                    Value::Int(now_micros()),
                ],
            )?;
            tx.execute("DELETE FROM outbox WHERE id = ?", &[Value::Int(job.id)])?;
        } else {
            tx.execute(
                "UPDATE outbox SET attempts = ?, next_at = ?, claimed_until = 0, claimed_by = '', last_status = ?, last_error = ? WHERE id = ?",
                &[
                    Value::Int(i64::from(attempts)),
                    Value::Int(now_micros() + backoff.as_micros() as i64),
                    status_code.into(),
                    error.clone().into(),
                    Value::Int(job.id),
                ],
            )?;
        }
        Ok(())
    });
    if let Err(e) = recorded {
        eprintln!(
            "pilothouse: webhook delivery {} could not be recorded: {e}",
            job.delivery
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_destinations_are_named() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("192.168.0.1", "private"),
            ("172.16.0.1", "private"),
            ("100.64.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("::1", "loopback"),
            ("fd00::1", "private"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("0.0.0.0", "unicast"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("::10.0.0.1", "private"),
            ("2002:7f00:1::", "loopback"),
            ("198.18.0.1", "reserved"),
            ("240.0.0.1", "reserved"),
        ] {
            let got = non_public(ip.parse().unwrap()).unwrap_or("public");
            assert!(got.contains(why), "{ip}: {got}");
        }
        for ip in ["8.8.8.8", "2001:4860:4860::8888", "172.32.0.1"] {
            assert_eq!(non_public(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2
        assert_eq!(
            super::sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
