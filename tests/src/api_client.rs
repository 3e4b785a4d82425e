//! The REST API of a test daemon, as a client bound to one token sees it.

use anyhow::Result;
use serde_json::Value;

use crate::object_path;
use crate::secrets::note_secrets;

/// A REST client bound to one token.
#[derive(Clone)]
pub struct Api {
    pub(crate) base: String,
    pub(crate) token: Option<String>,
    pub(crate) http: reqwest::Client,
}

impl Api {
    /// Sends a request with an optional JSON body; returns status and JSON (or Null).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        note_secrets(&json);
        Ok((status, json))
    }

    /// Creates a bucket and waits until it left CREATING; returns status and body.
    pub async fn create_bucket(&self, body: Value) -> Result<(u16, Value)> {
        self.send("POST", "/api/buckets?wait=true", Some(body))
            .await
    }

    /// Deletes a bucket (`?deleteVolume=true` when asked); returns the status.
    pub async fn delete_bucket(&self, id: &str, delete_volume: bool) -> Result<u16> {
        let query = if delete_volume {
            "?deleteVolume=true"
        } else {
            ""
        };
        let (status, _) = self
            .send("DELETE", &format!("/api/buckets/{id}{query}"), None)
            .await?;
        Ok(status)
    }

    /// A request with this client's token, for routes that are not JSON in and out.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `PUT /api/buckets/{id}/objects/{key}` with `body`; returns status and JSON.
    pub async fn put_object(
        &self,
        id: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .request(reqwest::Method::PUT, &object_path(id, key))
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// The raw HTTP client and base URL, for streaming routes.
    pub fn raw(&self) -> (&reqwest::Client, &str, Option<&str>) {
        (&self.http, &self.base, self.token.as_deref())
    }
}
