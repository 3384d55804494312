//! `tame bench`: decisions per second, latency percentiles and per-rule hit
//! counts and cost over a file of calls, to guide rule ordering.
//!
//! Calls are converted once before timing (as the server converts each
//! request once); each timed decision is one `Policy::evaluate`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tame_engine::{MemoryFacts, Request};

use crate::Exit;
use crate::cli::BenchArgs;
use crate::error::CliError;
use crate::local::{load_policy, parse_call};
use crate::output::{Out, bold, dim};

/// Decisions timed in one progress-bar step.
const BATCH: u64 = 1024;

/// Reads the calls of a JSON-lines file; a malformed line is an error that
/// names its line.
fn read_calls(path: &Path) -> Result<Vec<(Request, MemoryFacts)>, CliError> {
    let file = std::fs::File::open(path).map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut calls = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| CliError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|e| {
            CliError::Input(format!(
                "{}:{}:{}: invalid JSON: {e}",
                path.display(),
                i + 1,
                e.column()
            ))
        })?;
        let (request, facts) =
            parse_call(&value).map_err(|e| CliError::Input(format!("{}:{}: {e}", path.display(), i + 1)))?;
        let mut facts = facts.unwrap_or_default();
        // Windows measure back from the call's time, not the clock.
        facts.set_now(request.now);
        calls.push((request, facts));
    }
    if calls.is_empty() {
        return Err(CliError::Input(format!("{}: no calls to benchmark", path.display())));
    }
    Ok(calls)
}

#[derive(Default)]
struct RuleStat {
    hits: u64,
    total: Duration,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied().unwrap_or(0)
}

/// `tame bench POLICY CALLS`.
pub fn bench(args: &BenchArgs, out: &Out) -> Result<Exit, CliError> {
    let policy = load_policy(&args.policy)?;
    let calls = read_calls(&args.calls)?;
    let n = calls.len();

    // Warm caches and branch predictors.
    for i in 0..args.warmup {
        if let Some((req, facts)) = calls.get((i as usize) % n) {
            std::hint::black_box(policy.evaluate(req, facts));
        }
    }

    let total = args.iterations.max(1);
    let progress = (total >= 500_000 && !out.json).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} decisions ({per_sec}, eta {eta})")
        {
            bar.set_style(style);
        }
        bar
    });

    let mut samples: Vec<u64> = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut per_rule: BTreeMap<String, RuleStat> = BTreeMap::new();
    let started = Instant::now();
    let mut done = 0u64;
    while done < total {
        let step = BATCH.min(total - done);
        for k in 0..step {
            let Some((req, facts)) = calls.get(((done + k) as usize) % n) else {
                continue;
            };
            let t0 = Instant::now();
            let decision = policy.evaluate(req, facts);
            let dt = t0.elapsed();
            samples.push(u64::try_from(dt.as_nanos()).unwrap_or(u64::MAX));
            let key = decision
                .rule_name
                .as_deref()
                .map_or_else(|| String::from("(default)"), str::to_string);
            let stat = per_rule.entry(key).or_default();
            stat.hits += 1;
            stat.total += dt;
            std::hint::black_box(decision);
        }
        done += step;
        if let Some(bar) = &progress {
            bar.set_position(done);
        }
    }
    let wall = started.elapsed();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }

    samples.sort_unstable();
    let p50 = percentile(&samples, 0.50);
    let p99 = percentile(&samples, 0.99);
    let mean = if samples.is_empty() {
        0
    } else {
        samples.iter().sum::<u64>() / samples.len() as u64
    };
    // Throughput of the timed loop, including the timer's own cost.
    let per_sec = total as f64 / wall.as_secs_f64().max(f64::MIN_POSITIVE);

    // Rules in file order, the default last; rules never hit show 0.
    let mut rows: Vec<(String, u64, u64)> = Vec::new();
    let mut names: Vec<String> = policy.info().rules.iter().map(|r| r.name.to_string()).collect();
    names.push(String::from("(default)"));
    for name in names {
        let (hits, avg) = per_rule.get(&name).map_or((0, 0), |s| {
            let avg = u64::try_from(s.total.as_nanos()).unwrap_or(u64::MAX) / s.hits.max(1);
            (s.hits, avg)
        });
        rows.push((name, hits, avg));
    }

    if out.json {
        out.json_pretty(&json!({
            "policy": args.policy.display().to_string(),
            "calls": n,
            "decisions": total,
            "decisions_per_sec": per_sec.round(),
            "p50_ns": p50,
            "p99_ns": p99,
            "mean_ns": mean,
            "rules": rows.iter().map(|(name, hits, avg)| json!({
                "rule": name, "hits": hits, "mean_ns": avg,
                "share": *hits as f64 / total as f64,
            })).collect::<Vec<_>>(),
        }));
        return Ok(Exit::Ok);
    }

    out.line(format!(
        "{} {} over {} calls ({} decisions)",
        bold("bench"),
        args.policy.display(),
        n,
        total
    ));
    out.line(format!("  decisions/s  {:>12.0}", per_sec));
    out.line(format!("  p50          {:>12}", format_ns(p50)));
    out.line(format!("  p99          {:>12}", format_ns(p99)));
    out.line(format!("  mean         {:>12}", format_ns(mean)));
    // Pad before styling: escape codes must not count as width.
    out.line(format!(
        "  {}",
        bold(format!(
            "{:>3} {:<36} {:>10} {:>7} {:>12}",
            "#", "rule", "hits", "share", "mean cost"
        ))
    ));
    for (index, (name, hits, avg)) in rows.iter().enumerate() {
        let share = *hits as f64 * 100.0 / total as f64;
        // Rules in file order; the default has no position.
        let position = if index + 1 < rows.len() {
            (index + 1).to_string()
        } else {
            String::new()
        };
        let line = format!(
            "  {:>3} {:<36} {:>10} {:>6.1}% {:>12}",
            position,
            name,
            hits,
            share,
            if *hits == 0 { String::from("-") } else { format_ns(*avg) }
        );
        if *hits == 0 {
            out.line(dim(line));
        } else {
            out.line(line);
        }
    }
    // The busiest rule: worth moving up (where the rules before it do not
    // overlap) or making cheaper.
    if let Some((index, (name, hits, _))) = rows
        .iter()
        .enumerate()
        .take(rows.len().saturating_sub(1))
        .max_by_key(|(_, (_, hits, _))| *hits)
        .filter(|(index, (_, hits, _))| *index > 0 && *hits > 0)
    {
        out.line(format!(
            "  busiest rule: {name} decides {:.1}% of calls as rule {} of {}",
            *hits as f64 * 100.0 / total as f64,
            index + 1,
            rows.len() - 1
        ));
    }
    out.line(dim("  (cost includes about 20-40 ns of timer overhead per decision)"));
    Ok(Exit::Ok)
}

fn format_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.2} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 51);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_ns(250), "250 ns");
        assert_eq!(format_ns(1_500), "1.50 µs");
        assert_eq!(format_ns(2_500_000), "2.50 ms");
    }
}
