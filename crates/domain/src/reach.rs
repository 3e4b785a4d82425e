//! How the daemon reaches each bucket's S3 server: the origin the runtime gave for it, and one
//! pooled S3 client per bucket.

use std::collections::HashMap;

use kalpana_s3_ops::BucketClient;

/// The origin by which the daemon reaches each running bucket server, learnt when the daemon
/// starts it and whenever reconcile looks at it, forgotten when it goes down.
#[derive(Default)]
pub struct Addresses {
    origins: std::sync::Mutex<HashMap<String, String>>,
    nodes: std::sync::Mutex<HashMap<String, NodeOf>>,
}

/// The cluster node a bucket's server runs on or is pinned to.
#[derive(Clone)]
struct NodeOf {
    /// Its host name, as views show it.
    name: Option<String>,
    /// Its id: what decisions compare (host names need not be unique).
    id: Option<String>,
}

impl Addresses {
    fn node_of(&self, id: &str) -> Option<NodeOf> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The host name of the cluster node bucket `id`'s server runs on or is pinned to, if
    /// known (none on one engine).
    pub fn node(&self, id: &str) -> Option<String> {
        self.node_of(id).and_then(|n| n.name)
    }

    /// The id of that node.
    pub fn node_id(&self, id: &str) -> Option<String> {
        self.node_of(id).and_then(|n| n.id)
    }

    /// Records the node (host name and id) of bucket `id`'s server; forgets it when both are
    /// none.
    pub fn set_node(&self, id: &str, name: Option<String>, node_id: Option<String>) {
        let mut map = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if name.is_none() && node_id.is_none() {
            map.remove(id);
        } else {
            map.insert(id.to_string(), NodeOf { name, id: node_id });
        }
    }

    /// The origin of bucket `id`'s server, if known.
    pub fn get(&self, id: &str) -> Option<String> {
        self.origins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Records (or, with `None`, forgets) the origin of bucket `id`'s server.
    pub fn set(&self, id: &str, origin: Option<String>) {
        let mut map = self.origins.lock().unwrap_or_else(|p| p.into_inner());
        match origin {
            Some(origin) => map.insert(id.to_string(), origin),
            None => map.remove(id),
        };
    }
}

/// S3 clients by bucket id, each with the origin and access key it was made for.
#[derive(Default)]
pub struct S3Clients(std::sync::Mutex<HashMap<String, (String, String, BucketClient)>>);

impl S3Clients {
    /// The cached client of `bucket` for `origin` and `access_key`, made by `make` when missing
    /// or made for something else.
    pub fn get_or_make(
        &self,
        bucket: &str,
        origin: &str,
        access_key: &str,
        make: impl FnOnce() -> crate::error::Result<BucketClient>,
    ) -> crate::error::Result<BucketClient> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((o, k, c)) = map.get(bucket) {
            if o == origin && k == access_key {
                return Ok(c.clone());
            }
        }
        let client = make()?;
        map.insert(
            bucket.to_string(),
            (origin.to_string(), access_key.to_string(), client.clone()),
        );
        Ok(client)
    }

    /// Forgets the client of a deleted bucket.
    pub fn forget(&self, bucket: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(bucket);
    }
}
