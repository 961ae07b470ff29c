//! Alert channels: where fired and resolved alerts go (a generic webhook signed with
//! HMAC-SHA256, a Slack incoming webhook, the PagerDuty Events API v2), routed by severity
//! and labels, and each alert's message in the channel's own format. A channel is delivered
//! through a `webhooks` row of its kind with no model, so alerts go through the durable
//! outbox with the registry's webhooks: queued in the transaction that records the alert,
//! sent after it commits, retried with backoff, never blocking the caller.

use serde::Serialize;
use serde_json::{json, Value as Json};

use super::alerts::{Alert, AlertRule};
use super::*;
use crate::records::{read_all, Delivery, Named};

/// The kinds of channel.
pub const CHANNEL_KINDS: [&str; 3] = ["webhook", "slack", "pagerduty"];

/// Where PagerDuty's Events API v2 listens (a channel may name another, e.g. a proxy).
const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// What `add_channel` stores.
#[derive(Debug, Clone, Default)]
pub struct NewChannel {
    pub name: String,
    pub kind: String,
    /// The destination: the webhook's or Slack's URL; PagerDuty's is its own by default.
    pub url: Option<String>,
    /// The webhook's signing secret, or PagerDuty's routing key.
    pub secret: String,
    /// The severities it takes (all when empty).
    pub severities: Vec<String>,
    /// Labels a rule must carry (each equal) for its alerts to come here.
    pub labels: BTreeMap<String, String>,
}

/// A channel as listed: never its secret, and its destination without path or query (a
/// Slack URL's path is its credential).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channel {
    pub name: String,
    pub kind: String,
    pub destination: String,
    pub severities: Json,
    pub labels: Json,
    pub created_at: Option<i64>,
    pub created_by: String,
}

const CHANNEL_COLUMNS: &[&str] = &[
    "name",
    "kind",
    "destination",
    "severities",
    "labels",
    "created_at",
    "created_by",
];

fn channel_of(r: Named<'_>) -> Channel {
    Channel {
        name: r.text("name").unwrap_or_default(),
        kind: r.text("kind").unwrap_or_default(),
        destination: r.text("destination").unwrap_or_default(),
        severities: r.json("severities"),
        labels: r.json("labels"),
        created_at: r.int("created_at"),
        created_by: r.text("created_by").unwrap_or_default(),
    }
}

/// `scheme://host[:port]`: what may be shown of a URL.
fn destination(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host); // never credentials
    format!("{scheme}://{host}")
}

impl Registry {
    /// Adds (or replaces, by name) a channel. Its destination is checked now (and again at
    /// each delivery); its secret is stored, never shown, never audited.
    pub fn add_channel(&self, actor: &str, channel: &NewChannel) -> Result<Channel> {
        names::key("channel name", &channel.name)?;
        if !CHANNEL_KINDS.contains(&channel.kind.as_str()) {
            return Err(RegistryError::invalid(
                "channel kind",
                &channel.kind,
                format!("use one of {}", CHANNEL_KINDS.join(", ")),
            ));
        }
        let url = match (channel.kind.as_str(), &channel.url) {
            ("pagerduty", None) => PAGERDUTY_URL.to_string(),
            (_, Some(url)) => url.clone(),
            (kind, None) => {
                return Err(RegistryError::invalid(
                    "channel",
                    &channel.name,
                    format!("a {kind} channel needs its url"),
                ))
            }
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(RegistryError::invalid(
                "channel",
                &channel.name,
                "its url must start with http:// or https://",
            ));
        }
        crate::webhooks::check_destination(&url)
            .map_err(|why| RegistryError::invalid("channel", &channel.name, why))?;
        match channel.kind.as_str() {
            "pagerduty" if channel.secret.trim().is_empty() => {
                return Err(RegistryError::invalid(
                    "channel",
                    &channel.name,
                    "a pagerduty channel needs the routing key of a PagerDuty service (Events API v2 integration)",
                ))
            }
            "webhook" if channel.secret.is_empty() => {
                return Err(RegistryError::invalid(
                    "channel",
                    &channel.name,
                    "a webhook channel needs a secret: receivers check each delivery's X-Pilothouse-Signature with it",
                ))
            }
            _ => {}
        }
        if let Some(s) = channel
            .severities
            .iter()
            .find(|s| !SEVERITIES.contains(&s.as_str()))
        {
            return Err(RegistryError::invalid(
                "channel severity",
                s,
                format!("use {}", SEVERITIES.join(", ")),
            ));
        }
        for k in channel.labels.keys() {
            names::key("channel label", k)?;
        }
        let severities: Vec<String> = if channel.severities.is_empty() {
            SEVERITIES.iter().map(|s| s.to_string()).collect()
        } else {
            channel.severities.clone()
        };
        let shown = destination(&url);
        let at = now_micros();
        self.write(|tx| {
            if let Some(old) = query_one(tx, "SELECT webhook_id FROM alert_channels WHERE name = ?", &[channel.name.as_str().into()])?
                .and_then(|r| r[0].as_i64())
            {
                tx.execute("UPDATE webhooks SET active = 0 WHERE id = ?", &[Value::Int(old)])?;
                tx.execute("DELETE FROM alert_channels WHERE name = ?", &[channel.name.as_str().into()])?;
            }
            let webhook_id = query_one(
                tx,
                "INSERT INTO webhooks (model, url, secret, events, created_at, created_by, kind) VALUES ('', ?, ?, ?, ?, ?, ?) RETURNING id",
                &[url.as_str().into(), channel.secret.as_str().into(), json!(["alert.fired", "alert.resolved"]).to_string().into(), Value::Int(at), actor.into(), channel.kind.as_str().into()],
            )?
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0);
            tx.execute(
                "INSERT INTO alert_channels (name, kind, webhook_id, destination, severities, labels, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &[channel.name.as_str().into(), channel.kind.as_str().into(), Value::Int(webhook_id), shown.as_str().into(), json!(severities).to_string().into(), json!(channel.labels).to_string().into(), Value::Int(at), actor.into()],
            )?;
            audit::append(tx, at, actor, "channel.set", None, &json!({"channel": channel.name, "kind": channel.kind, "destination": shown, "severities": severities, "labels": channel.labels}))?;
            Ok(())
        })?;
        self.read(|tx| {
            read_all(
                tx,
                CHANNEL_COLUMNS,
                "alert_channels WHERE name = ?",
                &[channel.name.as_str().into()],
                channel_of,
            )
        })?
        .pop()
        .ok_or_else(|| RegistryError::not_found("channel", &channel.name))
    }

    pub fn channels(&self) -> Result<Vec<Channel>> {
        self.read(|tx| {
            read_all(
                tx,
                CHANNEL_COLUMNS,
                "alert_channels ORDER BY name",
                &[],
                channel_of,
            )
        })
    }

    pub fn delete_channel(&self, actor: &str, name: &str) -> Result<()> {
        let at = now_micros();
        self.write(|tx| {
            let id = query_one(
                tx,
                "SELECT webhook_id FROM alert_channels WHERE name = ?",
                &[name.into()],
            )?
            .and_then(|r| r[0].as_i64())
            .ok_or_else(|| RegistryError::not_found("channel", name))?;
            tx.execute(
                "UPDATE webhooks SET active = 0 WHERE id = ?",
                &[Value::Int(id)],
            )?;
            tx.execute("DELETE FROM alert_channels WHERE name = ?", &[name.into()])?;
            audit::append(
                tx,
                at,
                actor,
                "channel.delete",
                None,
                &json!({"channel": name}),
            )
        })
    }

    /// What was delivered to a channel (or finally failed), newest first.
    pub fn channel_deliveries(&self, name: &str) -> Result<Vec<Delivery>> {
        self.read(|tx| {
            let id = query_one(
                tx,
                "SELECT webhook_id FROM alert_channels WHERE name = ?",
                &[name.into()],
            )?
            .and_then(|r| r[0].as_i64())
            .ok_or_else(|| RegistryError::not_found("channel", name))?;
            Delivery::of_webhook(tx, id)
        })
    }

    /// Queues an alert's change (`fired` or `resolved`, with the series of the window that
    /// made it) for every channel that takes its severity and whose labels the rule
    /// carries, in the caller's transaction. Answers how many were queued.
    pub(super) fn queue_alert(
        tx: &mut dyn Tx,
        rule: &AlertRule,
        alert: &Alert,
        transition: &str,
        series: &Json,
    ) -> Result<usize> {
        let rows = tx.query(
            "SELECT c.name, c.kind, c.webhook_id, c.severities, c.labels, w.secret FROM alert_channels c JOIN webhooks w ON w.id = c.webhook_id WHERE w.active = 1 ORDER BY c.name",
            &[],
        )?;
        let at = now_micros();
        let mut queued = 0;
        for r in rows {
            let severities: Vec<String> = r[3]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            let wanted: BTreeMap<String, String> = r[4]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            let routed = severities.contains(&alert.severity)
                && wanted
                    .iter()
                    .all(|(k, v)| rule.labels.get(k).and_then(Json::as_str) == Some(v.as_str()));
            if !routed {
                continue;
            }
            let kind = r[1].as_str().unwrap_or("webhook");
            let delivery = uuid::Uuid::new_v4().to_string();
            let event = format!("alert.{transition}");
            let change = Change {
                rule,
                alert,
                transition,
                series,
            };
            let body = message(kind, r[5].as_str().unwrap_or(""), &change, &delivery, at);
            tx.execute(
                "INSERT INTO outbox (webhook_id, event, delivery, payload, attempts, next_at, claimed_until, claimed_by, created_at) VALUES (?, ?, ?, ?, 0, ?, 0, '', ?)",
                &[r[2].clone(), event.into(), delivery.into(), body.to_string().into(), Value::Int(at), Value::Int(at)],
            )?;
            queued += 1;
            // a retraining request goes to the pipelines (webhook channels) with its context
            let retrain = transition == "fired"
                && kind == "webhook"
                && rule
                    .actions
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "retrain"));
            if retrain {
                let delivery = uuid::Uuid::new_v4().to_string();
                let body = retrain_request(rule, alert, series, &delivery, at);
                tx.execute(
                    "INSERT INTO outbox (webhook_id, event, delivery, payload, attempts, next_at, claimed_until, claimed_by, created_at) VALUES (?, 'alert.retrain', ?, ?, 0, ?, 0, '', ?)",
                    &[r[2].clone(), delivery.into(), body.to_string().into(), Value::Int(at), Value::Int(at)],
                )?;
                queued += 1;
            }
        }
        Ok(queued)
    }
}

/// An alert's change as channels tell it: the rule, the alert, fired or resolved, and the
/// series of the window that made the change.
struct Change<'a> {
    rule: &'a AlertRule,
    alert: &'a Alert,
    transition: &'a str,
    series: &'a Json,
}

/// One line that says what happened: `[FIRING critical] churn: slow (latency_p99_ms > 50;
/// latency_p99_ms=80)`.
fn summary(c: &Change<'_>) -> String {
    let values = c
        .series
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| match v.as_f64() {
                    Some(x) => format!("{k}={}", format_number(x)),
                    None => format!("{k}=?"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let state = if c.transition == "fired" {
        "FIRING"
    } else {
        "RESOLVED"
    };
    format!(
        "[{state} {}] {}: {} ({}; {values})",
        c.alert.severity, c.alert.deployment, c.alert.rule, c.rule.when
    )
}

fn format_number(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.4}")
    }
}

/// The channel's message for an alert's change, in the channel's wire format.
fn message(kind: &str, secret: &str, c: &Change<'_>, delivery: &str, at: i64) -> Json {
    let (rule, alert) = (c.rule, c.alert);
    let text = summary(c);
    // stable across the alert's trigger and resolve, so PagerDuty pairs them
    let dedup_key = format!(
        "pilothouse/{}/{}/{}",
        alert.deployment, alert.rule, alert.id
    );
    match kind {
        "slack" => json!({
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        }),
        "pagerduty" if c.transition == "resolved" => json!({
            "routing_key": secret,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        }),
        "pagerduty" => json!({
            "routing_key": secret,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": text,
                "source": format!("pilothouse/{}", alert.deployment),
                // PagerDuty's severities: critical, error, warning, info
                "severity": alert.severity,
                "component": alert.deployment,
                "group": rule.labels.get("team").cloned().unwrap_or(Json::Null),
                "class": alert.rule,
                "custom_details": {"condition": rule.when, "series": c.series, "alert": alert.id},
            },
        }),
        _ => json!({
            "event": format!("alert.{}", c.transition),
            "delivery": delivery,
            "at": at,
            "data": {"alert": alert, "summary": text, "series": c.series, "labels": rule.labels, "condition": rule.when, "actions": rule.actions},
        }),
    }
}

/// A retraining request: which deployment and why, and how to fetch its labelled traffic.
fn retrain_request(
    rule: &AlertRule,
    alert: &Alert,
    series: &Json,
    delivery: &str,
    at: i64,
) -> Json {
    let since_us = alert.fired_window_us.saturating_sub(30 * 86_400_000_000);
    json!({
        "event": "alert.retrain",
        "delivery": delivery,
        "at": at,
        "data": {
            "deployment": alert.deployment,
            "rule": alert.rule,
            "condition": rule.when,
            "alert": alert.id,
            "window_us": alert.fired_window_us,
            "series": series,
            "labels": rule.labels,
            "export": {
                "since_us": since_us,
                "python": format!(
                    "ph.monitor({:?}).export(\"retrain.parquet\", since=<{}>, labelled=True)",
                    alert.deployment, since_us
                ),
            },
        },
    })
}
