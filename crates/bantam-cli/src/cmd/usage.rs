//! `bantam usage`: what the server's requests cost, from the ledger on disk (works
//! while the server runs, and after it stopped).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bantam_router::{Dim, Ledger, UsageQuery, UsageReport, UsageRow};
use clap::Args;

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Group by these, comma-separated: backend, route, day, endpoint.
    #[arg(long, default_value = "backend", value_delimiter = ',')]
    pub by: Vec<String>,
    /// First day (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Last day (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub until: Option<String>,
    /// Print the report as JSON (the same as GET /v1/usage).
    #[arg(long)]
    pub json: bool,
    /// The ledger file (default: `[usage] path` of --config, else BANTAM_HOME/usage.db).
    #[arg(long, env = "BANTAM_USAGE_DB", value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// The server's TOML configuration (to find its ledger).
    #[arg(long, env = "BANTAM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn db_path(home: &Path, a: &UsageArgs) -> Result<PathBuf> {
    if let Some(p) = &a.db {
        return Ok(p.clone());
    }
    if let Some(c) = &a.config {
        let text = std::fs::read_to_string(c)
            .with_context(|| format!("reading config file {}", c.display()))?;
        let cfg = bantam_server::ServeSettings::from_toml(&text, c)?.resolve();
        if let Some(p) = cfg.usage.path {
            return Ok(p);
        }
    }
    Ok(home.join("usage.db"))
}

pub fn usage(home: &Path, a: UsageArgs) -> Result<()> {
    let path = db_path(home, &a)?;
    if !path.exists() {
        bail!(
            "no usage recorded yet: {} does not exist. `bantam serve` records every chat and \
             completions request there (see [usage] in examples/hybrid-routing.toml)",
            path.display()
        );
    }
    let group_by =
        a.by.iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| Dim::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
    let ledger = Ledger::open_read_only(&path)?;
    let report = ledger.usage(&UsageQuery {
        since: a.since.clone(),
        until: a.until.clone(),
        group_by,
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn cells(keys: &[String], r: &UsageRow) -> Vec<String> {
    let mut c: Vec<String> = keys
        .iter()
        .map(|k| match r.keys.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) if k == "route" => "(direct)".into(),
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .collect();
    c.extend([
        r.requests.to_string(),
        r.errors.to_string(),
        r.prompt_tokens.to_string(),
        r.completion_tokens.to_string(),
        format!("{:.6}", r.cost_usd),
        format!("{:.6}", r.counterfactual_usd),
        format!("{:.6}", r.savings_usd),
        format!("{:.1}%", r.local_share * 100.0),
        format!("{:.0}", r.mean_latency_ms),
    ]);
    c
}

/// An aligned text table; the last line is the totals.
pub fn render(rep: &UsageReport) -> String {
    let keys: Vec<String> = rep
        .group_by
        .iter()
        .map(|d| {
            serde_json::to_value(d)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    let mut head: Vec<String> = keys.clone();
    head.extend(
        [
            "requests",
            "errors",
            "prompt tok",
            "completion tok",
            "cost $",
            "if largest $",
            "saved $",
            "local",
            "mean ms",
        ]
        .map(String::from),
    );
    let mut rows: Vec<Vec<String>> = rep.data.iter().map(|r| cells(&keys, r)).collect();
    let mut total = cells(&keys, &rep.totals);
    for (i, k) in total.iter_mut().enumerate().take(keys.len()) {
        *k = if i == 0 {
            "total".into()
        } else {
            String::new()
        };
    }
    rows.push(total);
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String]| {
        let mut s = String::new();
        for (i, c) in r.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i < keys.len() {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
            s.push_str("  ");
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&head);
    let n = rows.len();
    for (i, r) in rows.iter().enumerate() {
        if i + 1 == n && n > 1 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * widths.len() - 2));
            out.push('\n');
        }
        out.push_str(&line(r));
    }
    out
}
