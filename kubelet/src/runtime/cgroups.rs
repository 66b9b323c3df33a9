//! Control groups: each container gets its own, which holds every
//! process it starts, enforces its cpu and memory limits, counts what it
//! uses, and tells an out-of-memory kill from any other SIGKILL.
//!
//! Two kernel interfaces exist. cgroup v1 mounts one hierarchy per
//! controller (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu`, …); cgroup
//! v2 one unified tree whose controllers are switched on per subtree. The
//! kubelet detects which this host has (v1 when the memory controller is
//! mounted as v1, as on hybrid hosts) and says so in its log.
//!
//! Layout, in every hierarchy: `kubernate/pod<uid>/<container id>`.

use std::path::{Path, PathBuf};

use super::Limits;

const BASE: &str = "kubernate";
/// The CFS period the quota is a share of (upstream's 100 ms).
const CFS_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// Mount points of the memory, cpu, cpuacct and pids controllers.
    V1 {
        memory: PathBuf,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
    V2 {
        root: PathBuf,
    },
    /// No usable cgroup controllers (or not root): no limits.
    None,
}

/// Reads the mount table for cgroup file systems.
pub fn detect() -> Driver {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return Driver::None;
    };
    detect_from(&mounts)
}

fn detect_from(mounts: &str) -> Driver {
    let (mut memory, mut cpu, mut cpuacct, mut pids, mut unified) = (None, None, None, None, None);
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, point, kind, options, ..] = fields[..] else {
            continue;
        };
        let point = PathBuf::from(point);
        match kind {
            "cgroup2" => unified = Some(point),
            "cgroup" => {
                for option in options.split(',') {
                    match option {
                        "memory" => memory = Some(point.clone()),
                        "cpu" => cpu = Some(point.clone()),
                        "cpuacct" => cpuacct = Some(point.clone()),
                        "pids" => pids = Some(point.clone()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match (memory, unified) {
        (Some(memory), _) => Driver::V1 {
            memory,
            cpu,
            cpuacct,
            pids,
        },
        (None, Some(root)) => Driver::V2 { root },
        (None, None) => Driver::None,
    }
}

fn write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", dir.join(file).display()),
        )
    })
}

/// A counter line `name N` of a flat-keyed cgroup file.
fn counter(file: &Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// cpu.shares for a request (upstream's MilliCPUToShares).
fn shares(millis: u64) -> u64 {
    (millis.saturating_mul(1024) / 1000).max(2)
}

impl Driver {
    pub fn describe(&self) -> String {
        match self {
            Driver::V1 { memory, .. } => format!("cgroup v1 (memory controller at {})", memory.display()),
            Driver::V2 { root } => format!("cgroup v2 (unified hierarchy at {})", root.display()),
            Driver::None => "no cgroups: containers run without limits".into(),
        }
    }

    fn relative(pod_uid: &str, id: Option<&str>) -> PathBuf {
        let pod = Path::new(BASE).join(format!("pod{pod_uid}"));
        match id {
            Some(id) => pod.join(id),
            None => pod,
        }
    }

    /// Every hierarchy's directory for a pod or one of its containers.
    fn dirs(&self, pod_uid: &str, id: Option<&str>) -> Vec<PathBuf> {
        let relative = Self::relative(pod_uid, id);
        match self {
            Driver::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
            } => {
                let mut roots = vec![memory.clone()];
                roots.extend(cpu.iter().cloned());
                // cpu and cpuacct are often one hierarchy (`cpu,cpuacct`).
                roots.extend(cpuacct.iter().filter(|a| Some(*a) != cpu.as_ref()).cloned());
                roots.extend(pids.iter().cloned());
                roots.into_iter().map(|r| r.join(&relative)).collect()
            }
            Driver::V2 { root } => vec![root.join(relative)],
            Driver::None => Vec::new(),
        }
    }

    /// Creates the container's cgroup with its limits; returns the
    /// directories its first process joins (writing 0 to `cgroup.procs`).
    pub fn create(&self, pod_uid: &str, id: &str, limits: &Limits) -> std::io::Result<Vec<PathBuf>> {
        match self {
            Driver::None => Ok(Vec::new()),
            Driver::V1 { memory, cpu, .. } => {
                let dirs = self.dirs(pod_uid, Some(id));
                for d in &dirs {
                    std::fs::create_dir_all(d)?;
                }
                let relative = Self::relative(pod_uid, Some(id));
                if let Some(bytes) = limits.memory_limit_bytes {
                    write(&memory.join(&relative), "memory.limit_in_bytes", &bytes.to_string())?;
                }
                if let Some(cpu) = cpu {
                    let dir = cpu.join(&relative);
                    if let Some(millis) = limits.cpu_request_millis.or(limits.cpu_limit_millis) {
                        write(&dir, "cpu.shares", &shares(millis).to_string())?;
                    }
                    if let Some(millis) = limits.cpu_limit_millis {
                        write(&dir, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
                        let quota = (millis.saturating_mul(CFS_PERIOD_US) / 1000).max(1000);
                        write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
                    }
                }
                Ok(dirs)
            }
            Driver::V2 { root } => {
                // Controllers reach a cgroup only when every ancestor enables
                // them for its children.
                let mut at = root.clone();
                for part in Self::relative(pod_uid, Some(id)).components() {
                    let _ = write(&at, "cgroup.subtree_control", "+memory +cpu +pids");
                    at = at.join(part);
                    std::fs::create_dir_all(&at)?;
                }
                if let Some(bytes) = limits.memory_limit_bytes {
                    write(&at, "memory.max", &bytes.to_string())?;
                    // Swapping would hide the limit being hit.
                    let _ = write(&at, "memory.swap.max", "0");
                }
                if let Some(millis) = limits.cpu_request_millis.or(limits.cpu_limit_millis) {
                    let weight = 1 + (shares(millis).saturating_sub(2).saturating_mul(9999) / 262_142).min(9999);
                    write(&at, "cpu.weight", &weight.to_string())?;
                }
                if let Some(millis) = limits.cpu_limit_millis {
                    let quota = (millis.saturating_mul(CFS_PERIOD_US) / 1000).max(1000);
                    write(&at, "cpu.max", &format!("{quota} {CFS_PERIOD_US}"))?;
                }
                Ok(vec![at])
            }
        }
    }

    /// How many times the kernel's OOM killer struck inside the container.
    pub fn oom_kills(&self, pod_uid: &str, id: &str) -> u64 {
        let relative = Self::relative(pod_uid, Some(id));
        match self {
            Driver::V1 { memory, .. } => counter(&memory.join(relative).join("memory.oom_control"), "oom_kill"),
            Driver::V2 { root } => counter(&root.join(relative).join("memory.events"), "oom_kill"),
            Driver::None => None,
        }
        .unwrap_or(0)
    }

    /// (cpu seconds used, working-set bytes) of a container, when its
    /// cgroup exists.
    pub fn usage(&self, pod_uid: &str, id: &str) -> Option<(f64, u64)> {
        let relative = Self::relative(pod_uid, Some(id));
        match self {
            Driver::V1 { memory, cpuacct, .. } => {
                let dir = memory.join(&relative);
                let usage: u64 = std::fs::read_to_string(dir.join("memory.usage_in_bytes"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                let inactive = counter(&dir.join("memory.stat"), "total_inactive_file").unwrap_or(0);
                let cpu_ns: u64 = cpuacct
                    .as_ref()
                    .and_then(|a| std::fs::read_to_string(a.join(&relative).join("cpuacct.usage")).ok())
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
                Some((cpu_ns as f64 / 1e9, usage.saturating_sub(inactive)))
            }
            Driver::V2 { root } => {
                let dir = root.join(&relative);
                let usage: u64 = std::fs::read_to_string(dir.join("memory.current"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                let inactive = counter(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
                let cpu_us = counter(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0);
                Some((cpu_us as f64 / 1e6, usage.saturating_sub(inactive)))
            }
            Driver::None => None,
        }
    }

    /// Removes a container's cgroup (its processes are gone).
    pub fn remove(&self, pod_uid: &str, id: &str) {
        for d in self.dirs(pod_uid, Some(id)) {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// Removes a pod's cgroup and whatever container cgroups are left in it.
    pub fn remove_pod(&self, pod_uid: &str) {
        for d in self.dirs(pod_uid, None) {
            if let Ok(children) = std::fs::read_dir(&d) {
                for c in children.filter_map(|c| c.ok()) {
                    if c.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = std::fs::remove_dir(c.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_wins_on_hybrid_hosts_and_v2_alone_is_unified() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
            cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0\n\
            cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
            cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        let Driver::V1 {
            memory,
            cpu,
            cpuacct,
            pids,
        } = detect_from(hybrid)
        else {
            panic!("expected v1")
        };
        assert_eq!(memory, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(cpu, cpuacct);
        assert_eq!(pids, None);
        let driver = Driver::V1 {
            memory,
            cpu,
            cpuacct,
            pids,
        };
        // One directory per distinct hierarchy.
        assert_eq!(driver.dirs("u", Some("c")).len(), 2);
        assert_eq!(
            detect_from("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"),
            Driver::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(detect_from("proc /proc proc rw 0 0\n"), Driver::None);
    }

    #[test]
    fn requests_become_shares_as_upstream_computes_them() {
        assert_eq!(shares(1000), 1024);
        assert_eq!(shares(100), 102);
        assert_eq!(shares(1), 2);
    }
}
