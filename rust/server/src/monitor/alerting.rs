//! Alert rules evaluated on a deployment's stored windows: the series each window has
//! (service health, input drift, data quality: every replica's windows merged, as `read`
//! gives them) and every rule stepped on each closed window, the outcome recorded once in
//! the registry (`Registry::advance_alerts`, one transaction per deployment and window). The server runs this as its windows close; the
//! Python client runs the same, adding the performance series it computes.

use std::collections::BTreeMap;

use pilothouse_drift::compare::Options;
use pilothouse_monitor::alert::{Rule, RuleState, State, Transition};
use pilothouse_monitor::series::Side;
use pilothouse_registry::{AlertStep, Registry};
use serde_json::{json, Value as Json};

use super::read::{self, Query};
use crate::error::Result;
use crate::spec::{DeploymentSpec, Target};

/// A window's series by name, per window start (microseconds since the epoch).
pub type Series = BTreeMap<i64, BTreeMap<String, f64>>;

/// A column's name as a series reads it: quoted in backticks unless plain.
fn quoted(column: &str) -> String {
    let plain = column
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if plain && !column.is_empty() {
        column.to_string()
    } else {
        format!("`{column}`")
    }
}

/// The series of each window of `q` (its `bucket_us` the window length): every version's
/// traffic together; quantiles and drift of the version that served the most requests.
pub fn window_series(registry: &Registry, q: &Query) -> Result<Series> {
    let mut out: Series = BTreeMap::new();
    let mut busiest: BTreeMap<i64, (u64, i64)> = BTreeMap::new();
    let mut totals: BTreeMap<i64, (u64, u64, f64, u64)> = BTreeMap::new();
    for row in read::health(registry, q)? {
        let w = row.window_start_us;
        let t = totals.entry(w).or_default();
        t.0 += row.requests;
        t.1 += row.errors;
        t.2 += row.throughput;
        t.3 = t.3.max(row.rss_bytes);
        let (most, _) = busiest.get(&w).copied().unwrap_or((0, row.version));
        if row.requests >= most {
            busiest.insert(w, (row.requests, row.version));
            let values = out.entry(w).or_default();
            for (name, v) in [
                ("latency_p50_ms", row.latency_p50_ms),
                ("latency_p90_ms", row.latency_p90_ms),
                ("latency_p99_ms", row.latency_p99_ms),
                ("queue_p99_ms", row.queue_p99_ms),
            ] {
                if let Some(v) = v {
                    values.insert(name.to_string(), v);
                }
            }
        }
    }
    for (w, (requests, errors, throughput, rss)) in &totals {
        let values = out.entry(*w).or_default();
        values.insert("requests".into(), *requests as f64);
        values.insert("errors".into(), *errors as f64);
        values.insert("throughput".into(), *throughput);
        values.insert("rss_bytes".into(), *rss as f64);
        if *requests > 0 {
            values.insert("error_rate".into(), *errors as f64 / *requests as f64);
        }
    }
    let served_most = |w: i64, version: i64| busiest.get(&w).is_none_or(|(_, v)| *v == version);
    let (columns, shares) = read::drift(registry, q, Side::Inputs, &Options::default())?;
    for s in shares {
        if served_most(s.window_start_us, s.version) {
            let values = out.entry(s.window_start_us).or_default();
            values.insert("drift_share".into(), s.drifted_share);
        }
    }
    for c in columns {
        if !served_most(c.window_start_us, c.version) {
            continue;
        }
        let values = out.entry(c.window_start_us).or_default();
        let name = quoted(&c.column);
        if let Some(x) = c.statistic {
            values.insert(format!("drift.{name}.statistic"), x);
        }
        if let Some(x) = c.p_value {
            values.insert(format!("drift.{name}.p_value"), x);
        }
    }
    let mut failing: BTreeMap<i64, u64> = BTreeMap::new();
    let mut checked: BTreeMap<i64, u64> = BTreeMap::new();
    for row in read::quality(registry, q)? {
        if row.rows == 0 {
            continue;
        }
        let values = out.entry(row.window_start_us).or_default();
        values.insert(
            format!("quality.{}.{}_rate", quoted(&row.column), row.check),
            row.count as f64 / row.rows as f64,
        );
        *failing.entry(row.window_start_us).or_default() += row.count;
        let rows = checked.entry(row.window_start_us).or_default();
        *rows = (*rows).max(row.rows);
    }
    for (w, (requests, ..)) in &totals {
        if *requests > 0 {
            let rate = match checked.get(w) {
                Some(rows) if *rows > 0 => {
                    failing.get(w).copied().unwrap_or(0) as f64 / *rows as f64
                }
                _ => 0.0,
            };
            out.entry(*w)
                .or_default()
                .insert("quality_failure_rate".into(), rate);
        }
    }
    Ok(out)
}

/// Steps every rule of `deployment` on the window starting at `window_us` whose series are
/// `series`, and records each outcome (once across replicas). Answers what changed.
pub fn evaluate_window(
    registry: &Registry,
    actor: &str,
    deployment: &str,
    window_us: i64,
    series: &BTreeMap<String, f64>,
) -> Result<Vec<Json>> {
    let mut steps = Vec::new();
    let mut stepped = Vec::new();
    for stored in registry.alert_rules(Some(deployment))? {
        if stored.window_us >= window_us {
            continue;
        }
        let rule = match Rule::new(
            &stored.when,
            u32::try_from(stored.for_windows).unwrap_or(1),
            stored.resolve_when.as_deref(),
            stored.only_if.as_deref(),
        ) {
            Ok(rule) => rule,
            Err(e) => {
                // stored rules were parsed when added; say so if one no longer parses
                tracing::warn!(event = "alert_rule_unreadable", deployment, rule = %stored.name, error = %e, "an alert rule cannot be evaluated");
                continue;
            }
        };
        let before = RuleState {
            state: match stored.state.as_str() {
                "pending" => State::Pending,
                "firing" => State::Firing,
                _ => State::Inactive,
            },
            held: u32::try_from(stored.held).unwrap_or(0),
        };
        let (after, transition) = rule.step(before, &|n| series.get(n).copied());
        // a window that changed nothing while a series the rule reads is missing is left
        // for a process that has it (the server has no performance series; a client does)
        let missing = rule.series().iter().any(|n| !series.contains_key(n));
        if transition.is_none() && after == before && missing {
            continue;
        }
        let read: serde_json::Map<String, Json> = rule
            .series()
            .into_iter()
            .map(|n| {
                let v = series.get(&n).copied().filter(|x| x.is_finite());
                (n, json!(v))
            })
            .collect();
        steps.push(AlertStep {
            rule_id: stored.id,
            from_window_us: stored.window_us,
            state: after.state.name().to_string(),
            held: i64::from(after.held),
            transition: transition.map(|t| t.name().to_string()),
            series: Json::Object(read),
        });
        stepped.push((stored, after, transition));
    }
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let outcomes = registry.advance_alerts(actor, deployment, window_us, &steps)?;
    let mut changes = Vec::new();
    for ((stored, after, transition), outcome) in stepped.into_iter().zip(outcomes) {
        let (Some(alert), Some(t)) = (outcome, transition) else {
            continue;
        };
        let mut change = json!({
            "rule": stored.name,
            "transition": t.name(),
            "state": after.state.name(),
            "alert": alert,
        });
        let rollback = stored
            .actions
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "rollback"));
        if rollback && t == Transition::Fired {
            change["rollback"] = roll_back(registry, actor, deployment, &stored.name);
        }
        changes.push(change);
    }
    Ok(changes)
}

/// A fired rule's `rollback`: the alias the deployment routes to (its first alias route)
/// moves back to the version it held before. Answers what happened, for the change.
fn roll_back(registry: &Registry, actor: &str, deployment: &str, rule: &str) -> Json {
    let outcome = (|| -> Result<Json> {
        let d = registry.deployment(deployment)?;
        let spec = DeploymentSpec::from_json(&d.spec)?;
        let Some(alias) = spec.routes.iter().find_map(|r| match &r.target {
            Target::Alias(a) => Some(a.clone()),
            Target::Version(_) => None,
        }) else {
            return Ok(
                json!({"error": "the deployment routes to fixed versions, not an alias: nothing to roll back"}),
            );
        };
        let reason = format!("alert rule '{rule}' of deployment {deployment} fired");
        let v = registry.roll_back_alias(actor, &d.model, &alias, &reason)?;
        Ok(json!({"alias": alias, "version": v.version}))
    })();
    match outcome {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(event = "alert_rollback_refused", deployment, rule, error = %e, "the rollback an alert asked for did not happen");
            json!({"error": e.to_string()})
        }
    }
}

/// Evaluates the closed windows of `q` (those ending by `now_us`), oldest first, adding
/// `extra` series to each (the performance series the Python client computes). Answers the
/// changes with their window's start.
pub fn evaluate(
    registry: &Registry,
    actor: &str,
    q: &Query,
    now_us: i64,
    extra: &Series,
) -> Result<Vec<Json>> {
    if registry.alert_rules(Some(&q.deployment))?.is_empty() {
        return Ok(Vec::new());
    }
    let mut series = window_series(registry, q)?;
    for (w, values) in extra {
        series
            .entry(*w)
            .or_default()
            .extend(values.iter().map(|(k, v)| (k.clone(), *v)));
    }
    let mut changes = Vec::new();
    for (start, values) in &series {
        if start.saturating_add(q.bucket_us) > now_us {
            continue; // still open
        }
        for mut change in evaluate_window(registry, actor, &q.deployment, *start, values)? {
            change["window_start_us"] = json!(start);
            changes.push(change);
        }
    }
    Ok(changes)
}
