//! `kubernate-store-bench`: load for any etcd v3 endpoint, through the
//! etcd-client crate, so Kubernate's store and a real etcd are measured by
//! the same code with the same parameters.
//!
//! Phases: `put` (concurrent puts of distinct keys), `range` (linearizable
//! single-key gets of keys that exist), `txn` (compare-and-put), and
//! `watch` (the time from a put's acknowledgement to the event reaching a
//! watcher on another connection). Each prints one line:
//! `LABEL PHASE ops/s p50_ms p99_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, WatchOptions};

#[derive(Parser, Debug)]
#[command(about = "Drive put, range, txn and watch load at an etcd v3 endpoint")]
struct Args {
    /// Endpoints (comma-separated), e.g. http://127.0.0.1:2379.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// A label printed on every line (e.g. "kubernate-1" or "etcd-3").
    #[arg(long, default_value = "store")]
    label: String,
    /// Concurrent clients (each its own connection).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Operations per phase, split across the clients.
    #[arg(long, default_value_t = 5000)]
    ops: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Phases to run.
    #[arg(long, value_delimiter = ',', default_value = "put,range,txn,watch")]
    phases: Vec<String>,
}

struct Sample {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Sample {
    fn print(&self, label: &str, phase: &str) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| -> f64 {
            if l.is_empty() {
                return 0.0;
            }
            let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
            l[i].as_secs_f64() * 1000.0
        };
        let rate = self.ops as f64 / self.elapsed.as_secs_f64();
        println!(
            "{label:<14} {phase:<6} {rate:>10.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            pct(0.50),
            pct(0.99)
        );
    }
}

async fn clients(args: &Args) -> anyhow::Result<Vec<Client>> {
    let mut all = Vec::new();
    for _ in 0..args.clients {
        all.push(Client::connect(&args.endpoints, None).await?);
    }
    Ok(all)
}

/// Runs `op(client, i)` for `ops` indices spread over the clients.
async fn run<F, Fut>(clients: &[Client], ops: usize, op: F) -> anyhow::Result<Sample>
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let per = ops.div_ceil(clients.len());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let (client, op) = (client.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per);
            for i in (c * per)..((c + 1) * per).min(ops) {
                let t = Instant::now();
                op(client.clone(), i).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(ops);
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(Sample {
        ops,
        elapsed: started.elapsed(),
        latencies,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(!args.endpoints.is_empty(), "--endpoints is required");
    anyhow::ensure!(args.clients > 0 && args.ops > 0, "--clients and --ops must be positive");
    let pool = clients(&args).await?;
    let value = Arc::new(vec![b'v'; args.value_size]);
    for phase in &args.phases {
        let sample = match phase.as_str() {
            "put" => {
                let value = value.clone();
                run(&pool, args.ops, move |mut c, i| {
                    let value = value.clone();
                    async move {
                        c.put(format!("bench/put/{i:08}"), value.as_slice(), None).await?;
                        Ok(())
                    }
                })
                .await?
            }
            "range" => {
                let keys = args.ops.min(1000);
                let mut c = pool[0].clone();
                for i in 0..keys {
                    c.put(format!("bench/range/{i:08}"), value.as_slice(), None).await?;
                }
                run(&pool, args.ops, move |mut c, i| async move {
                    let resp = c.get(format!("bench/range/{:08}", i % keys), None).await?;
                    anyhow::ensure!(resp.kvs().len() == 1, "key missing");
                    Ok(())
                })
                .await?
            }
            "txn" => {
                let value = value.clone();
                run(&pool, args.ops, move |mut c, i| {
                    let value = value.clone();
                    async move {
                        let key = format!("bench/txn/{i:08}");
                        let txn = Txn::new()
                            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(key.as_str(), value.as_slice(), None)]);
                        c.txn(txn).await?;
                        Ok(())
                    }
                })
                .await?
            }
            "watch" => watch_phase(&pool, &args, &value).await?,
            other => anyhow::bail!("unknown phase {other:?} (put, range, txn, watch)"),
        };
        sample.print(&args.label, phase);
    }
    Ok(())
}

/// One writer, one watcher on another connection: how long after the put
/// is acknowledged the event arrives, and the event throughput.
async fn watch_phase(pool: &[Client], args: &Args, value: &[u8]) -> anyhow::Result<Sample> {
    let mut watcher = Client::connect(&args.endpoints, None).await?;
    let mut stream = watcher
        .watch("bench/watch/", Some(WatchOptions::new().with_prefix()))
        .await?;
    // The first message confirms the watch is created.
    stream.message().await?;
    let mut writer = pool[0].clone();
    let ops = args.ops.min(2000);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(ops);
    for i in 0..ops {
        writer.put(format!("bench/watch/{i:08}"), value, None).await?;
        let acked = Instant::now();
        loop {
            let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .map_err(|_| anyhow::anyhow!("no watch event within 10s"))??
                .ok_or_else(|| anyhow::anyhow!("watch stream ended"))?;
            if !resp.events().is_empty() {
                break;
            }
        }
        latencies.push(acked.elapsed());
    }
    Ok(Sample {
        ops,
        elapsed: started.elapsed(),
        latencies,
    })
}
