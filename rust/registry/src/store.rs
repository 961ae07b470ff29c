//! The `Store` trait: transactions over a SQL database, with one implementation per backend
//! (SQLite embedded, PostgreSQL for teams). The registry's logic is written once, against
//! this trait, in portable SQL with `?` placeholders.

use crate::error::Result;

/// A SQL value crossing the store boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            Value::Float(v) => Some(*v as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::Float(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(v) => Some(v),
            _ => None,
        }
    }

    pub fn into_string(self) -> Option<String> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    pub fn into_blob(self) -> Option<Vec<u8>> {
        match self {
            Value::Blob(v) => Some(v),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

pub type Row = Vec<Value>;

/// One open transaction.
pub trait Tx {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Serialises writers that touch the same named resource until the transaction ends
    /// (PostgreSQL: an advisory lock; SQLite: the write transaction already excludes others).
    fn lock(&mut self, key: &str) -> Result<()>;
}

/// Where registry rows live.
pub trait Store: Send + Sync {
    /// Runs `work` in one transaction: committed if it returns Ok, rolled back otherwise.
    fn transaction(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()>;
    /// Runs `work` against a consistent read-only view.
    fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()>;
    /// "sqlite" or "postgresql".
    fn backend(&self) -> &'static str;
    /// The URI, without any password.
    fn display_uri(&self) -> &str;
}

/// Reads a single row, or None.
pub fn query_one(tx: &mut dyn Tx, sql: &str, params: &[Value]) -> Result<Option<Row>> {
    Ok(tx.query(sql, params)?.into_iter().next())
}

/// The schema, per version, with backend-specific spellings substituted in.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the registry
    r#"
CREATE TABLE models (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    last_version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    experiment TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    actor TEXT NOT NULL,
    git_commit TEXT,
    git_dirty BIGINT,
    code_path TEXT,
    environment TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_experiment ON runs(experiment);
CREATE TABLE params (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE metrics (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value {float} NOT NULL,
    step BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX metrics_run ON metrics(run_id, key, step);
CREATE TABLE datasets (
    fingerprint TEXT PRIMARY KEY,
    schema TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    profile {blob},
    created_at BIGINT NOT NULL
);
CREATE TABLE versions (
    model TEXT NOT NULL REFERENCES models(name),
    version BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    signature TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    run_id TEXT,
    dataset TEXT,
    parent_model TEXT,
    parent_version BIGINT,
    status TEXT NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    input_example TEXT,
    PRIMARY KEY (model, version)
);
CREATE INDEX versions_sha ON versions(sha256);
CREATE INDEX versions_dataset ON versions(dataset);
CREATE INDEX versions_run ON versions(run_id);
CREATE TABLE version_tags (
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model, version, key)
);
CREATE INDEX version_tags_kv ON version_tags(key, value);
CREATE TABLE version_metrics (
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    key TEXT NOT NULL,
    value {float} NOT NULL,
    PRIMARY KEY (model, version, key)
);
CREATE INDEX version_metrics_kv ON version_metrics(key, value);
CREATE TABLE aliases (
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (model, alias)
);
CREATE TABLE alias_history (
    id {serial},
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT,
    previous BIGINT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    approval_id BIGINT
);
CREATE INDEX alias_history_lookup ON alias_history(model, alias, at);
CREATE TABLE policies (
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    PRIMARY KEY (model, alias)
);
CREATE TABLE approvals (
    id {serial},
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    decision_reason TEXT
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    model TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_model ON audit(model, seq);
CREATE TABLE webhooks (
    id {serial},
    model TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE deliveries (
    id {serial},
    webhook_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    delivery TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    status_code BIGINT,
    ok BIGINT NOT NULL,
    error TEXT,
    at BIGINT NOT NULL
);
"#,
    // 2: deployments the model server follows
    r#"
CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    model TEXT NOT NULL REFERENCES models(name),
    spec TEXT NOT NULL,
    generation BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
"#,
    // 3: webhook deliveries wait in the registry, not in a process's memory
    r#"
CREATE TABLE outbox (
    id {serial},
    webhook_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    delivery TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL,
    claimed_by TEXT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox(next_at);
"#,
    // 4: monitoring: each version's reference profiles, and the windows servers close
    r#"
CREATE TABLE version_references (
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    inputs {blob},
    outputs {blob},
    row_count BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (model, version),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE monitor_windows (
    deployment TEXT NOT NULL,
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    route TEXT NOT NULL,
    replica TEXT NOT NULL,
    length_us BIGINT NOT NULL,
    start_us BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    inputs {blob},
    outputs {blob},
    health TEXT NOT NULL,
    quality TEXT NOT NULL,
    stored_at BIGINT NOT NULL,
    PRIMARY KEY (deployment, length_us, start_us, version, route, replica)
);
"#,
    // 5: monitoring: the drift of buckets of windows as computed, with what it was computed
    // from, so that reading a period again does not merge and compare it again
    r#"
CREATE TABLE monitor_drift (
    deployment TEXT NOT NULL,
    version BIGINT NOT NULL,
    side TEXT NOT NULL,
    length_us BIGINT NOT NULL,
    start_us BIGINT NOT NULL,
    basis TEXT NOT NULL,
    result TEXT NOT NULL,
    computed_at BIGINT NOT NULL,
    PRIMARY KEY (deployment, side, length_us, start_us, version)
);
"#,
    // 6: feedback on served answers: labels and flags by request id or correlation key
    r#"
CREATE TABLE monitor_feedback (
    id {serial},
    deployment TEXT NOT NULL,
    request_id TEXT,
    correlation_key TEXT,
    kind TEXT NOT NULL,
    target_text TEXT,
    target_number {float},
    good BIGINT,
    comment TEXT,
    user_name TEXT,
    time_us BIGINT NOT NULL,
    received_us BIGINT NOT NULL,
    received_by TEXT NOT NULL
);
CREATE INDEX monitor_feedback_by_request ON monitor_feedback(deployment, request_id);
CREATE INDEX monitor_feedback_by_key ON monitor_feedback(deployment, correlation_key);
CREATE INDEX monitor_feedback_by_time ON monitor_feedback(deployment, received_us);
"#,
    // 7: what servers answered, kept (without the inputs) so that feedback joins predictions
    // when the payload log is off: one row per batch a server writes (its rows compressed,
    // and the sorted hashes of their ids and keys, to tell whether feedback names one),
    // deleted after the retention
    r#"
CREATE TABLE monitor_prediction_batches (
    id {serial},
    deployment TEXT NOT NULL,
    replica TEXT NOT NULL,
    first_us BIGINT NOT NULL,
    last_us BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    hashes {blob} NOT NULL,
    data {blob} NOT NULL
);
CREATE INDEX monitor_prediction_batches_by_time ON monitor_prediction_batches(deployment, last_us);
"#,
    // 8: a version's reference with labels, for estimating performance without them (CBPE):
    // the classes, and the model's predictions and probabilities with the true labels
    r#"
CREATE TABLE version_label_references (
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    classes TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    data {blob} NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (model, version),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
"#,
    // 9: the evidence a promotion request carries (a champion-challenger comparison, JSON)
    r#"
ALTER TABLE approvals ADD COLUMN evidence TEXT;
"#,
    // 10: suites of model checks run against a version (`pilothouse check`), with each
    // check's verdict (JSON); a policy may require a passing one before an approval
    r#"
CREATE TABLE version_checks (
    id {serial},
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    suite TEXT NOT NULL,
    passed BIGINT NOT NULL,
    results TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    recorded_by TEXT NOT NULL,
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE INDEX version_checks_by_version ON version_checks(model, version, suite);
ALTER TABLE policies ADD COLUMN require_check TEXT;
"#,
    // 11: a decided request keeps the ids of the checks its decision saw
    r#"
ALTER TABLE approvals ADD COLUMN decision_checks TEXT;
"#,
    // 12: alert rules per deployment, each rule's state (the last window evaluated: where
    // replicas meet), the alerts fired and resolved, silences
    r#"
CREATE TABLE alert_rules (
    id {serial},
    deployment TEXT NOT NULL,
    name TEXT NOT NULL,
    condition TEXT NOT NULL,
    for_windows BIGINT NOT NULL,
    resolve_when TEXT,
    only_if TEXT,
    severity TEXT NOT NULL,
    labels TEXT NOT NULL,
    actions TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (deployment, name)
);
CREATE TABLE alert_states (
    rule_id BIGINT PRIMARY KEY,
    state TEXT NOT NULL,
    held BIGINT NOT NULL,
    window_us BIGINT NOT NULL
);
CREATE TABLE alerts (
    id {serial},
    rule_id BIGINT NOT NULL,
    deployment TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    fired_at BIGINT NOT NULL,
    fired_window_us BIGINT NOT NULL,
    resolved_at BIGINT,
    resolved_window_us BIGINT,
    series TEXT NOT NULL,
    silenced BIGINT NOT NULL,
    acked_by TEXT,
    acked_at BIGINT
);
CREATE INDEX alerts_by_deployment ON alerts(deployment, state, id);
CREATE TABLE alert_silences (
    id {serial},
    deployment TEXT NOT NULL,
    rule TEXT,
    until_us BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
"#,
    // 13: where alerts go: channels (webhook, Slack, PagerDuty), each delivered through a
    // webhooks row of its own kind (no model), so alerts share the durable outbox
    r#"
ALTER TABLE webhooks ADD COLUMN kind TEXT NOT NULL DEFAULT 'webhook';
CREATE TABLE alert_channels (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    webhook_id BIGINT NOT NULL,
    destination TEXT NOT NULL,
    severities TEXT NOT NULL,
    labels TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
"#,
    // 14: a guarded alias an alert rule may roll back by itself
    r#"
ALTER TABLE policies ADD COLUMN allow_rollback BIGINT NOT NULL DEFAULT 0;
"#,
];
