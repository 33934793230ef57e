//! What `admin doctor` and `admin workers` check ([`worker::preflight`]) for a cluster, or
//! for this host alone before any cluster exists.

use std::path::Path;

use worker::config::Config;
use worker::preflight::Target;

use crate::cluster::base::{default_cache_dir, Recipe};
use crate::cluster::{template_config, ClusterError, BASE_RECIPE_JSON};

/// pip's index when `pip_index_url` is empty.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// The checks' target: the cluster at `cluster` (its template config, base, directory and
/// port, `port` overriding `worker_port`), or without one the base cache's entry and the
/// built-in template's settings.
pub fn target(
    cluster: Option<&Path>,
    template: Option<&Config>,
    port: Option<u16>,
) -> Result<Target, ClusterError> {
    let cache = default_cache_dir();
    let mut disks = Vec::new();
    let (cfg, base_dir, base_fix) = match (cluster, template) {
        (Some(dir), Some(cfg)) => {
            disks.push(("cluster".to_owned(), dir.to_owned()));
            (
                cfg.clone(),
                cfg.base_dir.clone(),
                format!(
                    "{} is incomplete: make the cluster again with admin new -cluster DIR",
                    dir.display()
                ),
            )
        }
        _ => {
            let recipe = Recipe::from_json(BASE_RECIPE_JSON, "cluster-template/base.json")?;
            (
                template_config(Path::new("/"))?,
                cache.join(recipe.entry_name()),
                "run admin new -cluster DIR, which builds it".to_owned(),
            )
        }
    };
    disks.push(("base cache".to_owned(), cache));
    let index_url = if cfg.pip_index_url.is_empty() {
        DEFAULT_INDEX.to_owned()
    } else {
        cfg.pip_index_url.clone()
    };
    let port = port.unwrap_or(cfg.worker_port);
    let host = match cfg.worker_host.as_str() {
        "" => "0.0.0.0".to_owned(),
        h => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
    };
    Ok(Target {
        base_dir,
        disks,
        index_url: Some(index_url),
        port: (port != 0).then_some((host, port)),
        import_cache: cfg.import_cache,
        user_namespaces: cfg.user_namespaces,
        cluster_base: cluster.is_some(),
        base_fix,
    })
}
