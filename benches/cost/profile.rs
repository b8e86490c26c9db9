//! `--profile`: where a wiring's extra instructions go, function by
//! function, against its baseline (callgrind's self cost per function, read
//! with `callgrind_annotate`, at 3N requests minus at N, over 2N).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::client::Workload;
use crate::serve::Wiring;

/// Rows printed per wiring and workload.
const ROWS: usize = 25;

/// Prints, for each workload and each wiring but the baselines, the
/// functions whose instructions per request differ most from its
/// baseline's, or from `against`'s.
pub(crate) fn compare(
    wirings: &[Wiring],
    against: Option<Wiring>,
    workloads: &[Workload],
    n: usize,
) -> Result<(), String> {
    for &workload in workloads {
        let mut baselines = HashMap::new();
        for &wiring in wirings.iter().filter(|w| w.baseline() != **w) {
            let base = against.unwrap_or(wiring.baseline());
            if let std::collections::hash_map::Entry::Vacant(e) = baselines.entry(base) {
                e.insert(per_function(base, workload, n)?);
            }
            let plain = &baselines[&base];
            let other = per_function(wiring, workload, n)?;
            let mut rows: Vec<(f64, f64, f64, &str)> = plain
                .keys()
                .chain(other.keys())
                .map(|f| {
                    let (p, o) = (get(plain, f), get(&other, f));
                    (o - p, o, p, f.as_str())
                })
                .collect();
            rows.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()).then(a.3.cmp(b.3)));
            rows.dedup_by(|a, b| a.3 == b.3);
            let extra: f64 = rows.iter().map(|r| r.0).sum();
            println!(
                "\n{} against {}, {}: {extra:+.0} instructions a request",
                wiring.name(),
                base.name(),
                workload.name()
            );
            println!("| more | {} | {} | function |", wiring.name(), base.name());
            println!("|---|---|---|---|");
            for (more, o, p, f) in rows.into_iter().filter(|r| r.0.abs() >= 1.0).take(ROWS) {
                println!("| {more:+.0} | {o:.0} | {p:.0} | `{}` |", shorten(f));
            }
        }
    }
    Ok(())
}

fn get(map: &HashMap<String, f64>, f: &str) -> f64 {
    map.get(f).copied().unwrap_or(0.0)
}

/// Instructions per request of each function.
fn per_function(
    wiring: Wiring,
    workload: Workload,
    n: usize,
) -> Result<HashMap<String, f64>, String> {
    let low = functions(wiring, workload, n)?;
    let high = functions(wiring, workload, 3 * n)?;
    let mut per = HashMap::new();
    for f in low.keys().chain(high.keys()) {
        let diff = *high.get(f).unwrap_or(&0) as f64 - *low.get(f).unwrap_or(&0) as f64;
        per.insert(f.clone(), diff / (2 * n) as f64);
    }
    Ok(per)
}

/// Self instructions of each function in one run.
fn functions(
    wiring: Wiring,
    workload: Workload,
    requests: usize,
) -> Result<HashMap<String, u64>, String> {
    let out = crate::run(wiring, workload, requests)?;
    let annotated = annotate(&out);
    let _ = std::fs::remove_file(&out);
    let mut table = HashMap::new();
    for line in annotated?.lines() {
        // `  1,234 ( 0.01%)  file:function [object]`
        let Some((count, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let Some((_, function)) = rest.split_once(")  ") else {
            continue;
        };
        let function = function.trim();
        if function != "PROGRAM TOTALS" {
            *table.entry(function.to_owned()).or_default() += count;
        }
    }
    Ok(table)
}

fn annotate(out: &Path) -> Result<String, String> {
    let output = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--auto=no"])
        .arg(out)
        .output()
        .map_err(|e| format!("callgrind_annotate: {e}"))?;
    if !output.status.success() {
        return Err(format!("callgrind_annotate exited with {}", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A function's name without its object file, and cut to a readable length.
fn shorten(f: &str) -> String {
    let f = f.split(" [").next().unwrap_or(f);
    let f = f.strip_prefix("???:").unwrap_or(f);
    f.chars().take(140).collect()
}
