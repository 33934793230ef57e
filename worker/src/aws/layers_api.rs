//! The layer operations of the management API: PublishLayerVersion, ListLayers,
//! ListLayerVersions, GetLayerVersion and GetLayerVersionByArn.

use http::StatusCode;

use super::errors::AwsError;
use super::lambda_api::{find, host, page, paging, LambdaApi, Reply};
use super::members;
use super::shapes::{self, LayerVersion, LayerVersionsListItem};
use super::AwsRequest;
use crate::functions::LayerVersionInfo;
use crate::name::LambdaName;

/// Default and largest `MaxItems` of ListLayers and ListLayerVersions (AWS's 50).
const LAYERS_PAGE: (usize, usize) = (50, 50);
/// Most `CompatibleRuntimes` of a layer version (AWS's 15).
const MAX_RUNTIMES: usize = 15;

/// Whether a version matches the `CompatibleRuntime` and `CompatibleArchitecture` filters.
fn matches(v: &LayerVersionInfo, query: &[(String, String)]) -> bool {
    let runtime_ok = find(query, "CompatibleRuntime")
        .is_none_or(|r| v.compatible_runtimes.iter().any(|c| c == r));
    let arch_ok = find(query, "CompatibleArchitecture").is_none_or(|a| a == "x86_64");
    runtime_ok && arch_ok
}

impl LambdaApi {
    fn versions(&self, name: &LambdaName) -> Result<Vec<LayerVersionInfo>, AwsError> {
        self.store()
            .layer_versions(name)
            .map_err(|e| AwsError::from_store(e, &self.arns().layer(name)))
    }

    pub(super) fn publish_layer_version(
        &self,
        raw: &str,
        req: &AwsRequest,
    ) -> Result<Reply, AwsError> {
        let name = self.arns().layer_name(raw)?;
        let body = members::parse_body(&req.body)?;
        let mut archive = None;
        let mut description = None;
        let mut runtimes = Vec::new();
        for (member, v) in &body {
            match member.as_str() {
                "Content" => archive = Some(members::code("Content", v)?),
                "Description" => {
                    let d = members::string(member, v)?;
                    if d.chars().count() > 256 {
                        return Err(AwsError::invalid(
                            "Description must be at most 256 characters",
                        ));
                    }
                    description = Some(d.to_owned());
                }
                "CompatibleRuntimes" => {
                    let items = members::list(member, v)?;
                    if items.len() > MAX_RUNTIMES {
                        return Err(AwsError::invalid(format!(
                            "CompatibleRuntimes: at most {MAX_RUNTIMES}, not {}",
                            items.len()
                        )));
                    }
                    for item in items {
                        let r = members::string(member, item)?;
                        if !r.starts_with("python3.") || r.len() > 32 {
                            return Err(AwsError::invalid(format!(
                                "CompatibleRuntimes: {r:?} is not supported: this platform \
                                 runs python3.x functions"
                            )));
                        }
                        runtimes.push(r.to_owned());
                    }
                }
                "CompatibleArchitectures" => {
                    let items = members::list(member, v)?;
                    if items.iter().any(|a| a.as_str() != Some("x86_64")) {
                        return Err(AwsError::invalid(
                            "CompatibleArchitectures: this platform runs x86_64 only",
                        ));
                    }
                }
                _ => {
                    return Err(AwsError::invalid(format!(
                        "{member} is not supported by this platform (supported: Content.ZipFile, \
                         Description, CompatibleRuntimes, CompatibleArchitectures)"
                    )))
                }
            }
        }
        let archive = archive.ok_or_else(|| AwsError::invalid("Content is required"))?;
        let v = self
            .store()
            .publish_layer(&name, &archive, description.as_deref(), &runtimes)
            .map_err(|e| AwsError::from_store(e, &self.arns().layer(&name)))?;
        Reply::json(
            StatusCode::CREATED,
            &LayerVersion::new(&v, self.arns(), host(req)),
        )
    }

    pub(super) fn list_layers(&self, query: &[(String, String)]) -> Result<Reply, AwsError> {
        let (marker, max) = paging(query, LAYERS_PAGE)?;
        let latest = self
            .store()
            .list_layers()
            .map_err(|e| AwsError::from_store(e, "the layer list"))?;
        // With a filter, the latest version that matches it (AWS's LatestMatchingVersion).
        let filtered = query
            .iter()
            .any(|(k, _)| k == "CompatibleRuntime" || k == "CompatibleArchitecture");
        let mut items = Vec::with_capacity(latest.len());
        for v in latest {
            let best = if !filtered || matches(&v, query) {
                Some(v)
            } else {
                self.versions(&v.name)?
                    .into_iter()
                    .rev()
                    .find(|v| matches(v, query))
            };
            items.extend(best);
        }
        let (items, next_marker) = page(items, |v| v.name.to_string(), marker, max)?;
        let layers = items
            .iter()
            .map(|v| shapes::LayersListItem {
                layer_name: v.name.to_string(),
                layer_arn: self.arns().layer(&v.name),
                latest_matching_version: LayerVersionsListItem::new(v, self.arns()),
            })
            .collect();
        Reply::json(
            StatusCode::OK,
            &shapes::ListLayersResponse {
                layers,
                next_marker,
            },
        )
    }

    pub(super) fn list_layer_versions(
        &self,
        raw: &str,
        query: &[(String, String)],
    ) -> Result<Reply, AwsError> {
        let name = self.arns().layer_name(raw)?;
        let (marker, max) = paging(query, LAYERS_PAGE)?;
        // Newest first, as AWS lists them; the marker key sorts so (zero-padded, inverted).
        let mut versions: Vec<LayerVersionInfo> = self
            .versions(&name)?
            .into_iter()
            .filter(|v| matches(v, query))
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        let key = |v: &LayerVersionInfo| format!("{:020}", u64::MAX - v.version);
        let (versions, next_marker) = page(versions, key, marker, max)?;
        Reply::json(
            StatusCode::OK,
            &shapes::ListLayerVersionsResponse {
                layer_versions: versions
                    .iter()
                    .map(|v| LayerVersionsListItem::new(v, self.arns()))
                    .collect(),
                next_marker,
            },
        )
    }

    fn layer_version(&self, name: &LambdaName, version: u64) -> Result<LayerVersionInfo, AwsError> {
        let not_found = || {
            AwsError::not_found(format!(
                "The resource you requested does not exist: layer version {} does not exist",
                self.arns().layer_version(name, version)
            ))
        };
        match self.store().layer_versions(name) {
            Ok(vs) => vs
                .into_iter()
                .find(|v| v.version == version)
                .ok_or_else(not_found),
            Err(crate::functions::StoreError::LayerNotFound { .. }) => Err(not_found()),
            Err(e) => Err(AwsError::from_store(e, &self.arns().layer(name))),
        }
    }

    pub(super) fn get_layer_version(
        &self,
        req: &AwsRequest,
        raw_name: &str,
        raw_version: &str,
    ) -> Result<Reply, AwsError> {
        let name = self.arns().layer_name(raw_name)?;
        let version = match raw_version.parse::<u64>() {
            Ok(v) if v >= 1 => v,
            _ => {
                return Err(AwsError::invalid(format!(
                    "VersionNumber must be a number from 1, not {raw_version:?}"
                )))
            }
        };
        let v = self.layer_version(&name, version)?;
        Reply::json(
            StatusCode::OK,
            &LayerVersion::new(&v, self.arns(), host(req)),
        )
    }

    pub(super) fn get_layer_version_by_arn(
        &self,
        req: &AwsRequest,
        query: &[(String, String)],
    ) -> Result<Reply, AwsError> {
        let raw = find(query, "Arn").ok_or_else(|| AwsError::invalid("Arn is required"))?;
        let layer = self.arns().layer_ref(raw)?;
        let Some(version) = layer.version.filter(|_| raw.starts_with("arn:")) else {
            return Err(AwsError::invalid(format!(
                "Arn {raw:?} is not a layer version ARN \
                 (arn:aws:lambda:<region>:<account>:layer:<name>:<version>)"
            )));
        };
        let v = self.layer_version(&layer.name, version)?;
        Reply::json(
            StatusCode::OK,
            &LayerVersion::new(&v, self.arns(), host(req)),
        )
    }
}
