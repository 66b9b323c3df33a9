//! `kubernate`: the launcher's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kubernate::pki;

/// Kubernate: a Kubernetes-style container orchestrator.
#[derive(Debug, Parser)]
#[command(name = "kubernate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a cluster on this machine: store, API server, controller
    /// manager, scheduler and one kubelet per node, as child processes.
    Up {
        /// Where the cluster lives (PKI, data, logs); kept between runs.
        #[arg(long, default_value = "./kubernate")]
        dir: PathBuf,
        /// How many nodes (kubelets) to run.
        #[arg(long, default_value_t = 1)]
        nodes: u32,
        /// Return once the cluster is ready; `kubernate down` stops it.
        #[arg(long)]
        detach: bool,
        /// Added to every port (2379, 6443, …) to run clusters side by side.
        #[arg(long, default_value_t = 0)]
        port_offset: u16,
        /// Where the component binaries are (default: beside this one).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// How long a node that stopped reporting stays Ready.
        #[arg(long, default_value = "40s")]
        node_monitor_grace_period: String,
    },
    /// Stop the cluster `kubernate up` runs from DIR.
    Down {
        #[arg(long, default_value = "./kubernate")]
        dir: PathBuf,
    },
    /// The local image store the kubelets' process runtime reads.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Certificates and kubeconfigs for a cluster.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Load a `docker save` archive or an OCI image layout archive.
    Import {
        file: PathBuf,
        /// The image store (default: the one `kubernate up --dir ./kubernate` uses).
        #[arg(long, default_value = "./kubernate/images")]
        store: PathBuf,
    },
    /// The images in the store.
    List {
        #[arg(long, default_value = "./kubernate/images")]
        store: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create the CAs, every component's certificate, the ServiceAccount
    /// signing keys and a kubeconfig per identity. Existing files are kept.
    Init {
        /// Directory to write into (created 0700 if absent).
        #[arg(long)]
        dir: PathBuf,
        /// Extra DNS names or IP addresses for the API server's certificate.
        #[arg(long, value_delimiter = ',')]
        apiserver_hosts: Vec<String>,
        /// Number of store members to create certificates for.
        #[arg(long, default_value_t = 1)]
        store_members: u32,
        /// Node names to create kubelet identities for.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// API server URL written into the kubeconfigs.
        #[arg(long, default_value = pki::DEFAULT_SERVER)]
        server: String,
        /// The Service IP range; its first address goes into the API server's certificate.
        #[arg(long, default_value = pki::DEFAULT_SERVICE_CIDR)]
        service_cluster_ip_range: String,
        /// Replace existing files, CAs included.
        #[arg(long)]
        force: bool,
    },
    /// Add a user's client certificate and kubeconfig (users/NAME.*),
    /// signed by the existing CA; RBAC decides what the user may do.
    User {
        /// The user name (the certificate's CN).
        name: String,
        /// Groups (the certificate's O entries).
        #[arg(long = "group")]
        groups: Vec<String>,
        #[command(flatten)]
        into: IssueInto,
    },
    /// Add a node's kubelet certificates and kubeconfig, signed by the existing CA.
    Node {
        /// The node name (a DNS-1123 subdomain).
        name: String,
        #[command(flatten)]
        into: IssueInto,
    },
}

/// Where `pki node` and `pki user` write, and how.
#[derive(Debug, clap::Args)]
struct IssueInto {
    /// The PKI directory made by `pki init`.
    #[arg(long)]
    dir: PathBuf,
    /// API server URL for the kubeconfig; defaults to admin.kubeconfig's.
    #[arg(long)]
    server: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

fn up_or_down(command: Command) -> ExitCode {
    let result = match command {
        Command::Up {
            dir,
            nodes,
            detach,
            port_offset,
            bin_dir,
            node_monitor_grace_period,
        } => {
            let opts = kubernate::up::Options {
                dir,
                nodes: nodes.max(1),
                port_offset,
                bin_dir,
                node_monitor_grace_period,
            };
            if detach {
                let args: Vec<String> = std::env::args().collect();
                kubernate::up::detach(&opts, &args)
            } else {
                match tokio::runtime::Runtime::new() {
                    Ok(rt) => rt.block_on(kubernate::up::run(opts)),
                    Err(e) => Err(kubernate::up::Error::Setup(format!("cannot start the runtime: {e}"))),
                }
            }
        }
        Command::Down { dir } => kubernate::up::down(&dir),
        Command::Pki { .. } | Command::Image { .. } => return ExitCode::FAILURE,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubernate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn image(command: ImageCommand) -> ExitCode {
    match command {
        ImageCommand::Import { file, store } => match kubernate::image::import(&file, &store) {
            Ok(name) => {
                println!("imported {name} into {}", store.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kubernate: importing {}: {e}", file.display());
                ExitCode::FAILURE
            }
        },
        ImageCommand::List { store } => {
            for name in kubernate::image::list(&store) {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        command @ (Command::Up { .. } | Command::Down { .. }) => return up_or_down(command),
        Command::Image { command } => return image(command),
        Command::Pki { command } => match command {
            PkiCommand::Init {
                dir,
                apiserver_hosts,
                store_members,
                nodes,
                server,
                service_cluster_ip_range,
                force,
            } => pki::init(&pki::InitOptions {
                dir,
                apiserver_hosts,
                store_members,
                nodes,
                server,
                service_cidr: service_cluster_ip_range,
                force,
            }),
            PkiCommand::Node { name, into } => pki::add_node(&into.dir, &name, into.server.as_deref(), into.force),
            PkiCommand::User { name, groups, into } => {
                pki::add_user(&into.dir, &name, &groups, into.server.as_deref(), into.force)
            }
        },
    };
    match result {
        Ok(report) => {
            for path in &report.created {
                println!("created {}", path.display());
            }
            if !report.kept.is_empty() {
                println!(
                    "kept {} existing files (use --force to replace them)",
                    report.kept.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubernate: {e}");
            ExitCode::FAILURE
        }
    }
}
