//! `/metrics/resource`: the node's and each container's and pod's cpu and
//! memory use, under the names metrics-server and `kubectl top` read
//! (`node_cpu_usage_seconds_total`, `container_memory_working_set_bytes`,
//! …). An isolated container's use is its cgroup's; a plain process
//! container's is the sum over its process group, from /proc.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::runtime::{ContainerStatus, State};

/// (cpu seconds, resident bytes) of one process, and its process group.
fn process(pid: &str, ticks: f64) -> Option<(i32, f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    // After the command: state(3) ppid(4) pgrp(5) … utime(14) stime(15) … rss(24).
    let group: i32 = fields.get(2)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    let page = rustix::param::page_size() as u64;
    Some((group, (utime + stime) / ticks, rss_pages * page))
}

/// Per process group: (cpu seconds, resident bytes).
fn by_group() -> HashMap<i32, (f64, u64)> {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let mut groups: HashMap<i32, (f64, u64)> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some((group, cpu, rss)) = process(&name, ticks) {
            let entry = groups.entry(group).or_default();
            entry.0 += cpu;
            entry.1 += rss;
        }
    }
    groups
}

fn node_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy: f64 = values
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .take(8)
        .map(|(_, v)| v)
        .sum();
    Some(busy / rustix::param::clock_ticks_per_second() as f64)
}

fn node_working_set() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    Some(field("MemTotal:")?.saturating_sub(field("MemAvailable:")?))
}

/// The exposition text.
pub fn render(containers: &[ContainerStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP node_cpu_usage_seconds_total Cumulative cpu time consumed by the node in core-seconds"
    );
    let _ = writeln!(out, "# TYPE node_cpu_usage_seconds_total counter");
    let _ = writeln!(
        out,
        "node_cpu_usage_seconds_total {}",
        node_cpu_seconds().unwrap_or(0.0)
    );
    let _ = writeln!(
        out,
        "# HELP node_memory_working_set_bytes Current working set of the node in bytes"
    );
    let _ = writeln!(out, "# TYPE node_memory_working_set_bytes gauge");
    let _ = writeln!(out, "node_memory_working_set_bytes {}", node_working_set().unwrap_or(0));
    let groups = by_group();
    let cgroups = crate::runtime::cgroups::detect();
    let mut pods: HashMap<(String, String), (f64, u64)> = HashMap::new();
    let mut cpu_lines = String::new();
    let mut memory_lines = String::new();
    for c in containers {
        let State::Running { pid, .. } = c.state else { continue };
        // An isolated container is its cgroup; a plain one its process group.
        let (cpu, memory) = crate::runtime::process::isolates(&c.config)
            .then(|| cgroups.usage(&c.config.pod_uid, &c.id))
            .flatten()
            .or_else(|| groups.get(&pid).copied())
            .unwrap_or_default();
        let labels = format!(
            "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
            c.config.name, c.config.pod_namespace, c.config.pod_name
        );
        let _ = writeln!(cpu_lines, "container_cpu_usage_seconds_total{{{labels}}} {cpu}");
        let _ = writeln!(memory_lines, "container_memory_working_set_bytes{{{labels}}} {memory}");
        let pod = pods
            .entry((c.config.pod_namespace.clone(), c.config.pod_name.clone()))
            .or_default();
        pod.0 += cpu;
        pod.1 += memory;
    }
    let _ = writeln!(
        out,
        "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed by the container in core-seconds"
    );
    let _ = writeln!(out, "# TYPE container_cpu_usage_seconds_total counter");
    out.push_str(&cpu_lines);
    let _ = writeln!(
        out,
        "# HELP container_memory_working_set_bytes Current working set of the container in bytes"
    );
    let _ = writeln!(out, "# TYPE container_memory_working_set_bytes gauge");
    out.push_str(&memory_lines);
    let _ = writeln!(
        out,
        "# HELP pod_cpu_usage_seconds_total Cumulative cpu time consumed by the pod in core-seconds"
    );
    let _ = writeln!(out, "# TYPE pod_cpu_usage_seconds_total counter");
    for ((namespace, pod), (cpu, _)) in &pods {
        let _ = writeln!(
            out,
            "pod_cpu_usage_seconds_total{{namespace=\"{namespace}\",pod=\"{pod}\"}} {cpu}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP pod_memory_working_set_bytes Current working set of the pod in bytes"
    );
    let _ = writeln!(out, "# TYPE pod_memory_working_set_bytes gauge");
    for ((namespace, pod), (_, memory)) in &pods {
        let _ = writeln!(
            out,
            "pod_memory_working_set_bytes{{namespace=\"{namespace}\",pod=\"{pod}\"}} {memory}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP scrape_error 1 if there was an error while getting container metrics, 0 otherwise"
    );
    let _ = writeln!(out, "# TYPE scrape_error gauge");
    let _ = writeln!(out, "scrape_error 0");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_group_is_measured() {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let me = std::process::id().to_string();
        let (_, cpu, rss) = process(&me, ticks).unwrap();
        assert!(cpu >= 0.0 && rss > 0);
        let text = render(&[]);
        assert!(text.contains("node_cpu_usage_seconds_total "));
        assert!(text.contains("scrape_error 0"));
    }
}
