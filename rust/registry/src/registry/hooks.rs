//! Webhook receivers: added (destination checked), and their deliveries read back. What is
//! queued and sent, and how, is `webhooks.rs`'s.

use serde_json::{json, Value as Json};

use super::*;

impl Registry {
    // -- webhooks ---------------------------------------------------------------------------

    pub fn add_webhook(
        &self,
        actor: &str,
        model: &str,
        url: &str,
        secret: &str,
        events: &[String],
    ) -> Result<i64> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(RegistryError::invalid(
                "webhook URL",
                url,
                "it must start with http:// or https://",
            ));
        }
        // Refused now rather than at every delivery (checked again then: DNS can change).
        crate::webhooks::check_destination(url)
            .map_err(|why| RegistryError::invalid("webhook URL", url, why))?;
        for e in events {
            if Event::from_name(e).is_none() {
                return Err(RegistryError::invalid(
                    "webhook event",
                    e,
                    format!("use one of {}", Event::names().join(", ")),
                ));
            }
        }
        let at = now_micros();
        self.write(|tx| {
            query_one(tx, "SELECT 1 FROM models WHERE name = ?", &[model.into()])?.ok_or_else(|| RegistryError::not_found("model", model))?;
            let events = if events.is_empty() { Event::names().iter().map(|s| s.to_string()).collect() } else { events.to_vec() };
            let id = query_one(
                tx,
                "INSERT INTO webhooks (model, url, secret, events, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                &[model.into(), url.into(), secret.into(), Json::from(events.clone()).to_string().into(), Value::Int(at), actor.into()],
            )?
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0);
            audit::append(tx, at, actor, "webhook.add", Some(model), &json!({"id": id, "url": url, "events": events}))?;
            Ok(id)
        })
    }

    pub fn deliveries(&self, model: &str) -> Result<Vec<Delivery>> {
        self.read(|tx| Delivery::of_model(tx, model))
    }

    /// Waits until queued webhook deliveries are done or `timeout` passes; true when done.
    pub fn flush_webhooks(&self, timeout: std::time::Duration) -> bool {
        self.hooks.flush(timeout)
    }
}
