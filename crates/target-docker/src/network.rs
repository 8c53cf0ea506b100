//! The environment's bridge network, `launchway-<env>`: created on first use, once, by
//! however many processes deploy into a new environment at the same moment.
//!
//! Docker does not keep network names unique: two processes that both find no network
//! and create one make two, after which anything naming the network is ambiguous and
//! apps of the same environment can land on different networks (and stop finding each
//! other by name); Docker then refuses to start any container naming it. So everyone
//! keeps the *oldest* network of the name — the one a process that saw only its own
//! created first, so all agree — and merges the others into it: their containers are
//! disconnected and connected to it (with the app's name as alias, as at creation),
//! and the empty duplicate removed. Duplicates left by an
//! older launchway are repaired the same way, never fatal.

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use launchway_target::TargetError;

use crate::DockerTarget;
use crate::replicas::{self, api_error, label};

/// Whether Docker refused because a network name matched two networks.
fn names_two_networks(error: &TargetError) -> bool {
    matches!(error, TargetError::Api { source, .. } if source.to_string().contains("is ambiguous"))
}

/// `launchway-<env>`.
pub(crate) fn name(env: &str) -> String {
    format!("launchway-{env}")
}

/// A network of the environment's name, as listed.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) id: String,
    /// When Docker created it, as Docker says (RFC 3339, nanoseconds): what orders
    /// duplicates.
    created: Option<bollard::models::BollardDate>,
}

impl DockerTarget {
    /// The id of the environment's network, created on first use; duplicates of it
    /// (see the module's comment) are merged into the oldest, which is answered.
    pub(crate) async fn ensure_network(&self, env: &str) -> Result<String, TargetError> {
        let name = name(env);
        // Within a process, one creation at a time; across processes, the merge below.
        let _creating = self.network_lock.lock().await;
        if self.networks_named(&name).await?.is_empty() {
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".to_owned()),
                labels: Some(HashMap::from([
                    (label::MANAGED.to_owned(), "true".to_owned()),
                    (label::ENV.to_owned(), env.to_owned()),
                ])),
                ..NetworkCreateRequest::default()
            };
            match self.docker.create_network(request).await {
                Ok(_) | Err(DockerError::DockerResponseServerError { status_code: 409, .. }) => {}
                Err(error) => return Err(api_error(&format!("create network {name}"), error)),
            }
        }
        let mut found = self.networks_named(&name).await?;
        found.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        let Some(keep) = found.first().map(|oldest| oldest.id.clone()) else {
            return Err(TargetError::Invalid(format!("network {name} disappeared as it was created")));
        };
        for duplicate in &found[1..] {
            if let Err(error) = self.merge_network(&duplicate.id, &keep).await {
                // Not fatal: what runs keeps running, and the next look tries again.
                tracing::warn!(network = %name, duplicate = %duplicate.id, error = %error, "could not merge a duplicate network");
            }
        }
        Ok(keep)
    }

    /// Creates and starts a container on `env`'s network. Docker refuses either while a
    /// second network of the name exists — one another process is creating this moment,
    /// before it merges it away, or one a process left when it died — so the duplicate
    /// is merged here and the container tried again.
    pub(crate) async fn create_and_start_on_network(
        &self,
        env: &str,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, TargetError> {
        for _ in 0..3 {
            match replicas::create_and_start(&self.docker, name, body.clone()).await {
                Err(error) if names_two_networks(&error) => {
                    tracing::debug!(container = name, %error, "a duplicate network appeared; merging it");
                    self.ensure_network(env).await?;
                }
                done => return done,
            }
        }
        replicas::create_and_start(&self.docker, name, body).await
    }

    /// Moves the containers on `duplicate` to `keep`, then removes `duplicate`.
    async fn merge_network(&self, duplicate: &str, keep: &str) -> Result<(), TargetError> {
        let inspected = match self.docker.inspect_network(duplicate, None).await {
            Ok(inspected) => inspected,
            // Merged by another process meanwhile.
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => return Ok(()),
            Err(error) => return Err(api_error("inspect a duplicate network", error)),
        };
        for container in inspected.containers.unwrap_or_default().into_keys() {
            let labels = match self.docker.inspect_container(&container, None).await {
                Ok(inspected) => inspected.config.and_then(|config| config.labels).unwrap_or_default(),
                Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => continue,
                Err(error) => return Err(api_error("inspect a container on a duplicate network", error)),
            };
            // Off the duplicate first: a container's networks are keyed by name, so it
            // cannot be on two of the same name (a moment without network, once).
            let disconnect = NetworkDisconnectRequest { container: container.clone(), force: Some(true) };
            match self.docker.disconnect_network(duplicate, disconnect).await {
                Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(error) => return Err(api_error("disconnect a container from a duplicate network", error)),
            }
            let endpoint =
                EndpointSettings { aliases: labels.get(label::APP).map(|app| vec![app.clone()]), ..Default::default() };
            let connect = NetworkConnectRequest { container, endpoint_config: Some(endpoint) };
            match self.docker.connect_network(keep, connect).await {
                // Already on it (another process merged it first).
                Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 403 | 409, .. }) => {}
                Err(error) => return Err(api_error("connect a container to the environment's network", error)),
            }
        }
        match self.docker.remove_network(duplicate).await {
            Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(error) => Err(api_error("remove a duplicate network", error)),
        }
    }

    /// The networks called exactly `name` (Docker's name filter matches parts).
    pub(crate) async fn networks_named(&self, name: &str) -> Result<Vec<Found>, TargetError> {
        let filters = HashMap::from([("name", vec![name.to_owned()])]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|error| api_error(&format!("list networks named {name}"), error))?;
        Ok(networks
            .into_iter()
            .filter(|network| network.name.as_deref() == Some(name))
            .filter_map(|network| Some(Found { id: network.id?, created: network.created }))
            .collect())
    }
}
