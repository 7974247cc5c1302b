//! The cost ledger: one row per request in SQLite (WAL, synchronous=FULL: a row is on
//! disk before its response is finished, so a crash or restart loses nothing), and
//! the usage reports over it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params_from_iter, Connection, OpenFlags};
use serde::{Deserialize, Serialize};

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite said no.
    #[error("usage database {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// A bad query parameter.
    #[error("{0}")]
    Query(String),
}

/// One request as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unix milliseconds at the start of the request.
    pub ts_ms: i64,
    /// `chat` or `completions`.
    pub endpoint: String,
    /// Route name, `None` for a direct call to a model or backend.
    pub route: Option<String>,
    /// The backend that answered (or the last one tried).
    pub backend: String,
    /// That backend runs locally.
    pub local: bool,
    /// Why it was chosen (`default`, `rule:…`, `fallback…`).
    pub reason: String,
    /// HTTP status of the answer (200 or the error's).
    pub status: u16,
    /// Streamed.
    pub stream: bool,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Token counts are estimates (the backend reported no usage).
    pub estimated: bool,
    /// What the request cost.
    pub cost_usd: f64,
    /// What it would have cost on the route's largest backend.
    pub counterfactual_usd: f64,
    /// Milliseconds until the answer was complete.
    pub latency_ms: f64,
    /// Backend calls made (retries and fallbacks included).
    pub attempts: u32,
}

/// A grouping dimension of the usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dim {
    /// By backend.
    Backend,
    /// By route (`null` = direct calls).
    Route,
    /// By UTC day.
    Day,
    /// By endpoint.
    Endpoint,
}

impl Dim {
    fn column(self) -> &'static str {
        match self {
            Dim::Backend => "backend",
            Dim::Route => "route",
            Dim::Day => "day",
            Dim::Endpoint => "endpoint",
        }
    }

    /// Parse `backend`, `route`, `day` or `endpoint`.
    pub fn parse(s: &str) -> Result<Self, LedgerError> {
        Ok(match s.trim() {
            "backend" => Dim::Backend,
            "route" => Dim::Route,
            "day" => Dim::Day,
            "endpoint" => Dim::Endpoint,
            other => {
                return Err(LedgerError::Query(format!(
                    "cannot group by {other:?}; use backend, route, day or endpoint"
                )))
            }
        })
    }
}

/// What to report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageQuery {
    /// First day (`YYYY-MM-DD`, UTC), inclusive.
    pub since: Option<String>,
    /// Last day, inclusive.
    pub until: Option<String>,
    /// Grouping (empty: totals only).
    pub group_by: Vec<Dim>,
}

/// Sums over a set of requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageRow {
    /// Values of the grouping dimensions (`route: null` = direct calls).
    #[serde(flatten)]
    pub keys: serde_json::Map<String, serde_json::Value>,
    /// Requests.
    pub requests: u64,
    /// Requests that ended in an error.
    pub errors: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost.
    pub cost_usd: f64,
    /// Cost had every routed request gone to its route's largest backend.
    pub counterfactual_usd: f64,
    /// `counterfactual_usd − cost_usd`.
    pub savings_usd: f64,
    /// Share of the answered requests that a local backend answered.
    pub local_share: f64,
    /// Mean latency in milliseconds.
    pub mean_latency_ms: f64,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageReport {
    /// `usage`.
    pub object: String,
    /// The query's bounds.
    pub since: Option<String>,
    /// The query's bounds.
    pub until: Option<String>,
    /// Grouping.
    pub group_by: Vec<Dim>,
    /// Everything in the range.
    pub totals: UsageRow,
    /// One row per group.
    pub data: Vec<UsageRow>,
}

/// The ledger.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    day TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    route TEXT,
    backend TEXT NOT NULL,
    local INTEGER NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    counterfactual_usd REAL NOT NULL,
    latency_ms REAL NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_day ON requests(day);
";

fn day_of(ts_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ts_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn check_day(s: &str) -> Result<(), LedgerError> {
    // A real calendar day (2025-13-45 is not one).
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(s, format) {
        Ok(_) if s.len() == 10 => Ok(()),
        _ => Err(LedgerError::Query(format!(
            "dates are YYYY-MM-DD (UTC), got {s:?}"
        ))),
    }
}

impl Ledger {
    /// Open (creating if needed) the database at `path`. Several servers may share
    /// one file; a start that races another's set-up waits for it.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let err = |source| LedgerError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let init = || -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let conn = loop {
            match init() {
                Ok(c) => break c,
                // Switching to WAL needs the file to itself for a moment; SQLite
                // answers BUSY without waiting when another connection holds it.
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(err(e)),
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// Open an existing database for reading (`bantam usage` while a server writes).
    pub fn open_read_only(path: &Path) -> Result<Self, LedgerError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| LedgerError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Append one request (committed when this returns).
    pub fn record(&self, r: &Record) -> Result<(), LedgerError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "INSERT INTO requests (ts_ms, day, endpoint, route, backend, local, reason, status,
                stream, prompt_tokens, completion_tokens, estimated, cost_usd, counterfactual_usd,
                latency_ms, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            rusqlite::params![
                r.ts_ms,
                day_of(r.ts_ms),
                r.endpoint,
                r.route,
                r.backend,
                r.local,
                r.reason,
                r.status,
                r.stream,
                r.prompt_tokens as i64,
                r.completion_tokens as i64,
                r.estimated,
                r.cost_usd,
                r.counterfactual_usd,
                r.latency_ms,
                r.attempts,
            ],
        )
        .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// Sums by the query's dimensions.
    pub fn usage(&self, q: &UsageQuery) -> Result<UsageReport, LedgerError> {
        let mut filter = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if let Some(s) = &q.since {
            check_day(s)?;
            args.push(s.clone());
            filter.push(format!("day >= ?{}", args.len()));
        }
        if let Some(u) = &q.until {
            check_day(u)?;
            args.push(u.clone());
            filter.push(format!("day <= ?{}", args.len()));
        }
        let mut dims = q.group_by.clone();
        dims.dedup();
        let wh = if filter.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", filter.join(" AND "))
        };
        let sums = "COUNT(*), COALESCE(SUM(status >= 400), 0), COALESCE(SUM(prompt_tokens), 0),
            COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost_usd), 0.0),
            COALESCE(SUM(counterfactual_usd), 0.0),
            COALESCE(SUM(local AND status < 400), 0), COALESCE(SUM(status < 400), 0),
            COALESCE(AVG(latency_ms), 0.0)";
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let run = |cols: &[Dim]| -> Result<Vec<UsageRow>, rusqlite::Error> {
            let names: Vec<&str> = cols.iter().map(|d| d.column()).collect();
            let select = if names.is_empty() {
                sums.to_string()
            } else {
                format!("{}, {sums}", names.join(", "))
            };
            let group = if names.is_empty() {
                String::new()
            } else {
                format!("GROUP BY {0} ORDER BY {0}", names.join(", "))
            };
            let sql = format!("SELECT {select} FROM requests {wh} {group}");
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(args.iter()), |row| {
                let mut keys = serde_json::Map::new();
                for (i, n) in names.iter().enumerate() {
                    let v: Option<String> = row.get(i)?;
                    keys.insert(n.to_string(), v.map_or(serde_json::Value::Null, Into::into));
                }
                let k = names.len();
                let ok: i64 = row.get(k + 7)?;
                let local: i64 = row.get(k + 6)?;
                let cost: f64 = row.get(k + 4)?;
                let cf: f64 = row.get(k + 5)?;
                Ok(UsageRow {
                    keys,
                    requests: row.get::<_, i64>(k)? as u64,
                    errors: row.get::<_, i64>(k + 1)? as u64,
                    prompt_tokens: row.get::<_, i64>(k + 2)? as u64,
                    completion_tokens: row.get::<_, i64>(k + 3)? as u64,
                    cost_usd: cost,
                    counterfactual_usd: cf,
                    savings_usd: cf - cost,
                    local_share: if ok > 0 {
                        local as f64 / ok as f64
                    } else {
                        0.0
                    },
                    mean_latency_ms: row.get(k + 8)?,
                })
            })?;
            rows.collect()
        };
        let totals = run(&[])
            .map_err(|e| self.sqlite(e))?
            .pop()
            .unwrap_or_default();
        let data = if dims.is_empty() {
            Vec::new()
        } else {
            run(&dims).map_err(|e| self.sqlite(e))?
        };
        Ok(UsageReport {
            object: "usage".into(),
            since: q.since.clone(),
            until: q.until.clone(),
            group_by: dims,
            totals,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ts_ms: i64, route: Option<&str>, backend: &str, local: bool, status: u16) -> Record {
        Record {
            ts_ms,
            endpoint: "chat".into(),
            route: route.map(str::to_string),
            backend: backend.into(),
            local,
            reason: "default".into(),
            status,
            stream: false,
            prompt_tokens: 100,
            completion_tokens: 50,
            estimated: false,
            cost_usd: if local { 0.0 } else { 0.01 },
            counterfactual_usd: 0.01,
            latency_ms: 10.0,
            attempts: 1,
        }
    }

    #[test]
    fn concurrent_opens_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let p = path.clone();
                std::thread::spawn(move || {
                    let l = Ledger::open(&p).unwrap();
                    l.record(&rec(i, None, "a", true, 200)).unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.usage(&UsageQuery::default()).unwrap().totals.requests, 8);
    }

    #[test]
    fn records_survive_reopening_and_sum_by_dimension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/usage.db");
        let day1 = 1_763_856_000_000; // 2025-11-23T00:00:00Z
        let day2 = day1 + 86_400_000;
        {
            let l = Ledger::open(&path).unwrap();
            l.record(&rec(day1, Some("auto"), "small", true, 200))
                .unwrap();
            l.record(&rec(day1 + 5, Some("auto"), "large", false, 200))
                .unwrap();
            l.record(&rec(day2, Some("auto"), "small", true, 200))
                .unwrap();
            l.record(&rec(day2, None, "small", true, 500)).unwrap();
        }
        let l = Ledger::open_read_only(&path).unwrap();
        let all = l.usage(&UsageQuery::default()).unwrap();
        assert_eq!(all.totals.requests, 4);
        assert_eq!(all.totals.errors, 1);
        assert_eq!(all.totals.prompt_tokens, 400);
        assert!((all.totals.cost_usd - 0.01).abs() < 1e-12);
        assert!((all.totals.savings_usd - 0.03).abs() < 1e-12);
        assert!((all.totals.local_share - 2.0 / 3.0).abs() < 1e-12);
        let by = l
            .usage(&UsageQuery {
                since: Some("2025-11-24".into()),
                until: None,
                group_by: vec![Dim::Route, Dim::Backend],
            })
            .unwrap();
        assert_eq!(by.totals.requests, 2);
        assert_eq!(by.data.len(), 2);
        assert_eq!(by.data[0].keys["route"], serde_json::Value::Null);
        assert_eq!(by.data[1].keys["route"], "auto");
        let days = l
            .usage(&UsageQuery {
                group_by: vec![Dim::Day],
                ..Default::default()
            })
            .unwrap();
        let names: Vec<_> = days.data.iter().map(|r| r.keys["day"].clone()).collect();
        assert_eq!(names, ["2025-11-23", "2025-11-24"]);
        let bad = l.usage(&UsageQuery {
            since: Some("yesterday".into()),
            ..Default::default()
        });
        assert!(matches!(bad, Err(LedgerError::Query(_))));
        for day in ["2025-13-45", "2025-02-30", "2025-1-01"] {
            let bad = l.usage(&UsageQuery {
                until: Some(day.into()),
                ..Default::default()
            });
            assert!(matches!(bad, Err(LedgerError::Query(_))), "{day}");
        }
        assert!(Dim::parse("week").is_err());
    }
}
