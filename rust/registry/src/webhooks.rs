//! Webhook delivery: registry events POSTed as JSON to each model's receivers, signed with
//! HMAC-SHA256 (`X-Pilothouse-Signature: sha256=<hex>` over the body), retried with
//! exponential backoff, each outcome recorded in `deliveries`. A background thread does the
//! sending, so a slow or dead receiver never blocks or fails the registry call.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value as Json};
use sha2::Sha256;

use crate::registry::{now_micros, Registry};
use crate::store::{Store, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    VersionCreated,
    AliasMoved,
    ApprovalDecided,
    VersionArchived,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::VersionCreated => "version.created",
            Event::AliasMoved => "alias.moved",
            Event::ApprovalDecided => "approval.decided",
            Event::VersionArchived => "version.archived",
        }
    }

    pub fn names() -> [&'static str; 4] {
        [
            "version.created",
            "alias.moved",
            "approval.decided",
            "version.archived",
        ]
    }

    pub fn from_name(name: &str) -> Option<Event> {
        Some(match name {
            "version.created" => Event::VersionCreated,
            "alias.moved" => Event::AliasMoved,
            "approval.decided" => Event::ApprovalDecided,
            "version.archived" => Event::VersionArchived,
            _ => return None,
        })
    }
}

struct Job {
    webhook_id: i64,
    url: String,
    secret: String,
    event: Event,
    body: String,
    delivery: String,
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
            attempts: ms("PILOTHOUSE_WEBHOOK_ATTEMPTS", 5) as u32,
            first_backoff: Duration::from_millis(ms("PILOTHOUSE_WEBHOOK_BACKOFF_MS", 500)),
            timeout: Duration::from_millis(ms("PILOTHOUSE_WEBHOOK_TIMEOUT_MS", 5000)),
        }
    }
}

pub(crate) struct Webhooks {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    pending: Arc<(Mutex<usize>, Condvar)>,
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhooks {
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let pending = Arc::new((Mutex::new(0usize), Condvar::new()));
        let counter = pending.clone();
        let policy = RetryPolicy::default();
        std::thread::Builder::new()
            .name("pilothouse-webhooks".into())
            .spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(policy.timeout))
                    .http_status_as_error(false)
                    .build()
                    .into();
                for job in receiver {
                    deliver(&agent, store.as_ref(), &job, policy);
                    let (lock, cv) = &*counter;
                    *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                    cv.notify_all();
                }
            })
            .expect("the webhook thread starts");
        Webhooks {
            sender: Mutex::new(Some(sender)),
            pending,
        }
    }

    /// Queues `event` for every receiver of `model` that asked for it. Never fails: a
    /// problem finding receivers is logged to stderr and the registry call goes on.
    pub(crate) fn notify(&self, registry: &Registry, model: &str, event: Event, data: Json) {
        let hooks = match registry.webhooks_for(model, event) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("pilothouse: could not look up webhooks for {model}: {e}");
                return;
            }
        };
        if hooks.is_empty() {
            return;
        }
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = sender.as_ref() else {
            return;
        };
        for (webhook_id, url, secret) in hooks {
            let delivery = uuid::Uuid::new_v4().to_string();
            let body = json!({"event": event.name(), "model": model, "delivery": delivery, "at": now_micros(), "data": data}).to_string();
            *self.pending.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            let job = Job {
                webhook_id,
                url,
                secret,
                event,
                body,
                delivery,
            };
            if sender.send(job).is_err() {
                *self.pending.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            }
        }
    }

    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.pending;
        let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = cv
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

fn deliver(agent: &ureq::Agent, store: &dyn Store, job: &Job, policy: RetryPolicy) {
    let signature = sign(&job.secret, job.body.as_bytes());
    let mut attempts = 0;
    let mut status_code = None;
    let mut error = None;
    let mut backoff = policy.first_backoff;
    let mut ok = false;
    while attempts < policy.attempts.max(1) {
        attempts += 1;
        let result = agent
            .post(&job.url)
            .header("Content-Type", "application/json")
            .header(
                "User-Agent",
                concat!("pilothouse/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-Pilothouse-Event", job.event.name())
            .header("X-Pilothouse-Delivery", &job.delivery)
            .header("X-Pilothouse-Signature", &signature)
            .send(job.body.as_bytes());
        match result {
            Ok(response) => {
                let code = response.status().as_u16();
                status_code = Some(i64::from(code));
                if (200..300).contains(&code) {
                    ok = true;
                    error = None;
                    break;
                }
                error = Some(format!("the receiver answered HTTP {code}"));
            }
            Err(e) => error = Some(e.to_string()),
        }
        if attempts < policy.attempts {
            std::thread::sleep(backoff);
            backoff = backoff.saturating_mul(2).min(Duration::from_secs(60));
        }
    }
    let recorded = store.transaction(&mut |tx| {
        tx.execute(
            "INSERT INTO deliveries (webhook_id, event, delivery, payload, attempts, status_code, ok, error, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                Value::Int(job.webhook_id),
                job.event.name().into(),
                job.delivery.clone().into(),
                job.body.clone().into(),
                Value::Int(i64::from(attempts)),
                status_code.into(),
                Value::Int(i64::from(ok)),
                error.clone().into(),
                Value::Int(now_micros()),
            ],
        )
        .map(|_| ())
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
    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2
        assert_eq!(
            super::sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
