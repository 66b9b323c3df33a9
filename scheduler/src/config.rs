//! Flags, and the configuration file in kube-scheduler's
//! `KubeSchedulerConfiguration` format (`kubescheduler.config.k8s.io/v1`):
//! profiles by `schedulerName`, plugins enabled and disabled per
//! extension point (or `multiPoint`), score weights, plugin arguments,
//! `percentageOfNodesToScore`, backoff and leader election.
//!
//! ```yaml
//! apiVersion: kubescheduler.config.k8s.io/v1
//! kind: KubeSchedulerConfiguration
//! profiles:
//! - schedulerName: bin-packing
//!   plugins:
//!     score:
//!       disabled: [{name: NodeResourcesBalancedAllocation}]
//!   pluginConfig:
//!   - name: NodeResourcesFit
//!     args: {scoringStrategy: {type: MostAllocated}}
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::framework::{Plugin, Profile};
use crate::plugins;

#[derive(Debug, Clone, Parser)]
#[command(name = "kubernate-scheduler", about = "Assigns unscheduled pods to nodes.")]
pub struct Flags {
    /// Kubeconfig of the scheduler's identity (system:kube-scheduler).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The API server's address, overriding the kubeconfig's.
    #[arg(long)]
    pub master: Option<String>,
    /// A KubeSchedulerConfiguration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve /metrics and /healthz (plain HTTP) on this address.
    #[arg(long, default_value = "127.0.0.1:10259")]
    pub metrics_bind_address: SocketAddr,
    /// Run only while holding the leader Lease (overrides the file).
    #[arg(long, action = clap::ArgAction::Set)]
    pub leader_elect: Option<bool>,
    /// How often candidates retry and the leader renews.
    #[arg(long, default_value = "2")]
    pub leader_elect_retry_period_seconds: f64,
    #[command(flatten)]
    pub telemetry: common::telemetry::TelemetryArgs,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginRef {
    pub name: String,
    #[serde(default)]
    pub weight: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginSet {
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    #[serde(default)]
    pub multi_point: PluginSet,
    #[serde(default)]
    pub pre_filter: PluginSet,
    #[serde(default)]
    pub filter: PluginSet,
    #[serde(default)]
    pub post_filter: PluginSet,
    #[serde(default)]
    pub pre_score: PluginSet,
    #[serde(default)]
    pub score: PluginSet,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginConfig {
    pub name: String,
    #[serde(default)]
    pub args: serde_json::Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileConfig {
    #[serde(default)]
    pub scheduler_name: Option<String>,
    #[serde(default)]
    pub plugins: Plugins,
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderElection {
    #[serde(default)]
    pub leader_elect: Option<bool>,
    #[serde(default)]
    pub resource_namespace: Option<String>,
    #[serde(default)]
    pub resource_name: Option<String>,
}

/// The file's contents (every field optional, as upstream).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerConfiguration {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    #[serde(default)]
    pub pod_initial_backoff_seconds: Option<u64>,
    #[serde(default)]
    pub pod_max_backoff_seconds: Option<u64>,
    #[serde(default)]
    pub parallelism: Option<usize>,
    #[serde(default)]
    pub profiles: Vec<ProfileConfig>,
    #[serde(default)]
    pub leader_election: LeaderElection,
}

/// Everything the scheduler runs with, checked.
pub struct Settings {
    pub profiles: Vec<Arc<Profile>>,
    pub percentage_of_nodes_to_score: i32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub parallelism: usize,
    pub leader_elect: bool,
    pub lease_namespace: String,
    pub lease_name: String,
}

fn named(set: &[PluginRef], name: &str) -> bool {
    set.iter().any(|p| p.name == name || p.name == "*")
}

fn build_profile(config: &ProfileConfig) -> Result<Profile, String> {
    let plugins = &config.plugins;
    let args = |name: &str| config.plugin_config.iter().find(|c| c.name == name).map(|c| &c.args);
    for c in &config.plugin_config {
        plugins::build(&c.name, Some(&c.args))?; // Unknown names and bad args fail here.
    }
    let mut filters: Vec<String> = plugins::DEFAULT_FILTERS.iter().map(|s| s.to_string()).collect();
    let mut scores: Vec<(String, i64)> = plugins::DEFAULT_SCORES
        .iter()
        .map(|(n, w)| (n.to_string(), *w))
        .collect();
    let disabled_everywhere = &plugins.multi_point.disabled;
    filters.retain(|n| !named(disabled_everywhere, n) && !named(&plugins.filter.disabled, n));
    scores.retain(|(n, _)| !named(disabled_everywhere, n) && !named(&plugins.score.disabled, n));
    for p in &plugins.multi_point.enabled {
        plugins::build(&p.name, args(&p.name))?;
        if plugins::filters(&p.name) && !filters.contains(&p.name) {
            filters.push(p.name.clone());
        }
        if plugins::scores(&p.name) {
            scores.retain(|(n, _)| n != &p.name);
            scores.push((p.name.clone(), p.weight.unwrap_or(1)));
        }
    }
    for p in &plugins.filter.enabled {
        plugins::build(&p.name, args(&p.name))?;
        if !filters.contains(&p.name) {
            filters.push(p.name.clone());
        }
    }
    for p in &plugins.score.enabled {
        plugins::build(&p.name, args(&p.name))?;
        scores.retain(|(n, _)| n != &p.name);
        scores.push((p.name.clone(), p.weight.unwrap_or(1)));
    }
    let built = |name: &str| -> Result<Arc<dyn Plugin>, String> { plugins::build(name, args(name)) };
    let preemption =
        !named(&plugins.post_filter.disabled, "DefaultPreemption") && !named(disabled_everywhere, "DefaultPreemption");
    Ok(Profile {
        scheduler_name: config
            .scheduler_name
            .clone()
            .unwrap_or_else(|| "default-scheduler".into()),
        filters: filters.iter().map(|n| built(n)).collect::<Result<_, _>>()?,
        scores: scores
            .iter()
            .map(|(n, w)| Ok((built(n)?, *w)))
            .collect::<Result<_, String>>()?,
        preemption,
    })
}

impl Settings {
    pub fn from_file(text: Option<&str>, flags: &Flags) -> Result<Settings, String> {
        let config: SchedulerConfiguration = match text {
            Some(t) => serde_yaml::from_str(t).map_err(|e| format!("scheduler configuration: {e}"))?,
            None => SchedulerConfiguration::default(),
        };
        if let Some(v) = config.api_version.as_deref() {
            if v != "kubescheduler.config.k8s.io/v1" {
                return Err(format!(
                    "scheduler configuration: apiVersion {v:?} is not kubescheduler.config.k8s.io/v1"
                ));
            }
        }
        if config
            .kind
            .as_deref()
            .is_some_and(|k| k != "KubeSchedulerConfiguration")
        {
            return Err("scheduler configuration: kind must be KubeSchedulerConfiguration".into());
        }
        let percentage = config.percentage_of_nodes_to_score.unwrap_or(0);
        if !(0..=100).contains(&percentage) {
            return Err(format!(
                "percentageOfNodesToScore must be between 0 and 100, not {percentage}"
            ));
        }
        let profiles_config = if config.profiles.is_empty() {
            vec![ProfileConfig::default()]
        } else {
            config.profiles.clone()
        };
        let mut profiles = Vec::new();
        for p in &profiles_config {
            let profile = build_profile(p)?;
            if profiles
                .iter()
                .any(|q: &Arc<Profile>| q.scheduler_name == profile.scheduler_name)
            {
                return Err(format!("duplicate profile schedulerName {:?}", profile.scheduler_name));
            }
            profiles.push(Arc::new(profile));
        }
        let parallelism = config
            .parallelism
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1);
        Ok(Settings {
            profiles,
            percentage_of_nodes_to_score: percentage,
            initial_backoff: Duration::from_secs(config.pod_initial_backoff_seconds.unwrap_or(1)),
            max_backoff: Duration::from_secs(config.pod_max_backoff_seconds.unwrap_or(10)),
            parallelism,
            leader_elect: flags
                .leader_elect
                .or(config.leader_election.leader_elect)
                .unwrap_or(true),
            lease_namespace: config
                .leader_election
                .resource_namespace
                .unwrap_or_else(|| "kube-system".into()),
            lease_name: config
                .leader_election
                .resource_name
                .unwrap_or_else(|| "kube-scheduler".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags::parse_from(["s", "--kubeconfig", "k"])
    }

    fn names(p: &Profile) -> (Vec<&'static str>, Vec<(&'static str, i64)>) {
        (
            p.filters.iter().map(|f| f.name()).collect(),
            p.scores.iter().map(|(s, w)| (s.name(), *w)).collect(),
        )
    }

    #[test]
    fn defaults_and_a_second_profile() {
        let text = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
    filter:
      disabled: [{name: PodTopologySpread}]
    postFilter:
      disabled: [{name: DefaultPreemption}]
  pluginConfig:
  - name: NodeResourcesFit
    args: {scoringStrategy: {type: MostAllocated}}
"#;
        let s = Settings::from_file(Some(text), &flags()).unwrap();
        assert_eq!(s.percentage_of_nodes_to_score, 30);
        assert_eq!(s.profiles.len(), 2);
        let (filters, scores) = names(&s.profiles[0]);
        assert_eq!(filters.len(), 8);
        assert_eq!(scores.len(), 7);
        assert!(s.profiles[0].preemption);
        let (filters, scores) = names(&s.profiles[1]);
        assert!(!filters.contains(&"PodTopologySpread"));
        assert_eq!(scores, vec![("NodeResourcesFit", 5)]);
        assert!(!s.profiles[1].preemption);
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        for (text, wanted) in [
            ("apiVersion: kubescheduler.config.k8s.io/v1beta1", "apiVersion"),
            ("percentageOfNodesToScore: 150", "between 0 and 100"),
            (
                "profiles: [{plugins: {filter: {enabled: [{name: Nope}]}}}]",
                "unknown plugin \"Nope\"",
            ),
            ("profiles: [{}, {}]", "duplicate profile"),
            (
                "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: Random}}}]}]",
                "unknown scoring strategy",
            ),
        ] {
            let err = Settings::from_file(Some(text), &flags()).err().unwrap();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
