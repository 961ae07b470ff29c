//! Alerts: rules per deployment, each rule's state as windows are evaluated, the alerts it
//! fired and resolved, silences and acknowledgements, with their record types. Conditions
//! are stored as written; parsing and stepping them is the monitor crate's, done by the
//! caller, which hands each window's outcome to [`Registry::advance_alerts`]. That call is
//! where replicas meet: the first to advance a rule past a window wins, and the others find
//! the window done, so every transition is recorded (and later delivered) once.

use serde::Serialize;
use serde_json::{json, Value as Json};

use super::*;
use crate::records::{read_all, Named};

/// The severities a rule may have, least urgent first.
pub const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];
/// The actions a rule may ask for when it fires.
pub const ACTIONS: [&str; 2] = ["retrain", "rollback"];

/// What `add_alert_rule` stores. The conditions must have been parsed by the caller.
#[derive(Debug, Clone, Default)]
pub struct NewAlertRule {
    pub deployment: String,
    pub name: String,
    pub when: String,
    pub for_windows: i64,
    pub resolve_when: Option<String>,
    pub only_if: Option<String>,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    pub actions: Vec<String>,
}

/// A stored rule and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    pub id: i64,
    pub deployment: String,
    pub name: String,
    pub when: String,
    pub for_windows: i64,
    pub resolve_when: Option<String>,
    pub only_if: Option<String>,
    pub severity: String,
    pub labels: Json,
    pub actions: Json,
    pub created_at: Option<i64>,
    pub created_by: String,
    /// inactive, pending or firing.
    pub state: String,
    /// Windows in a row the condition has held.
    pub held: i64,
    /// The start of the last window evaluated (0: none yet).
    pub window_us: i64,
}

/// One alert: fired by a rule at a window, resolved later (or still firing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: i64,
    pub rule_id: i64,
    pub deployment: String,
    pub rule: String,
    pub severity: String,
    /// firing or resolved.
    pub state: String,
    pub fired_at: Option<i64>,
    pub fired_window_us: i64,
    pub resolved_at: Option<i64>,
    pub resolved_window_us: Option<i64>,
    /// The series the rule read in the window that fired it.
    pub series: Json,
    pub silenced: bool,
    pub acked_by: Option<String>,
    pub acked_at: Option<i64>,
}

/// What evaluating one rule on a window gave, for [`Registry::advance_alerts`].
#[derive(Debug, Clone)]
pub struct AlertStep {
    pub rule_id: i64,
    /// The last window of the state the step was computed from: the step is refused when
    /// another process has advanced the rule since (compare and set).
    pub from_window_us: i64,
    /// inactive, pending or firing.
    pub state: String,
    pub held: i64,
    /// fired, resolved, pending, cleared, or none.
    pub transition: Option<String>,
    /// The series the rule read.
    pub series: Json,
}

/// A silence: a deployment's alerts (of one rule, or all) fire quietly until it expires.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    pub deployment: String,
    pub rule: Option<String>,
    pub until_us: i64,
    pub reason: String,
    pub created_by: String,
    pub created_at: Option<i64>,
}

const RULE_COLUMNS: &[&str] = &[
    "id",
    "deployment",
    "name",
    "condition",
    "for_windows",
    "resolve_when",
    "only_if",
    "severity",
    "labels",
    "actions",
    "created_at",
    "created_by",
    "state",
    "held",
    "window_us",
];

const ALERT_COLUMNS: &[&str] = &[
    "id",
    "rule_id",
    "deployment",
    "rule",
    "severity",
    "state",
    "fired_at",
    "fired_window_us",
    "resolved_at",
    "resolved_window_us",
    "series",
    "silenced",
    "acked_by",
    "acked_at",
];

const SILENCE_COLUMNS: &[&str] = &[
    "id",
    "deployment",
    "rule",
    "until_us",
    "reason",
    "created_by",
    "created_at",
];

fn rule_of(r: Named<'_>) -> AlertRule {
    AlertRule {
        id: r.int("id").unwrap_or(0),
        deployment: r.text("deployment").unwrap_or_default(),
        name: r.text("name").unwrap_or_default(),
        when: r.text("condition").unwrap_or_default(),
        for_windows: r.int("for_windows").unwrap_or(1),
        resolve_when: r.text("resolve_when"),
        only_if: r.text("only_if"),
        severity: r.text("severity").unwrap_or_default(),
        labels: r.json("labels"),
        actions: r.json("actions"),
        created_at: r.int("created_at"),
        created_by: r.text("created_by").unwrap_or_default(),
        state: r.text("state").unwrap_or_else(|| "inactive".into()),
        held: r.int("held").unwrap_or(0),
        window_us: r.int("window_us").unwrap_or(0),
    }
}

fn alert_of(r: Named<'_>) -> Alert {
    Alert {
        id: r.int("id").unwrap_or(0),
        rule_id: r.int("rule_id").unwrap_or(0),
        deployment: r.text("deployment").unwrap_or_default(),
        rule: r.text("rule").unwrap_or_default(),
        severity: r.text("severity").unwrap_or_default(),
        state: r.text("state").unwrap_or_default(),
        fired_at: r.int("fired_at"),
        fired_window_us: r.int("fired_window_us").unwrap_or(0),
        resolved_at: r.int("resolved_at"),
        resolved_window_us: r.int("resolved_window_us"),
        series: r.json("series"),
        silenced: r.flag("silenced").unwrap_or(false),
        acked_by: r.text("acked_by"),
        acked_at: r.int("acked_at"),
    }
}

fn silence_of(r: Named<'_>) -> Silence {
    Silence {
        id: r.int("id").unwrap_or(0),
        deployment: r.text("deployment").unwrap_or_default(),
        rule: r.text("rule"),
        until_us: r.int("until_us").unwrap_or(0),
        reason: r.text("reason").unwrap_or_default(),
        created_by: r.text("created_by").unwrap_or_default(),
        created_at: r.int("created_at"),
    }
}

/// The rules `FROM alert_rules LEFT JOIN alert_states` selects, each with its state.
fn rules_where(tx: &mut dyn Tx, rest: &str, params: &[Value]) -> Result<Vec<AlertRule>> {
    // the state columns come from the join; the rest from the rule
    let sql = format!(
        "SELECT r.id, r.deployment, r.name, r.condition, r.for_windows, r.resolve_when, r.only_if, r.severity, r.labels, r.actions, r.created_at, r.created_by, s.state, s.held, s.window_us \
         FROM alert_rules r LEFT JOIN alert_states s ON s.rule_id = r.id {rest}"
    );
    Ok(tx
        .query(&sql, params)?
        .iter()
        .map(|row| rule_of(Named::new(RULE_COLUMNS, row)))
        .collect())
}

fn lock(tx: &mut dyn Tx, deployment: &str) -> Result<()> {
    tx.lock(&format!("pilothouse.alerts.{deployment}"))
}

impl Registry {
    /// Adds (or replaces, by name) a rule on a deployment; its state starts over.
    pub fn add_alert_rule(&self, actor: &str, rule: &NewAlertRule) -> Result<AlertRule> {
        names::deployment(&rule.deployment)?;
        names::key("alert rule name", &rule.name)?;
        if !SEVERITIES.contains(&rule.severity.as_str()) {
            return Err(RegistryError::invalid(
                "severity",
                &rule.severity,
                format!("use one of {}", SEVERITIES.join(", ")),
            ));
        }
        if let Some(a) = rule.actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
            return Err(RegistryError::invalid(
                "alert action",
                a,
                format!("use {}", ACTIONS.join(" or ")),
            ));
        }
        for (k, v) in &rule.labels {
            names::key("alert label", k)?;
            if v.len() > 256 {
                return Err(RegistryError::invalid(
                    "alert label",
                    k,
                    "its value is longer than 256 characters",
                ));
            }
        }
        if !(1..=10_000).contains(&rule.for_windows) {
            return Err(RegistryError::invalid(
                "for_windows",
                rule.for_windows.to_string(),
                "it is from 1 to 10000",
            ));
        }
        let at = now_micros();
        let labels = json!(rule.labels);
        let actions = json!(rule.actions);
        let id = self.write(|tx| {
            lock(tx, &rule.deployment)?;
            let model = query_one(tx, "SELECT model FROM deployments WHERE name = ?", &[rule.deployment.as_str().into()])?
                .and_then(|r| r[0].as_str().map(str::to_string))
                .ok_or_else(|| RegistryError::not_found("deployment", &rule.deployment))?;
            let old = query_one(tx, "SELECT id FROM alert_rules WHERE deployment = ? AND name = ?", &[rule.deployment.as_str().into(), rule.name.as_str().into()])?
                .and_then(|r| r[0].as_i64());
            if let Some(old) = old {
                tx.execute("DELETE FROM alert_states WHERE rule_id = ?", &[Value::Int(old)])?;
                tx.execute("DELETE FROM alert_rules WHERE id = ?", &[Value::Int(old)])?;
                // an alert the old rule left firing is closed with it
                tx.execute("UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE rule_id = ? AND state = 'firing'", &[Value::Int(at), Value::Int(old)])?;
            }
            let id = query_one(
                tx,
                "INSERT INTO alert_rules (deployment, name, condition, for_windows, resolve_when, only_if, severity, labels, actions, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                &[
                    rule.deployment.as_str().into(),
                    rule.name.as_str().into(),
                    rule.when.as_str().into(),
                    Value::Int(rule.for_windows),
                    rule.resolve_when.clone().map_or(Value::Null, Value::Text),
                    rule.only_if.clone().map_or(Value::Null, Value::Text),
                    rule.severity.as_str().into(),
                    labels.to_string().into(),
                    actions.to_string().into(),
                    Value::Int(at),
                    actor.into(),
                ],
            )?
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0);
            tx.execute("INSERT INTO alert_states (rule_id, state, held, window_us) VALUES (?, 'inactive', 0, 0)", &[Value::Int(id)])?;
            audit::append(
                tx,
                at,
                actor,
                "alert_rule.set",
                Some(&model),
                &json!({"deployment": rule.deployment, "rule": rule.name, "when": rule.when, "for_windows": rule.for_windows,
                        "resolve_when": rule.resolve_when, "only_if": rule.only_if, "severity": rule.severity,
                        "labels": labels, "actions": actions, "replaced": old}),
            )?;
            Ok(id)
        })?;
        self.read(|tx| rules_where(tx, "WHERE r.id = ?", &[Value::Int(id)]))?
            .pop()
            .ok_or_else(|| RegistryError::not_found("alert rule", id.to_string()))
    }

    /// A deployment's rules (every deployment's with `None`), by deployment and name.
    pub fn alert_rules(&self, deployment: Option<&str>) -> Result<Vec<AlertRule>> {
        self.read(|tx| match deployment {
            Some(d) => rules_where(
                tx,
                "WHERE r.deployment = ? ORDER BY r.deployment, r.name",
                &[d.into()],
            ),
            None => rules_where(tx, "ORDER BY r.deployment, r.name", &[]),
        })
    }

    pub fn delete_alert_rule(&self, actor: &str, deployment: &str, name: &str) -> Result<()> {
        let at = now_micros();
        self.write(|tx| {
            lock(tx, deployment)?;
            let id = query_one(tx, "SELECT id FROM alert_rules WHERE deployment = ? AND name = ?", &[deployment.into(), name.into()])?
                .and_then(|r| r[0].as_i64())
                .ok_or_else(|| RegistryError::not_found("alert rule", format!("{deployment}/{name}")))?;
            let model = query_one(tx, "SELECT model FROM deployments WHERE name = ?", &[deployment.into()])?.and_then(|r| r[0].as_str().map(str::to_string));
            tx.execute("DELETE FROM alert_states WHERE rule_id = ?", &[Value::Int(id)])?;
            tx.execute("DELETE FROM alert_rules WHERE id = ?", &[Value::Int(id)])?;
            tx.execute("UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE rule_id = ? AND state = 'firing'", &[Value::Int(at), Value::Int(id)])?;
            audit::append(tx, at, actor, "alert_rule.delete", model.as_deref(), &json!({"deployment": deployment, "rule": name}))
        })
    }

    /// Records what evaluating rules of `deployment` on the window starting at `window_us`
    /// gave, in one transaction: each rule's new state and the transition (`fired`,
    /// `resolved`, or none) with the series it read. A rule already evaluated on that window
    /// (or a later one), by this process or another replica, is left as it is and answers
    /// `None`: each window advances a rule once. Otherwise it answers the alert opened or
    /// closed, if any. A fired alert opens an alert (quiet when a silence covers it); a
    /// resolved one closes it; both are audited and queued for the channels.
    pub fn advance_alerts(
        &self,
        actor: &str,
        deployment: &str,
        window_us: i64,
        steps: &[AlertStep],
    ) -> Result<Vec<Option<Option<Alert>>>> {
        if let Some(bad) = steps
            .iter()
            .find(|s| !["inactive", "pending", "firing"].contains(&s.state.as_str()))
        {
            return Err(RegistryError::invalid(
                "alert state",
                &bad.state,
                "use inactive, pending or firing",
            ));
        }
        let at = now_micros();
        let mut queued = 0;
        let outcomes = self.write(|tx| {
            queued = 0;
            lock(tx, deployment)?;
            let model = query_one(
                tx,
                "SELECT model FROM deployments WHERE name = ?",
                &[deployment.into()],
            )?
            .and_then(|r| r[0].as_str().map(str::to_string));
            let mut outcomes = Vec::with_capacity(steps.len());
            for step in steps {
                outcomes.push(Self::advance(
                    tx,
                    at,
                    actor,
                    deployment,
                    model.as_deref(),
                    window_us,
                    step,
                    &mut queued,
                )?);
            }
            Ok(outcomes)
        })?;
        if queued > 0 {
            self.hooks.poke();
        }
        Ok(outcomes)
    }

    #[allow(clippy::too_many_arguments)]
    fn advance(
        tx: &mut dyn Tx,
        at: i64,
        actor: &str,
        deployment: &str,
        model: Option<&str>,
        window_us: i64,
        step: &AlertStep,
        queued: &mut usize,
    ) -> Result<Option<Option<Alert>>> {
        let rule_id = step.rule_id;
        let Some(rule) = rules_where(
            tx,
            "WHERE r.id = ? AND r.deployment = ?",
            &[Value::Int(rule_id), deployment.into()],
        )?
        .pop() else {
            return Ok(None); // replaced or deleted since it was read
        };
        if rule.window_us >= window_us || rule.window_us != step.from_window_us {
            return Ok(None); // evaluated already, or advanced by another process since read
        }
        tx.execute(
            "UPDATE alert_states SET state = ?, held = ?, window_us = ? WHERE rule_id = ?",
            &[
                step.state.as_str().into(),
                Value::Int(step.held),
                Value::Int(window_us),
                Value::Int(rule_id),
            ],
        )?;
        let series = &step.series;
        let changed = match step.transition.as_deref() {
            Some("fired") => {
                let silenced = query_one(
                    tx,
                    "SELECT 1 FROM alert_silences WHERE deployment = ? AND (rule IS NULL OR rule = ?) AND until_us > ?",
                    &[deployment.into(), rule.name.as_str().into(), Value::Int(at)],
                )?
                .is_some();
                let id = query_one(
                    tx,
                    "INSERT INTO alerts (rule_id, deployment, rule, severity, state, fired_at, fired_window_us, series, silenced) VALUES (?, ?, ?, ?, 'firing', ?, ?, ?, ?) RETURNING id",
                    &[Value::Int(rule_id), deployment.into(), rule.name.as_str().into(), rule.severity.as_str().into(), Value::Int(at), Value::Int(window_us), series.to_string().into(), Value::Int(silenced.into())],
                )?
                .and_then(|r| r[0].as_i64())
                .unwrap_or(0);
                audit::append(
                    tx,
                    at,
                    actor,
                    "alert.fire",
                    model,
                    &json!({"alert": id, "deployment": deployment, "rule": rule.name, "severity": rule.severity, "window_us": window_us, "series": series, "silenced": silenced}),
                )?;
                if !silenced {
                    let alert = Self::alert(tx, id)?;
                    *queued += Self::queue_alert(tx, &rule, &alert, "fired", series)?;
                }
                Some(id)
            }
            Some("resolved") => {
                let open = query_one(tx, "SELECT id FROM alerts WHERE rule_id = ? AND state = 'firing' ORDER BY id DESC LIMIT 1", &[Value::Int(rule_id)])?.and_then(|r| r[0].as_i64());
                if let Some(id) = open {
                    tx.execute(
                        "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_window_us = ? WHERE id = ?",
                        &[Value::Int(at), Value::Int(window_us), Value::Int(id)],
                    )?;
                    audit::append(
                        tx,
                        at,
                        actor,
                        "alert.resolve",
                        model,
                        &json!({"alert": id, "deployment": deployment, "rule": rule.name, "window_us": window_us, "series": series}),
                    )?;
                    let alert = Self::alert(tx, id)?;
                    if !alert.silenced {
                        *queued += Self::queue_alert(tx, &rule, &alert, "resolved", series)?;
                    }
                }
                open
            }
            None | Some("pending") | Some("cleared") => None,
            Some(other) => {
                return Err(RegistryError::invalid(
                    "alert transition",
                    other,
                    "use fired, resolved, pending or cleared",
                ))
            }
        };
        Ok(Some(match changed {
            Some(id) => Some(Self::alert(tx, id)?),
            None => None,
        }))
    }

    fn alert(tx: &mut dyn Tx, id: i64) -> Result<Alert> {
        read_all(
            tx,
            ALERT_COLUMNS,
            "alerts WHERE id = ?",
            &[Value::Int(id)],
            alert_of,
        )?
        .pop()
        .ok_or_else(|| RegistryError::not_found("alert", id.to_string()))
    }

    /// A deployment's alerts (every deployment's with `None`), newest first; `state`
    /// keeps only firing or resolved ones.
    pub fn alerts(
        &self,
        deployment: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Alert>> {
        let mut rest = String::from("alerts WHERE 1 = 1");
        let mut params: Vec<Value> = Vec::new();
        if let Some(d) = deployment {
            rest.push_str(" AND deployment = ?");
            params.push(d.into());
        }
        if let Some(s) = state {
            if !["firing", "resolved"].contains(&s) {
                return Err(RegistryError::invalid(
                    "alert state",
                    s,
                    "use firing or resolved",
                ));
            }
            rest.push_str(" AND state = ?");
            params.push(s.into());
        }
        rest.push_str(" ORDER BY id DESC LIMIT ?");
        params.push(Value::Int(limit.clamp(1, 100_000)));
        self.read(|tx| read_all(tx, ALERT_COLUMNS, &rest, &params, alert_of))
    }

    /// Acknowledges an alert: someone is on it (repeats stop).
    pub fn ack_alert(&self, actor: &str, id: i64) -> Result<Alert> {
        let at = now_micros();
        self.write(|tx| {
            let alert = Self::alert(tx, id)?;
            if let Some(by) = &alert.acked_by {
                return Err(RegistryError::Conflict(format!(
                    "alert {id} was acknowledged already, by {by}"
                )));
            }
            tx.execute(
                "UPDATE alerts SET acked_by = ?, acked_at = ? WHERE id = ?",
                &[actor.into(), Value::Int(at), Value::Int(id)],
            )?;
            let model = query_one(
                tx,
                "SELECT model FROM deployments WHERE name = ?",
                &[alert.deployment.as_str().into()],
            )?
            .and_then(|r| r[0].as_str().map(str::to_string));
            audit::append(
                tx,
                at,
                actor,
                "alert.ack",
                model.as_deref(),
                &json!({"alert": id, "deployment": alert.deployment, "rule": alert.rule}),
            )?;
            Self::alert(tx, id)
        })
    }

    /// Silences a deployment's alerts (of `rule`, or all) until `until_us`, with a reason.
    pub fn silence(
        &self,
        actor: &str,
        deployment: &str,
        rule: Option<&str>,
        until_us: i64,
        reason: &str,
    ) -> Result<Silence> {
        let at = now_micros();
        if until_us <= at {
            return Err(RegistryError::invalid(
                "silence",
                deployment,
                "it must end in the future",
            ));
        }
        if reason.trim().is_empty() {
            return Err(RegistryError::invalid(
                "silence",
                deployment,
                "give a reason (it is shown with the silenced alerts)",
            ));
        }
        self.write(|tx| {
            let model = query_one(tx, "SELECT model FROM deployments WHERE name = ?", &[deployment.into()])?
                .and_then(|r| r[0].as_str().map(str::to_string))
                .ok_or_else(|| RegistryError::not_found("deployment", deployment))?;
            if let Some(r) = rule {
                query_one(tx, "SELECT 1 FROM alert_rules WHERE deployment = ? AND name = ?", &[deployment.into(), r.into()])?
                    .ok_or_else(|| RegistryError::not_found("alert rule", format!("{deployment}/{r}")))?;
            }
            let id = query_one(
                tx,
                "INSERT INTO alert_silences (deployment, rule, until_us, reason, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                &[deployment.into(), rule.map_or(Value::Null, Value::from), Value::Int(until_us), reason.into(), actor.into(), Value::Int(at)],
            )?
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0);
            audit::append(tx, at, actor, "alert.silence", Some(&model), &json!({"silence": id, "deployment": deployment, "rule": rule, "until_us": until_us, "reason": reason}))?;
            read_all(tx, SILENCE_COLUMNS, "alert_silences WHERE id = ?", &[Value::Int(id)], silence_of)?
                .pop()
                .ok_or_else(|| RegistryError::not_found("silence", id.to_string()))
        })
    }

    /// Silences still in force on a deployment (every deployment's with `None`).
    pub fn silences(&self, deployment: Option<&str>) -> Result<Vec<Silence>> {
        let now = Value::Int(now_micros());
        self.read(|tx| match deployment {
            Some(d) => read_all(
                tx,
                SILENCE_COLUMNS,
                "alert_silences WHERE deployment = ? AND until_us > ? ORDER BY id",
                &[d.into(), now.clone()],
                silence_of,
            ),
            None => read_all(
                tx,
                SILENCE_COLUMNS,
                "alert_silences WHERE until_us > ? ORDER BY id",
                std::slice::from_ref(&now),
                silence_of,
            ),
        })
    }
}
