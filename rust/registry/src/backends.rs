//! The two `Store` implementations: SQLite (bundled, WAL, busy timeout) and PostgreSQL.
//! Both apply the versioned migrations in `store::MIGRATIONS` when opened.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{RegistryError, Result};
use crate::store::{Row, Store, Tx, Value, MIGRATIONS};

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn apply_migrations(store: &dyn Store, dialect: Dialect) -> Result<()> {
    store.transaction(&mut |tx| {
        tx.lock("pilothouse.migrations")?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            &[],
        )?;
        let current = tx
            .query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?
            .first()
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0);
        if current as usize > MIGRATIONS.len() {
            return Err(RegistryError::Store(format!(
                "the registry database is at schema version {current}, newer than this pilothouse knows ({}); upgrade pilothouse",
                MIGRATIONS.len()
            )));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            for statement in dialect.render(migration).split(';') {
                if !statement.trim().is_empty() {
                    tx.execute(statement, &[])?;
                }
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                &[Value::Int(i as i64 + 1), Value::Int(now_micros())],
            )?;
        }
        Ok(())
    })
}

#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn render(self, sql: &str) -> String {
        let (serial, float, blob) = match self {
            Dialect::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "BLOB"),
            Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION", "BYTEA"),
        };
        sql.replace("{serial}", serial)
            .replace("{float}", float)
            .replace("{blob}", blob)
    }
}

// ---------------------------------------------------------------------------------------
// SQLite

pub struct SqliteStore {
    conn: Mutex<rusqlite::Connection>,
    uri: String,
}

fn sqlite_error(uri: &str, e: rusqlite::Error) -> RegistryError {
    use rusqlite::ErrorCode as C;
    if let rusqlite::Error::SqliteFailure(f, ref message) = e {
        let detail = message.clone().unwrap_or_else(|| f.to_string());
        return match f.code {
            C::ConstraintViolation => RegistryError::Conflict(detail),
            C::DiskFull => RegistryError::StoreUnavailable {
                uri: uri.to_string(),
                reason: format!(
                    "the disk is full ({detail}); nothing of this operation was stored"
                ),
            },
            C::CannotOpen
            | C::SystemIoFailure
            | C::NotADatabase
            | C::DatabaseCorrupt
            | C::ReadOnly
            | C::PermissionDenied => RegistryError::StoreUnavailable {
                uri: uri.to_string(),
                reason: detail,
            },
            C::DatabaseBusy | C::DatabaseLocked => RegistryError::Store(format!(
                "the database stayed locked by another writer past the timeout ({detail})"
            )),
            _ => RegistryError::Store(detail),
        };
    }
    RegistryError::Store(e.to_string())
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        let uri = format!("sqlite:///{}", path.display()).replace("////", "///");
        if let Some(parent) = path.parent() {
            crate::files::create_dirs_durably(parent).map_err(|e| {
                RegistryError::StoreUnavailable {
                    uri: uri.clone(),
                    reason: format!("cannot create {}: {e}", parent.display()),
                }
            })?;
        }
        // Created owner-only before SQLite opens it: SQLite gives its WAL and shared-memory
        // files the database file's permissions, so nothing of the registry is world-readable.
        if !path.exists() {
            match crate::files::private_file(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(RegistryError::StoreUnavailable {
                        uri,
                        reason: format!("cannot create {}: {e}", path.display()),
                    })
                }
            }
        }
        let conn = rusqlite::Connection::open(path).map_err(|e| sqlite_error(&uri, e))?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(|e| sqlite_error(&uri, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| sqlite_error(&uri, e))?;
        // The registry is a system of record: FULL syncs the WAL at every commit, so a
        // committed version or audit event survives a power loss too (NORMAL survives only a
        // crash of the process). The cost is measured in benchmarks/registry.py.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| sqlite_error(&uri, e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| sqlite_error(&uri, e))?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            uri,
        };
        apply_migrations(&store, Dialect::Sqlite)?;
        Ok(store)
    }
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    uri: &'a str,
}

fn to_sqlite(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Int(i) => S::Integer(*i),
        Value::Float(f) => S::Real(*f),
        Value::Text(t) => S::Text(t.clone()),
        Value::Blob(b) => S::Blob(b.clone()),
    }
}

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self
            .tx
            .prepare_cached(sql)
            .map_err(|e| sqlite_error(self.uri, e))?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter().map(to_sqlite)))
            .map_err(|e| sqlite_error(self.uri, e))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self
            .tx
            .prepare_cached(sql)
            .map_err(|e| sqlite_error(self.uri, e))?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(params.iter().map(to_sqlite)),
                |row| {
                    (0..columns)
                        .map(|i| {
                            use rusqlite::types::ValueRef as R;
                            Ok(match row.get_ref(i)? {
                                R::Null => Value::Null,
                                R::Integer(v) => Value::Int(v),
                                R::Real(v) => Value::Float(v),
                                R::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                                R::Blob(b) => Value::Blob(b.to_vec()),
                            })
                        })
                        .collect::<rusqlite::Result<Row>>()
                },
            )
            .map_err(|e| sqlite_error(self.uri, e))?;
        rows.collect::<rusqlite::Result<Vec<Row>>>()
            .map_err(|e| sqlite_error(self.uri, e))
    }

    fn lock(&mut self, _key: &str) -> Result<()> {
        Ok(()) // an IMMEDIATE transaction already holds the database's write lock
    }
}

impl Store for SqliteStore {
    fn transaction(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sqlite_error(&self.uri, e))?;
        work(&mut SqliteTx {
            tx: &tx,
            uri: &self.uri,
        })?;
        tx.commit().map_err(|e| sqlite_error(&self.uri, e))
    }

    fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
            .map_err(|e| sqlite_error(&self.uri, e))?;
        work(&mut SqliteTx {
            tx: &tx,
            uri: &self.uri,
        })
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn display_uri(&self) -> &str {
        &self.uri
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

pub struct PostgresStore {
    client: Mutex<Option<postgres::Client>>,
    config: postgres::Config,
    /// The TLS connector for the URI's sslmode (None: sslmode=disable).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    uri: String,
}

/// The URI with any password replaced, for messages.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        // libpq's key=value form: "host=db user=ann password=s3cret"
        return uri
            .split(' ')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    // A password may hold '/', '?', '#' or '@' (drivers accept them unescaped): the user
    // part runs to the last '@', wherever the path starts.
    let (rest, userinfo) = match rest.rsplit_once('@') {
        Some((user, after)) => (after, Some(user)),
        None => (rest, None),
    };
    let (host, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match userinfo {
        Some(user) if user.contains(':') => {
            let user = user.split(':').next().unwrap_or("");
            format!("{user}:***@{host}")
        }
        Some(user) => format!("{user}@{host}"),
        None => host.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Connection parameters that hold a secret (libpq's names, and a generic token).
fn is_secret_key(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "password" | "sslpassword" | "passfile_contents" | "token" | "secret"
    )
}

/// A lost or refused connection (as opposed to a statement the server rejected).
fn connection_lost(e: &postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => matches!(&db.code().code()[..2], "08" | "57"),
        None => true,
    }
}

fn pg_error(uri: &str, e: postgres::Error) -> RegistryError {
    if connection_lost(&e) {
        return RegistryError::StoreUnavailable {
            uri: uri.to_string(),
            reason: e.to_string(),
        };
    }
    if let Some(db) = e.as_db_error() {
        let message = format!("{} ({})", db.message(), db.code().code());
        return match db.code().code() {
            "23505" | "23503" => RegistryError::Conflict(message),
            "53100" => RegistryError::StoreUnavailable {
                uri: uri.to_string(),
                reason: format!(
                    "the disk is full: {message}; nothing of this operation was stored"
                ),
            },
            _ => RegistryError::Store(message),
        };
    }
    RegistryError::StoreUnavailable {
        uri: uri.to_string(),
        reason: e.to_string(),
    }
}

impl PostgresStore {
    pub fn open(uri: &str) -> Result<Self> {
        let shown = redact(uri);
        let settings = crate::pgconn::settings(uri, &shown)?;
        let tls = crate::pgconn::connector(&settings, &shown)?;
        let mut config = settings.config;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("pilothouse");
        let store = PostgresStore {
            client: Mutex::new(None),
            config,
            tls,
            uri: shown,
        };
        store.connect_locked(&mut store.client.lock().unwrap_or_else(|e| e.into_inner()))?;
        apply_migrations(&store, Dialect::Postgres)?;
        Ok(store)
    }

    fn connect_locked<'a>(
        &self,
        slot: &'a mut Option<postgres::Client>,
    ) -> Result<&'a mut postgres::Client> {
        let stale = slot.as_ref().is_none_or(|c| c.is_closed());
        if stale {
            let connected = match &self.tls {
                Some(tls) => self.config.connect(tls.clone()),
                None => self.config.connect(postgres::NoTls),
            };
            let client = connected.map_err(|e| RegistryError::StoreUnavailable {
                uri: self.uri.clone(),
                // the cause (a certificate refused, a password wrong) is what to act on
                reason: std::error::Error::source(&e)
                    .map_or_else(|| e.to_string(), |cause| format!("{e}: {cause}")),
            })?;
            *slot = Some(client);
        }
        Ok(slot.as_mut().expect("connected above"))
    }

    fn run(&self, read_only: bool, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        // A connection the server dropped (restart, failover, idle kill) is noticed at BEGIN;
        // one fresh connection is tried before giving up.
        for attempt in 0..2 {
            let lost = {
                let client = self.connect_locked(&mut slot)?;
                // read committed whatever the server's default: a transaction that waits on
                // a model's advisory lock must then read what the holder committed
                match client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::ReadCommitted)
                    .read_only(read_only)
                    .start()
                {
                    Ok(mut tx) => {
                        let result = work(&mut PgTx {
                            tx: &mut tx,
                            uri: &self.uri,
                        });
                        return match result {
                            Ok(()) => tx.commit().map_err(|e| pg_error(&self.uri, e)),
                            Err(e) => {
                                let _ = tx.rollback();
                                Err(e)
                            }
                        };
                    }
                    Err(e) if attempt == 0 && connection_lost(&e) => true,
                    Err(e) => return Err(pg_error(&self.uri, e)),
                }
            };
            if lost {
                *slot = None;
            }
        }
        unreachable!("the second attempt returns")
    }
}

struct PgTx<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
    uri: &'a str,
}

/// `?` placeholders to `$1, $2, ...`, outside string literals.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::Type as T;
        match self {
            Value::Null => Ok(postgres::types::IsNull::Yes),
            Value::Int(v) => match *ty {
                T::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                T::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                T::FLOAT8 => (*v as f64).to_sql(ty, out),
                T::FLOAT4 => (*v as f32).to_sql(ty, out),
                T::BOOL => (*v != 0).to_sql(ty, out),
                T::TEXT | T::VARCHAR => v.to_string().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Float(v) => match *ty {
                T::FLOAT4 => (*v as f32).to_sql(ty, out),
                T::INT8 => (*v as i64).to_sql(ty, out),
                T::TEXT | T::VARCHAR => v.to_string().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(v) => v.to_sql(ty, out),
            Value::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_value(row: &postgres::Row, i: usize) -> Value {
    use postgres::types::Type as T;
    let ty = row.columns()[i].type_().clone();
    let got = match ty {
        T::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
        T::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|x| Value::Int(x.into()))),
        T::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|x| Value::Int(x.into()))),
        T::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)
            .map(|v| v.map(Value::Float)),
        T::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)
            .map(|v| v.map(|x| Value::Float(x.into()))),
        T::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map(|v| v.map(|x| Value::Int(x.into()))),
        T::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map(|v| v.map(Value::Blob)),
        _ => row
            .try_get::<_, Option<String>>(i)
            .map(|v| v.map(Value::Text)),
    };
    got.ok().flatten().unwrap_or(Value::Null)
}

impl Tx for PgTx<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        self.tx
            .execute(numbered(sql).as_str(), &refs)
            .map_err(|e| pg_error(self.uri, e))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self
            .tx
            .query(numbered(sql).as_str(), &refs)
            .map_err(|e| pg_error(self.uri, e))?;
        Ok(rows
            .iter()
            .map(|r| (0..r.len()).map(|i| pg_value(r, i)).collect())
            .collect())
    }

    fn lock(&mut self, key: &str) -> Result<()> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let id = i64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        self.execute("SELECT pg_advisory_xact_lock(?)", &[Value::Int(id)])
            .map(|_| ())
    }
}

impl Store for PostgresStore {
    fn transaction(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.run(false, work)
    }

    fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.run(true, work)
    }

    fn backend(&self) -> &'static str {
        "postgresql"
    }

    fn display_uri(&self) -> &str {
        &self.uri
    }
}

/// Where a registry lives: its store and its artifact folder.
pub struct Location {
    pub store: Box<dyn Store>,
    pub artifacts: PathBuf,
}

/// Opens `sqlite:///path/registry.db` (artifacts beside it, in `artifacts/`) or
/// `postgresql://user:pass@host:port/db` (artifacts where `?artifacts=/path` says, else
/// `default_artifacts`).
pub fn open(uri: &str, default_artifacts: &Path) -> Result<Location> {
    let (base, artifacts) = split_artifacts(uri);
    if let Some(path) = base.strip_prefix("sqlite://") {
        let path = PathBuf::from(path);
        if path.as_os_str().is_empty() {
            return Err(RegistryError::invalid(
                "registry URI",
                uri,
                "sqlite:// needs a file path, as in sqlite:///home/me/registry.db",
            ));
        }
        let artifacts =
            artifacts.unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).join("artifacts"));
        return Ok(Location {
            store: Box::new(SqliteStore::open(&path)?),
            artifacts,
        });
    }
    if base.starts_with("postgresql://") || base.starts_with("postgres://") {
        return Ok(Location {
            store: Box::new(PostgresStore::open(&base)?),
            artifacts: artifacts.unwrap_or_else(|| default_artifacts.to_path_buf()),
        });
    }
    Err(RegistryError::invalid(
        "registry URI",
        redact(uri),
        "use sqlite:///path/to/registry.db or postgresql://user:password@host:port/database",
    ))
}

fn split_artifacts(uri: &str) -> (String, Option<PathBuf>) {
    let Some((base, query)) = uri.split_once('?') else {
        return (uri.to_string(), None);
    };
    let mut kept = Vec::new();
    let mut artifacts = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("artifacts", path)) => artifacts = Some(PathBuf::from(path)),
            _ if !pair.is_empty() => kept.push(pair),
            _ => {}
        }
    }
    let base = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (base, artifacts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(numbered("SELECT ? , '?' , ?"), "SELECT $1 , '?' , $2");
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgresql://ann:s3cret@db:5432/reg"),
            "postgresql://ann:***@db:5432/reg"
        );
        assert_eq!(redact("postgresql://db/reg"), "postgresql://db/reg");
        assert_eq!(
            redact("postgresql://ann@db/reg?sslmode=require&password=s3cret&Password=x"),
            "postgresql://ann@db/reg?sslmode=require&password=***&Password=***"
        );
        assert_eq!(
            redact("host=db user=ann password=s3cret dbname=reg"),
            "host=db user=ann password=*** dbname=reg"
        );
        assert_eq!(
            redact("postgresql://ann:p@ss@db/reg"),
            "postgresql://ann:***@db/reg"
        );
        for password in ["pa/ss", "pa?ss", "p#a/s?s@", "/?#"] {
            let shown = redact(&format!(
                "postgresql://ann:{password}@db:5432/reg?sslmode=require"
            ));
            assert_eq!(shown, "postgresql://ann:***@db:5432/reg?sslmode=require");
        }
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn artifacts_parameter_is_ours() {
        let (base, art) = split_artifacts("postgresql://h/db?sslmode=disable&artifacts=/srv/a");
        assert_eq!(base, "postgresql://h/db?sslmode=disable");
        assert_eq!(art, Some(PathBuf::from("/srv/a")));
    }
}
