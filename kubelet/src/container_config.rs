//! From a pod's spec and its image to what the runtime is asked to run
//! (upstream's generateContainerConfig): the command line, environment,
//! working directory, user, resource limits, and the mounts, including
//! the pod's own `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.

use std::path::Path;

use api::quantity::Quantity;
use common::image_store::Image;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::{ContainerConfig, Isolation, Limits, Mount};

/// The pod's host name: `spec.hostname`, else its name, at most 63
/// characters (a DNS label).
pub fn hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// Writes the pod's hosts, hostname and resolv.conf files into its
/// directory; returns them as mounts for every container.
pub fn pod_files(pod: &Pod, pod_dir: &Path, ip: &str) -> std::io::Result<Vec<Mount>> {
    std::fs::create_dir_all(pod_dir)?;
    let host = hostname(pod);
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.clone().unwrap_or_default();
    match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            hosts.push_str(&format!("{ip}\t{host}.{sub}.{ns}.svc.cluster.local\t{host}\n"));
        }
        None => hosts.push_str(&format!("{ip}\t{host}\n")),
    }
    for alias in spec.host_aliases.iter().flatten() {
        hosts.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            alias.ip,
            alias.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    // No cluster DNS yet: containers resolve as the node does.
    let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let mut mounts = Vec::new();
    for (file, target, content) in [
        ("etc-hosts", "/etc/hosts", hosts.into_bytes()),
        ("etc-hostname", "/etc/hostname", format!("{host}\n").into_bytes()),
        ("resolv.conf", "/etc/resolv.conf", resolv),
    ] {
        let path = pod_dir.join(file);
        if std::fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
            crate::runtime::shim::write_atomic(&path, &content)?;
        }
        mounts.push(Mount {
            source: path,
            target: target.into(),
            read_only: false,
        });
    }
    Ok(mounts)
}

/// `name` or `id` looked up in one of the image's `/etc/passwd` or
/// `/etc/group` files: (id, the passwd entry's group).
fn lookup_id(rootfs: &Path, file: &str, name: &str) -> Option<(u32, Option<u32>)> {
    let path = crate::runtime::rootfs::secure_join(rootfs, file).ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let id: u32 = fields.get(2)?.parse().ok()?;
        (fields.first() == Some(&name) || fields.get(2) == Some(&name))
            .then(|| (id, fields.get(3).and_then(|g| g.parse().ok())))
    })
}

/// The user and group the container runs as: the security context's
/// runAsUser/runAsGroup (the container's over the pod's), else the
/// image's `User` (`name`, `uid`, `name:group`, `uid:gid`).
fn user(pod: &Pod, spec: &Container, image: &Image) -> Result<(u32, u32), String> {
    let pod_ctx = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let ctx = spec.security_context.clone().unwrap_or_default();
    let id = |v: i64| u32::try_from(v).map_err(|_| format!("user or group id {v} is out of range"));
    let (image_user, image_group) = match image.config.user.as_deref().filter(|u| !u.is_empty()) {
        Some(text) => {
            let (u, g) = text.split_once(':').map_or((text, None), |(u, g)| (u, Some(g)));
            let (uid, passwd_gid) = match u.parse::<u32>() {
                Ok(n) => (n, lookup_id(&image.rootfs, "/etc/passwd", u).and_then(|(_, g)| g)),
                Err(_) => lookup_id(&image.rootfs, "/etc/passwd", u)
                    .ok_or_else(|| format!("unable to find user {u}: no matching entries in passwd file"))?,
            };
            let gid = match g {
                Some(g) => match g.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => {
                        lookup_id(&image.rootfs, "/etc/group", g)
                            .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?
                            .0
                    }
                },
                None => passwd_gid.unwrap_or(0),
            };
            (uid, gid)
        }
        None => (0, 0),
    };
    let uid = match ctx.run_as_user.or(pod_ctx.run_as_user) {
        Some(v) => id(v)?,
        None => image_user,
    };
    let gid = match ctx.run_as_group.or(pod_ctx.run_as_group) {
        Some(v) => id(v)?,
        None if ctx.run_as_user.or(pod_ctx.run_as_user).is_some() => {
            lookup_id(&image.rootfs, "/etc/passwd", &uid.to_string())
                .and_then(|(_, g)| g)
                .unwrap_or(0)
        }
        None => image_group,
    };
    if ctx.run_as_non_root.or(pod_ctx.run_as_non_root) == Some(true) && uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".into());
    }
    Ok((uid, gid))
}

/// cpu and memory limits (and the cpu request) from the container's resources.
fn limits(spec: &Container) -> Result<Limits, String> {
    let resources = spec.resources.clone().unwrap_or_default();
    let get =
        |map: &Option<std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         key: &str|
         -> Result<Option<Quantity>, String> {
            map.as_ref()
                .and_then(|m| m.get(key))
                .map(|q| Quantity::parse(&q.0).map_err(|e| e.to_string()))
                .transpose()
        };
    let positive = |v: i64| u64::try_from(v).ok().filter(|v| *v > 0);
    Ok(Limits {
        cpu_limit_millis: get(&resources.limits, "cpu")?.and_then(|q| positive(q.milli())),
        cpu_request_millis: get(&resources.requests, "cpu")?.and_then(|q| positive(q.milli())),
        memory_limit_bytes: get(&resources.limits, "memory")?.and_then(|q| positive(q.value())),
    })
}

/// Everything the runtime needs to create the container.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub spec: &'a Container,
    pub image: &'a Image,
    pub env: Vec<(String, String)>,
    /// The pod's files, then the container's volume mounts.
    pub mounts: Vec<Mount>,
    pub attempt: i32,
}

/// The container's config; `Err` is a CreateContainerConfigError.
pub fn build(inputs: Inputs<'_>) -> Result<ContainerConfig, String> {
    let Inputs {
        pod,
        spec,
        image,
        env,
        mounts,
        attempt,
    } = inputs;
    let argv = crate::env::argv(spec, &env, &image.config);
    let working_dir = spec
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.config.working_dir.clone().filter(|w| !w.is_empty()));
    Ok(ContainerConfig {
        pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        pod_namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        pod_name: pod.metadata.name.clone().unwrap_or_default(),
        name: spec.name.clone(),
        image: image.name.clone(),
        argv,
        env,
        working_dir,
        attempt,
        isolation: Some(Isolation {
            rootfs: image.rootfs.clone(),
            mounts,
            hostname: hostname(pod),
            user: Some(user(pod, spec, image)?),
            limits: limits(spec)?,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, SecurityContext};

    fn image(user: Option<&str>) -> (Image, std::path::PathBuf) {
        let root = std::env::temp_dir().join(format!("container-config-{}-{:?}", std::process::id(), user));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:2000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let image = Image {
            name: "test:latest".into(),
            config: common::image_store::RunConfig {
                user: user.map(str::to_string),
                ..Default::default()
            },
            rootfs: root.clone(),
        };
        (image, root)
    }

    #[test]
    fn users_come_from_the_security_context_then_the_image() {
        let pod = Pod::default();
        let c = Container::default();
        for (u, want) in [
            (None, Ok((0, 0))),
            (Some("app"), Ok((1000, 2000))),
            (Some("1000"), Ok((1000, 2000))),
            (Some("app:staff"), Ok((1000, 50))),
            (Some("7:8"), Ok((7, 8))),
            (Some("nobody"), Err(())),
        ] {
            let (img, root) = image(u);
            assert_eq!(user(&pod, &c, &img).map_err(|_| ()), want, "{u:?}");
            std::fs::remove_dir_all(root).unwrap();
        }
        let (img, root) = image(Some("app"));
        let pod = Pod {
            spec: Some(PodSpec {
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(5),
                    run_as_non_root: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(user(&pod, &c, &img).unwrap(), (5, 0));
        let root_container = Container {
            security_context: Some(SecurityContext {
                run_as_user: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(user(&pod, &root_container, &img).unwrap_err().contains("runAsNonRoot"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn host_names_are_dns_labels() {
        let mut pod = Pod::default();
        pod.metadata.name = Some(format!("{}-x", "a".repeat(62)));
        assert_eq!(hostname(&pod), "a".repeat(62));
    }
}
