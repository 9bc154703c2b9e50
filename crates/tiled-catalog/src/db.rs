//! Connections to SQLite and PostgreSQL behind one small interface: run a
//! statement with positional parameters, get rows of plain cells back.
//!
//! The catalog is synchronous on purpose: the adapter traits are, and the
//! server calls them from blocking threads. A tiny pool hands out
//! connections; SQLite gets WAL mode and a REGEXP function, PostgreSQL a
//! per-connection cache of prepared statements.
//!
//! Parameters are always bound, never spliced into SQL. PostgreSQL receives
//! every parameter as text and the SQL casts it (`$1::text::bigint`), so one
//! parameter type works everywhere.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use crate::CatalogError;

/// The SQL dialect of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

impl Param {
    fn as_text(&self) -> Option<String> {
        match self {
            Param::Null => None,
            Param::Int(i) => Some(i.to_string()),
            Param::Float(f) => Some(format!("{f:?}")),
            Param::Text(s) => Some(s.clone()),
        }
    }
}

/// One value of a result row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

/// One result row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, CatalogError> {
        self.0
            .get(i)
            .ok_or_else(|| CatalogError::Internal(format!("row has no column {i}")))
    }

    /// Column `i` as an integer.
    ///
    /// # Errors
    /// [`CatalogError::Internal`] if it is not one.
    pub fn int(&self, i: usize) -> Result<i64, CatalogError> {
        match self.cell(i)? {
            Cell::Int(v) => Ok(*v),
            Cell::Text(t) => t
                .parse()
                .map_err(|_| CatalogError::Internal(format!("column {i} is not an integer"))),
            other => Err(CatalogError::Internal(format!(
                "column {i} is {other:?}, not an integer"
            ))),
        }
    }

    /// Column `i` as text (`None` for NULL).
    ///
    /// # Errors
    /// [`CatalogError::Internal`] for numbers.
    pub fn opt_text(&self, i: usize) -> Result<Option<&str>, CatalogError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(t) => Ok(Some(t)),
            other => Err(CatalogError::Internal(format!(
                "column {i} is {other:?}, not text"
            ))),
        }
    }

    /// Column `i` as text.
    ///
    /// # Errors
    /// [`CatalogError::Internal`] for NULL or numbers.
    pub fn text(&self, i: usize) -> Result<&str, CatalogError> {
        self.opt_text(i)?
            .ok_or_else(|| CatalogError::Internal(format!("column {i} is NULL")))
    }

    /// Column `i` as a JSON value (text columns are parsed; numbers kept).
    ///
    /// # Errors
    /// [`CatalogError::Internal`] if text does not parse.
    pub fn json(&self, i: usize) -> Result<serde_json::Value, CatalogError> {
        Ok(match self.cell(i)? {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(v) => (*v).into(),
            Cell::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Cell::Text(t) => serde_json::from_str(t)
                .map_err(|e| CatalogError::Internal(format!("column {i}: bad JSON: {e}")))?,
        })
    }
}

/// What the catalog needs from a connection.
pub trait Connection: Send {
    /// Run a query and collect its rows.
    ///
    /// # Errors
    /// [`CatalogError::Database`] from the driver.
    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, CatalogError>;

    /// Run a statement, returning the number of rows changed.
    ///
    /// # Errors
    /// [`CatalogError::Database`] from the driver.
    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, CatalogError>;

    /// Run several statements without parameters (migrations).
    ///
    /// # Errors
    /// [`CatalogError::Database`] from the driver.
    fn batch(&mut self, sql: &str) -> Result<(), CatalogError>;

    /// The connection's dialect.
    fn dialect(&self) -> Dialect;
}

fn db_err(e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Database(e.to_string())
}

/// PostgreSQL errors with their SQLSTATE, so callers can tell a unique
/// violation from a failure by its text on both dialects.
fn pg_err(e: postgres::Error) -> CatalogError {
    if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
        CatalogError::Database(format!("duplicate key value: {e}"))
    } else {
        match e.as_db_error() {
            Some(db) => CatalogError::Database(format!("{}: {}", db.code().code(), db.message())),
            None => CatalogError::Database(e.to_string()),
        }
    }
}

// ------------------------------------------------------------------ SQLite

/// An SQLite connection set up for the catalog.
pub struct SqliteConnection(rusqlite::Connection);

impl SqliteConnection {
    /// Open (creating) the file, in WAL mode, with foreign keys and a
    /// REGEXP function (Rust regex syntax).
    ///
    /// # Errors
    /// [`CatalogError::Database`] if SQLite cannot open it.
    pub fn open(path: &std::path::Path) -> Result<Self, CatalogError> {
        let c = rusqlite::Connection::open(path).map_err(db_err)?;
        c.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .map_err(db_err)?;
        c.set_prepared_statement_cache_capacity(256);
        c.create_scalar_function(
            "regexp",
            2,
            rusqlite::functions::FunctionFlags::SQLITE_UTF8
                | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| {
                // Compiled once per statement and cached by SQLite as
                // auxiliary data.
                let re: std::sync::Arc<regex::Regex> = ctx.get_or_create_aux(0, |v| {
                    regex::Regex::new(v.as_str()?)
                        .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))
                })?;
                let text = match ctx.get_raw(1) {
                    rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).unwrap_or(""),
                    _ => return Ok(false),
                };
                Ok(re.is_match(text))
            },
        )
        .map_err(db_err)?;
        Ok(SqliteConnection(c))
    }
}

fn sqlite_value(p: &Param) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match p {
        Param::Null => Value::Null,
        Param::Int(i) => Value::Integer(*i),
        Param::Float(f) => Value::Real(*f),
        Param::Text(s) => Value::Text(s.clone()),
    }
}

impl Connection for SqliteConnection {
    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, CatalogError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(db_err)?;
        let n = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter().map(sqlite_value)))
            .map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                use rusqlite::types::ValueRef;
                cells.push(match r.get_ref(i).map_err(db_err)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Float(v),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Cell::Text(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, CatalogError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(db_err)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter().map(sqlite_value)))
            .map_err(db_err)?;
        Ok(n as u64)
    }

    fn batch(&mut self, sql: &str) -> Result<(), CatalogError> {
        self.0.execute_batch(sql).map_err(db_err)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

// ------------------------------------------------------------------ PostgreSQL

/// A PostgreSQL connection with a cache of prepared statements.
///
/// The `postgres` crate blocks on a private runtime of its own, which tokio
/// forbids inside a runtime context (where the server's handlers run). So
/// each connection lives on its own thread and statements are sent to it
/// over a channel; the caller just waits for the answer.
pub struct PostgresConnection {
    jobs: std::sync::mpsc::Sender<PgJob>,
}

type PgJob = Box<dyn FnOnce(&mut PgSession) + Send>;

struct PgSession {
    client: postgres::Client,
    prepared: HashMap<String, postgres::Statement>,
}

impl PostgresConnection {
    /// Connect (without TLS: loopback or a trusted network).
    ///
    /// # Errors
    /// [`CatalogError::Database`] if the server refuses.
    pub fn connect(uri: &str) -> Result<Self, CatalogError> {
        let (jobs, inbox) = std::sync::mpsc::channel::<PgJob>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let uri = uri.to_string();
        std::thread::Builder::new()
            .name("tiled-postgres".into())
            .spawn(
                move || match postgres::Client::connect(&uri, postgres::NoTls) {
                    Ok(client) => {
                        let _ = ready_tx.send(Ok(()));
                        let mut session = PgSession {
                            client,
                            prepared: HashMap::new(),
                        };
                        // Ends when the connection (the sender) is dropped.
                        while let Ok(job) = inbox.recv() {
                            job(&mut session);
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                },
            )
            .map_err(db_err)?;
        ready_rx
            .recv()
            .map_err(|_| CatalogError::Database("the connection thread ended".into()))?
            .map_err(CatalogError::Database)?;
        Ok(PostgresConnection { jobs })
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut PgSession) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, CatalogError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |session| {
                let _ = tx.send(f(session));
            }))
            .map_err(|_| CatalogError::Database("the connection thread ended".into()))?;
        rx.recv()
            .map_err(|_| CatalogError::Database("the connection thread ended".into()))?
    }
}

impl PgSession {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, CatalogError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(pg_err)?;
        if self.prepared.len() > 512 {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, CatalogError> {
        use postgres::types::Type;
        let stmt = self.statement(sql)?;
        let texts: Vec<Option<String>> = params.iter().map(Param::as_text).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = texts
            .iter()
            .map(|t| t as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self.client.query(&stmt, &refs).map_err(pg_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut cells = Vec::with_capacity(r.len());
            for (i, col) in r.columns().iter().enumerate() {
                let t = col.type_();
                let cell = if *t == Type::INT8 {
                    r.try_get::<_, Option<i64>>(i)
                        .map_err(db_err)?
                        .map(Cell::Int)
                } else if *t == Type::INT4 {
                    r.try_get::<_, Option<i32>>(i)
                        .map_err(db_err)?
                        .map(|v| Cell::Int(v.into()))
                } else if *t == Type::INT2 {
                    r.try_get::<_, Option<i16>>(i)
                        .map_err(db_err)?
                        .map(|v| Cell::Int(v.into()))
                } else if *t == Type::BOOL {
                    r.try_get::<_, Option<bool>>(i)
                        .map_err(db_err)?
                        .map(|v| Cell::Int(v.into()))
                } else if *t == Type::FLOAT8 {
                    r.try_get::<_, Option<f64>>(i)
                        .map_err(db_err)?
                        .map(Cell::Float)
                } else {
                    r.try_get::<_, Option<String>>(i)
                        .map_err(db_err)?
                        .map(Cell::Text)
                };
                cells.push(cell.unwrap_or(Cell::Null));
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, CatalogError> {
        let stmt = self.statement(sql)?;
        let texts: Vec<Option<String>> = params.iter().map(Param::as_text).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = texts
            .iter()
            .map(|t| t as &(dyn postgres::types::ToSql + Sync))
            .collect();
        self.client.execute(&stmt, &refs).map_err(pg_err)
    }
}

impl Connection for PostgresConnection {
    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, CatalogError> {
        let (sql, params) = (sql.to_string(), params.to_vec());
        self.call(move |s| s.query(&sql, &params))
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, CatalogError> {
        let (sql, params) = (sql.to_string(), params.to_vec());
        self.call(move |s| s.execute(&sql, &params))
    }

    fn batch(&mut self, sql: &str) -> Result<(), CatalogError> {
        let sql = sql.to_string();
        self.call(move |s| {
            s.prepared.clear();
            s.client.batch_execute(&sql).map_err(pg_err)
        })
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

// ------------------------------------------------------------------ pool

type Factory = Box<dyn Fn() -> Result<Box<dyn Connection>, CatalogError> + Send + Sync>;

/// A small blocking pool of connections.
pub struct Pool {
    state: Mutex<PoolState>,
    freed: Condvar,
    make: Factory,
    max: usize,
    pub dialect: Dialect,
}

struct PoolState {
    idle: Vec<Box<dyn Connection>>,
    open: usize,
}

impl Pool {
    /// `(idle, open, max)` connections right now (for metrics).
    pub fn stats(&self) -> (usize, usize, usize) {
        match self.state.lock() {
            Ok(st) => (st.idle.len(), st.open, self.max),
            Err(_) => (0, 0, self.max),
        }
    }

    /// A pool of at most `max` connections made by `make`.
    pub fn new(dialect: Dialect, max: usize, make: Factory) -> Self {
        Pool {
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            make,
            max: max.max(1),
            dialect,
        }
    }

    /// Borrow a connection, waiting for one if all are in use.
    ///
    /// # Errors
    /// [`CatalogError::Database`] if a new connection cannot be opened.
    pub fn get(&self) -> Result<PooledConnection<'_>, CatalogError> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| CatalogError::Internal("pool lock poisoned".into()))?;
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok(PooledConnection {
                    pool: self,
                    conn: Some(c),
                    broken: false,
                });
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match (self.make)() {
                    Ok(c) => Ok(PooledConnection {
                        pool: self,
                        conn: Some(c),
                        broken: false,
                    }),
                    Err(e) => {
                        if let Ok(mut st) = self.state.lock() {
                            st.open -= 1;
                        }
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            st = self
                .freed
                .wait(st)
                .map_err(|_| CatalogError::Internal("pool lock poisoned".into()))?;
        }
    }

    /// Run `f` inside a transaction on one connection: committed if it
    /// returns `Ok`, rolled back otherwise.
    ///
    /// # Errors
    /// Whatever `f` returns, or the database's error on BEGIN/COMMIT.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&mut dyn Connection) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let mut c = self.get()?;
        let begin = match self.dialect {
            // Take the write lock up front: no upgrade deadlocks.
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        c.batch(begin)?;
        match f(&mut *c) {
            Ok(v) => match c.batch("COMMIT") {
                Ok(()) => Ok(v),
                Err(e) => {
                    let _ = c.batch("ROLLBACK");
                    Err(e)
                }
            },
            Err(e) => {
                if c.batch("ROLLBACK").is_err() {
                    c.broken = true;
                }
                Err(e)
            }
        }
    }
}

/// A borrowed connection, returned to the pool when dropped.
pub struct PooledConnection<'a> {
    pool: &'a Pool,
    conn: Option<Box<dyn Connection>>,
    broken: bool,
}

impl std::ops::Deref for PooledConnection<'_> {
    type Target = dyn Connection;
    fn deref(&self) -> &Self::Target {
        self.conn.as_deref().expect("present until drop")
    }
}

impl std::ops::DerefMut for PooledConnection<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_deref_mut().expect("present until drop")
    }
}

impl PooledConnection<'_> {
    /// Run a query; a failure that looks like a lost connection retires it.
    ///
    /// # Errors
    /// As [`Connection::query`].
    pub fn rows(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, CatalogError> {
        let r = self.query(sql, params);
        if r.is_err() && self.pool.dialect == Dialect::Postgres {
            // A closed connection fails every statement; retire it rather
            // than hand it out again. (Syntax errors are ours and rare.)
            self.broken = true;
        }
        r
    }
}

impl Drop for PooledConnection<'_> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.pool.state.lock() {
            match self.conn.take() {
                Some(c) if !self.broken => st.idle.push(c),
                _ => st.open -= 1,
            }
        }
        self.pool.freed.notify_one();
    }
}
