//! A small W3C WebDriver client for the console tests: Debian's `chromedriver` started on a free
//! port, driving Debian's `chromium` headless. Only what the tests use: navigate, find, click,
//! type (including file paths into file inputs), run a script, read the browser log, screenshot.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver and one browser session on it; both end on drop.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

/// Fails, saying how to get them, unless `chromium` and `chromedriver` are installed.
pub fn require_browser() -> Result<()> {
    for bin in ["chromium", "chromedriver"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            bail!("{bin} is missing: apt-get install -y chromium chromium-driver (.ci/run installs them)");
        }
    }
    Ok(())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Result<Self> {
        require_browser()?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let root = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{root}/status")).send().await {
                if r.json::<Value>()
                    .await
                    .ok()
                    .is_some_and(|v| v["value"]["ready"] == true)
                {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("chromedriver did not answer in 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--window-size={width},{height}")
            ] },
            "goog:loggingPrefs": { "browser": "ALL" }
        } } });
        let v: Value = http
            .post(format!("{root}/session"))
            .json(&caps)
            .send()
            .await?
            .json()
            .await?;
        let Some(id) = v["value"]["sessionId"].as_str() else {
            bail!("no browser session: {v}");
        };
        Ok(Browser {
            base: format!("{root}/session/{id}"),
            driver,
            http,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("webdriver {path}: {status} {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.send(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(|_| ())
    }

    /// The first element matching `css` now, if any.
    pub async fn find_now(&self, css: &str) -> Result<Option<Element>> {
        let v = self
            .send(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        Ok(v.as_array()
            .and_then(|a| a.first())
            .and_then(|e| e[ELEMENT].as_str())
            .map(|id| Element(id.to_string())))
    }

    /// Waits up to 30 s for an element matching `css`.
    pub async fn find(&self, css: &str) -> Result<Element> {
        let started = Instant::now();
        loop {
            if let Some(e) = self.find_now(css).await? {
                return Ok(e);
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("no element {css:?} after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `within` for `script` (a function body returning a value) to return true.
    pub async fn wait_for(&self, what: &str, script: &str, within: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if self.run(script, json!([])).await? == Value::Bool(true) {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!("{what}: not so after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element matching `css`, waiting up to 30 s for it to be shown and enabled (a
    /// page that is still rendering, on a busy machine, may have it hidden a while longer).
    pub async fn click(&self, css: &str) -> Result<()> {
        let started = Instant::now();
        let ready = "const e = document.querySelector(arguments[0]); return !!e && !e.hidden && !e.disabled && e.getClientRects().length > 0";
        loop {
            let shown = self.run(ready, json!([css])).await? == Value::Bool(true);
            if shown {
                if let Some(e) = self.find_now(css).await? {
                    match self
                        .send(
                            reqwest::Method::POST,
                            &format!("/element/{}/click", e.0),
                            Some(json!({})),
                        )
                        .await
                    {
                        Ok(_) => return Ok(()),
                        // Replaced or covered between the check and the click: look again.
                        Err(err)
                            if ["not interactable", "stale element", "click intercepted"]
                                .iter()
                                .any(|w| err.to_string().contains(w))
                                && started.elapsed() < Duration::from_secs(30) => {}
                        Err(err) => return Err(err).with_context(|| format!("clicking {css}")),
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{css:?} was not shown and enabled within 30 s, so it could not be clicked");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the element matching `css` (for a file input: newline-separated paths).
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let e = self.find(css).await?;
        self.send(
            reqwest::Method::POST,
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .await
        .with_context(|| format!("typing into {css}"))
        .map(|_| ())
    }

    /// Clears the input matching `css`.
    pub async fn clear(&self, css: &str) -> Result<()> {
        let e = self.find(css).await?;
        self.send(
            reqwest::Method::POST,
            &format!("/element/{}/clear", e.0),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn run(&self, script: &str, args: Value) -> Result<Value> {
        self.send(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs an async `script` whose last argument is the callback to call with the result.
    pub async fn run_async(&self, script: &str, args: Value) -> Result<Value> {
        self.send(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The text of the element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String> {
        let e = self.find(css).await?;
        Ok(self
            .send(
                reqwest::Method::GET,
                &format!("/element/{}/text", e.0),
                None,
            )
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.send(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await
        .map(|_| ())
    }

    /// Writes a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.send(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot data")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }

    /// The browser's console log since the last call (Chromium's log endpoint).
    pub async fn log(&self) -> Result<Vec<Value>> {
        let v = self
            .send(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": "browser" })),
            )
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) -> Result<()> {
        let _ = self.send(reqwest::Method::DELETE, "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test still ends its browser: chromedriver takes its Chromium with it.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
