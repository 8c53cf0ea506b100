//! Connects environments to their targets, one connection per distinct target.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use launchway_engine::TargetProvider;
use launchway_manifest::{EcsTarget, TargetSpec};
use launchway_target::{Target, TargetError};
use launchway_target_docker::DockerTarget;
use launchway_target_ecs::Ecs;
use tokio::sync::Mutex;

#[derive(Default)]
pub struct Targets {
    docker: Mutex<HashMap<Option<String>, Arc<DockerTarget>>>,
    /// One client set per distinct ECS environment configuration (region, role…).
    ecs: Mutex<Vec<(EcsTarget, Arc<Ecs>)>>,
}

impl Targets {
    pub async fn docker(&self, host: Option<&str>) -> Result<Arc<DockerTarget>, TargetError> {
        let mut connected = self.docker.lock().await;
        let key = host.map(str::to_owned);
        if let Some(target) = connected.get(&key) {
            return Ok(Arc::clone(target));
        }
        let target = Arc::new(DockerTarget::connect(host).await?);
        connected.insert(key, Arc::clone(&target));
        Ok(target)
    }

    pub async fn ecs(&self, spec: &EcsTarget) -> Result<Arc<Ecs>, TargetError> {
        let mut connected = self.ecs.lock().await;
        if let Some((_, target)) = connected.iter().find(|(known, _)| known == spec) {
            return Ok(Arc::clone(target));
        }
        let target = Arc::new(Ecs::connect(spec).await?);
        connected.push((spec.clone(), Arc::clone(&target)));
        Ok(target)
    }
}

#[async_trait]
impl TargetProvider for Targets {
    async fn target(&self, spec: &TargetSpec) -> Result<Arc<dyn Target>, TargetError> {
        match spec {
            TargetSpec::Docker { host } => Ok(self.docker(host.as_deref()).await?),
            TargetSpec::Ecs(ecs) => Ok(self.ecs(ecs).await?),
        }
    }
}
