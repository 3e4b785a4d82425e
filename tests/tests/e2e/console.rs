//! The web console in a real Chromium over WebDriver, against the real daemon and real buckets:
//! sign-in (a wrong token is refused in words), a bucket made in the dialog turning RUNNING
//! without a reload, files and a folder uploaded by the picker and by a drop, folders and the
//! breadcrumb, an image preview, a download and a share link fetched without a token, rename,
//! delete, stop and start from the list; the security headers; no error in the browser log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kalpana_e2e::webdriver::Browser;
use kalpana_e2e::{object_path, Daemon, DaemonOptions};
use serde_json::{json, Value};

const SVG: &[u8] = br##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><rect width="40" height="30" fill="#3ddc84"/></svg>"##;

/// Where screenshots go: `KALPANA_SCREENSHOTS` or `target/console-screenshots`.
fn screenshot_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::var("KALPANA_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
        });
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The keys the API lists in bucket `id` (all of them, no delimiter).
async fn keys(api: &kalpana_e2e::Api, id: &str) -> anyhow::Result<Vec<String>> {
    let (_, list) = api
        .send(
            "GET",
            &format!("/api/buckets/{id}/objects?limit=1000"),
            None,
        )
        .await?;
    Ok(list["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|o| o["key"].as_str().map(String::from))
        .collect())
}

/// The browser log's errors. Chromium also logs `ERR_NETWORK_CHANGED` when Docker adds or
/// removes a host interface (other tests make containers meanwhile); the console repeats what
/// that cut, so those are the host's doing, not the page's.
fn page_errors(log: &[Value]) -> Vec<&Value> {
    log.iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| {
            !e["message"]
                .as_str()
                .is_some_and(|m| m.contains("ERR_NETWORK_CHANGED"))
        })
        .collect()
}

fn row(key: &str) -> String {
    format!("tr[data-key=\"{key}\"]")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_manages_buckets_and_files_in_a_real_browser() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        // The list of 100 buckets is mostly external ones on a remote engine at 127.0.0.2.
        env: vec![
            ("KALPANA_EXTERNAL_ALLOW".into(), "127.0.0.2/32".into()),
            ("KALPANA_FLEET_SAMPLE_SECS".into(), "2".into()),
        ],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let token = alice.raw().2.expect("token").to_string();
    let http = reqwest::Client::new();

    // The files and their headers.
    let index = http.get(format!("{}/ui/", d.url)).send().await?;
    assert_eq!(index.status(), 200);
    let h = index.headers().clone();
    assert_eq!(
        h["content-security-policy"].to_str()?.split(';').next(),
        Some("default-src 'self'")
    );
    assert_eq!(h["x-frame-options"], "DENY");
    let etag = h["etag"].to_str()?.to_string();
    let again = http
        .get(format!("{}/ui/", d.url))
        .header("if-none-match", &etag)
        .send()
        .await?;
    assert_eq!(again.status(), 304);
    let html = index.text().await?;
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "inline script or style"
    );
    let missing = http.get(format!("{}/ui/nope.js", d.url)).send().await?;
    assert_eq!(missing.status(), 404);

    let dir = tempfile::tempdir()?;
    let files = [
        ("notes.txt", b"first line\nsecond line\n".to_vec()),
        ("pixel.svg", SVG.to_vec()),
        (
            "data.bin",
            (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        // Over the console's 8 MiB line: a presigned PUT straight to the engine.
        (
            "big.bin",
            (0..9_437_184u32).map(|i| (i % 253) as u8).collect(),
        ),
    ];
    for (name, body) in &files {
        std::fs::write(dir.path().join(name), body)?;
    }
    let folder = dir.path().join("docs");
    std::fs::create_dir_all(folder.join("sub"))?;
    std::fs::write(folder.join("readme.md"), b"# docs\n")?;
    std::fs::write(folder.join("sub/deep.txt"), b"deep")?;
    let shots = screenshot_dir()?;

    let b = Browser::start(1280, 800).await?;
    let result = async {
        b.goto(&format!("{}/ui/", d.url)).await?;
        // A wrong token is refused in words.
        b.type_into("#token", "not-a-token").await?;
        b.click("#signin").await?;
        b.wait_for(
            "the refusal",
            "return document.querySelector('#signin-error').textContent.includes('not accepted')",
            Duration::from_secs(10),
        )
        .await?;
        // Chromium logs the refused call itself; everything after it must be clean.
        let refused = b.log().await?;
        assert!(
            refused.iter().all(|e| e["level"] != "SEVERE"
                || e["message"].as_str().is_some_and(|m| m.contains("/api/me") && m.contains("401"))),
            "{refused:?}"
        );
        b.clear("#token").await?;
        b.type_into("#token", &token).await?;
        b.click("#signin").await?;
        b.find("#new-bucket").await?;

        // A bucket made in the dialog turns RUNNING in the list without a reload.
        b.click("#new-bucket").await?;
        b.type_into("#new-name", "Bad_Name").await?;
        b.wait_for(
            "the name rule shown while typing",
            "return document.querySelector('#new-name-problem').textContent.includes('lowercase')",
            Duration::from_secs(5),
        )
        .await?;
        b.clear("#new-name").await?;
        b.type_into("#new-name", "photos").await?;
        let made = Instant::now();
        b.click("#create").await?;
        // The secret is shown once; then the dialog is closed.
        b.wait_for(
            "the secret dialog",
            "return [...document.querySelectorAll('dialog code')].length >= 2",
            Duration::from_secs(20),
        )
        .await?;
        b.run(
            "[...document.querySelectorAll('dialog button')].find(x => x.textContent === 'Done').click(); return true",
            json!([]),
        )
        .await?;
        b.wait_for(
            "photos RUNNING in the list",
            "const r = document.querySelector('tr[data-name=\"photos\"] .badge'); return !!r && r.textContent === 'RUNNING'",
            Duration::from_secs(90),
        )
        .await?;
        println!("console: created bucket shown RUNNING {} ms after Create", made.elapsed().as_millis());
        b.screenshot(&shots.join("buckets.png")).await?;
        let (_, list) = alice.send("GET", "/api/buckets", None).await?;
        let id = list["buckets"][0]["id"].as_str().expect("id").to_string();

        // Files: three by the picker, a folder by the folder picker, one by a drop.
        b.click("tr[data-name=\"photos\"] a").await?;
        b.find("#dropzone").await?;
        let paths: Vec<String> = files
            .iter()
            .map(|(n, _)| dir.path().join(n).display().to_string())
            .collect();
        b.type_into("#upload-files", &paths.join("\n")).await?;
        b.type_into("#upload-folder", &folder.display().to_string())
            .await?;
        b.run(
            "const dt = new DataTransfer();
             dt.items.add(new File(['dropped from the desktop'], 'dropped.txt', { type: 'text/plain' }));
             document.querySelector('#dropzone').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
             return true",
            json!([]),
        )
        .await?;
        let want = [
            "big.bin",
            "data.bin",
            "docs/readme.md",
            "docs/sub/deep.txt",
            "dropped.txt",
            "notes.txt",
            "pixel.svg",
        ];
        let started = Instant::now();
        loop {
            let mut got = keys(&alice, &id).await?;
            got.sort();
            if got == want {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let shown = b.text("#uploads").await.unwrap_or_default();
                let log = b.log().await.unwrap_or_default();
                let full = d.log();
                let daemon: Vec<&str> = full.lines().filter(|l| l.contains("presign") || l.contains("big.bin")).map(|l| &l[..l.len().min(400)]).collect::<Vec<_>>();
                anyhow::bail!("uploaded: {got:?}; the console says: {shown}; browser log: {log:?}; daemon: {daemon:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (name, body) in &files {
            b.wait_for(
                name,
                &format!(
                    "const r = document.querySelector('{}'); return !!r && r.dataset.size === '{}'",
                    row(name),
                    body.len()
                ),
                Duration::from_secs(20),
            )
            .await?;
        }
        b.find(&row("dropped.txt")).await?;
        b.screenshot(&shots.join("files.png")).await?;
        // The large one did not pass through the daemon.
        assert!(
            !d.log().lines().any(|l| l.contains("object stored") && l.contains("big.bin")),
            "big.bin went through the daemon"
        );

        // Into the folder and back by the breadcrumb.
        b.click("tr.folder[data-prefix=\"docs/\"] a").await?;
        b.find(&row("docs/readme.md")).await?;
        b.find("tr.folder[data-prefix=\"docs/sub/\"]").await?;
        assert!(b.text("#breadcrumb").await?.contains("docs"));
        b.click("#breadcrumb a").await?;
        b.find(&row("notes.txt")).await?;

        // Preview of the image: drawn from the bytes fetched with the token.
        b.click(&format!("{} [data-action=preview]", row("pixel.svg"))).await?;
        b.wait_for(
            "the image preview",
            "const i = document.querySelector('#preview img'); return !!i && i.complete && i.naturalWidth === 40",
            Duration::from_secs(10),
        )
        .await?;
        b.screenshot(&shots.join("preview.png")).await?;
        b.run(
            "[...document.querySelectorAll('dialog button')].find(x => x.textContent === 'Close').click(); return true",
            json!([]),
        )
        .await?;

        // An HTML page stored as text/html under a `.pdf` name is not rendered: previews take
        // the type from the name and check a PDF's magic; a real PDF goes to a sandboxed frame.
        let page = b"<html><body><h1 id=\"pwned\">owned</h1><script>document.title='pwned'</script></body></html>".to_vec();
        let (status, _) = alice
            .put_object(&id, "report.pdf", page, Some("text/html"))
            .await?;
        assert_eq!(status, 201);
        let pdf = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n".to_vec();
        let (status, _) = alice
            .put_object(&id, "real.pdf", pdf, Some("application/pdf"))
            .await?;
        assert_eq!(status, 201);
        b.goto(&format!("{}/ui/#/", d.url)).await?;
        b.goto(&format!("{}/ui/#/b/{id}/files", d.url)).await?;
        b.click(&format!("{} [data-action=preview]", row("report.pdf"))).await?;
        b.wait_for(
            "the refusal to preview an HTML page named .pdf",
            "const p = document.querySelector('#preview p.error'); return !!p && p.textContent.includes('not a PDF')",
            Duration::from_secs(10),
        )
        .await?;
        let rendered = b
            .run(
                "return !!document.querySelector('#preview iframe') || !!document.querySelector('#pwned') || document.title === 'pwned'",
                json!([]),
            )
            .await?;
        assert_eq!(rendered, Value::Bool(false), "the HTML page was rendered");
        b.run(
            "[...document.querySelectorAll('dialog button')].find(x => x.textContent === 'Close').click(); return true",
            json!([]),
        )
        .await?;
        b.click(&format!("{} [data-action=preview]", row("real.pdf"))).await?;
        b.wait_for(
            "the PDF preview in a sandboxed frame",
            "const f = document.querySelector('#preview iframe'); return !!f && f.getAttribute('sandbox') === ''",
            Duration::from_secs(10),
        )
        .await?;
        b.run(
            "[...document.querySelectorAll('dialog button')].find(x => x.textContent === 'Close').click(); return true",
            json!([]),
        )
        .await?;
        for key in ["report.pdf", "real.pdf"] {
            let (status, _) = alice
                .send("DELETE", &object_path(&id, key), None)
                .await?;
            assert_eq!(status, 204);
        }
        b.goto(&format!("{}/ui/#/", d.url)).await?;
        b.goto(&format!("{}/ui/#/b/{id}/files", d.url)).await?;
        b.find(&row("notes.txt")).await?;

        // Download: the link the console follows gives the file's bytes.
        b.click(&format!("{} [data-action=download]", row("data.bin"))).await?;
        b.wait_for(
            "the download link",
            "return !!document.querySelector('#download-link')",
            Duration::from_secs(10),
        )
        .await?;
        let href = b
            .run(
                "const a = document.querySelector('#download-link'); return a ? a.href : null",
                json!([]),
            )
            .await?;
        let href = href.as_str().expect("a download link").to_string();
        let got = http.get(&href).send().await?.bytes().await?;
        assert_eq!(got.as_ref(), files[2].1.as_slice(), "downloaded bytes");

        // A share link, fetched without any token.
        b.click(&format!("{} [data-action=share]", row("notes.txt"))).await?;
        b.click("#make-link").await?;
        b.find("#share-url").await?;
        let url = b
            .run("return document.querySelector('#share-url').value", json!([]))
            .await?;
        let shared = http.get(url.as_str().expect("url")).send().await?;
        assert_eq!(shared.status(), 200);
        assert_eq!(shared.bytes().await?.as_ref(), files[0].1.as_slice());
        b.run(
            "[...document.querySelectorAll('dialog button')].find(x => x.textContent === 'Close').click(); return true",
            json!([]),
        )
        .await?;

        // Rename.
        b.click(&format!("{} [data-action=rename]", row("notes.txt"))).await?;
        b.clear("#rename-to").await?;
        b.type_into("#rename-to", "renamed.txt").await?;
        b.click("#rename-save").await?;
        b.find(&row("renamed.txt")).await?;
        anyhow::ensure!(b.find_now(&row("notes.txt")).await?.is_none(), "the old name is still listed");

        // Delete two at once.
        for key in ["data.bin", "dropped.txt"] {
            b.click(&format!("{} input[type=checkbox]", row(key))).await?;
        }
        b.click("#delete-selected").await?;
        b.click("#confirm-delete-files").await?;
        b.wait_for(
            "the deleted rows gone",
            "return !document.querySelector('tr[data-key=\"data.bin\"]') && !document.querySelector('tr[data-key=\"dropped.txt\"]') && !!document.querySelector('tr[data-key=\"renamed.txt\"]')",
            Duration::from_secs(10),
        )
        .await?;
        let mut left = keys(&alice, &id).await?;
        left.sort();
        assert_eq!(
            left,
            ["big.bin", "docs/readme.md", "docs/sub/deep.txt", "pixel.svg", "renamed.txt"]
        );
        let (status, _) = alice.send("GET", &object_path(&id, "renamed.txt"), None).await?;
        assert_eq!(status, 200);

        // The bucket page's connection tab.
        b.goto(&format!("{}/ui/#/b/{id}/connection", d.url)).await?;
        b.wait_for(
            "the connection details",
            "return !!document.querySelector('#tab-connection pre')",
            Duration::from_secs(10),
        )
        .await?;
        b.screenshot(&shots.join("bucket.png")).await?;

        // The snapshots tab says how much a restore would lose: nothing to restore from, then
        // the age of the snapshot just taken (into a second bucket).
        let (status, vault) = alice.create_bucket(json!({ "name": "vault" })).await?;
        assert_eq!(status, 201, "{vault}");
        b.goto(&format!("{}/ui/#/b/{id}/snapshots", d.url)).await?;
        b.wait_for(
            "no snapshot yet",
            "const p = document.querySelector('#snap-protection'); return !!p && p.textContent.includes('no snapshot')",
            Duration::from_secs(10),
        )
        .await?;
        b.wait_for(
            "the target bucket offered",
            "return document.querySelectorAll('#snap-target option').length === 1",
            Duration::from_secs(10),
        )
        .await?;
        b.click("#tab-snapshots form button.primary").await?;
        b.wait_for(
            "the latest snapshot's age",
            "const p = document.querySelector('#snap-protection'); return !!p && / old \\(/.test(p.textContent)",
            Duration::from_secs(120),
        )
        .await?;
        let (_, v) = alice.send("GET", &format!("/api/buckets/{id}"), None).await?;
        assert!(v["latestSnapshotAt"].is_string(), "{v}");
        assert!(v["latestSnapshotAgeSecs"].as_u64().is_some_and(|s| s < 300), "{v}");

        // Stop and start from the list.
        b.goto(&format!("{}/ui/#/", d.url)).await?;
        b.click("tr[data-name=\"photos\"] [data-action=stop]").await?;
        b.wait_for(
            "photos STOPPED",
            "const r = document.querySelector('tr[data-name=\"photos\"] .badge'); return !!r && r.textContent === 'STOPPED'",
            Duration::from_secs(60),
        )
        .await?;
        b.click("tr[data-name=\"photos\"] [data-action=start]").await?;
        b.wait_for(
            "photos RUNNING again",
            "const r = document.querySelector('tr[data-name=\"photos\"] .badge'); return !!r && r.textContent === 'RUNNING'",
            Duration::from_secs(60),
        )
        .await?;

        // How long the browser takes to show a folder of 1,000 objects and a list of 100 buckets.
        let puts = futures::stream::iter(0..1000)
            .map(|i| {
                let (alice, id) = (alice.clone(), id.clone());
                async move {
                    alice
                        .put_object(&id, &format!("many/obj-{i:04}.txt"), vec![b'x'; 10], None)
                        .await
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let failed: Vec<String> = puts
            .iter()
            .filter(|r| !r.as_ref().is_ok_and(|(s, _)| *s == 201))
            .map(|r| format!("{r:?}"))
            .collect();
        assert!(failed.is_empty(), "{} uploads failed: {failed:?}", failed.len());
        b.goto(&format!("{}/ui/#/", d.url)).await?;
        b.find("#bucket-rows tr").await?;
        let started = Instant::now();
        b.goto(&format!("{}/ui/#/b/{id}/files/many", d.url)).await?;
        b.wait_for(
            "1,000 rows",
            "return document.querySelectorAll('#files tr[data-key]').length === 1000",
            Duration::from_secs(60),
        )
        .await?;
        let folder_ms = started.elapsed().as_millis();
        let remote = crate::external::Remote::start().await?;
        // With photos and vault: 100 buckets.
        for i in 0..98 {
            let (status, e) = alice
                .send(
                    "POST",
                    "/api/buckets",
                    Some(json!({ "name": format!("mirror-{i:02}"), "kind": "external", "external": {
                        "provider": "other",
                        "endpoint": remote.endpoint,
                        "bucketName": "remote-data",
                        "accessKeyId": remote.access_key,
                        "secretAccessKey": remote.secret,
                    } })),
                )
                .await?;
            assert_eq!(status, 201, "{e}");
        }
        let started = Instant::now();
        b.goto(&format!("{}/ui/#/", d.url)).await?;
        b.wait_for(
            "100 rows",
            "return document.querySelectorAll('#bucket-rows tr').length === 100",
            Duration::from_secs(60),
        )
        .await?;
        println!(
            "console: a folder of 1,000 objects shown in {folder_ms} ms; a list of 100 buckets in {} ms",
            started.elapsed().as_millis()
        );

        // Nothing went wrong in the page.
        let log = b.log().await?;
        let errors = page_errors(&log);
        assert!(errors.is_empty(), "browser log errors: {errors:?}");

        // Readable at a phone's width: nothing wider than the screen but the tables' own scroll.
        b.resize(390, 844).await?;
        b.goto(&format!("{}/ui/#/b/{id}/files", d.url)).await?;
        b.find(&row("renamed.txt")).await?;
        b.wait_for(
            "no sideways scrolling of the page at 390 px",
            "return document.documentElement.scrollWidth <= window.innerWidth",
            Duration::from_secs(5),
        )
        .await?;
        b.screenshot(&shots.join("phone.png")).await?;
        b.resize(1280, 800).await?;

        // The fleet is for administrators only.
        b.goto(&format!("{}/ui/#/fleet", d.url)).await?;
        b.wait_for(
            "the refusal of the fleet",
            "return document.querySelector('main').textContent.includes('Only administrators')",
            Duration::from_secs(10),
        )
        .await?;
        assert_eq!(
            b.run("return document.querySelector('#fleet-link').hidden", json!([])).await?,
            Value::Bool(true)
        );

        // Signing out forgets the token.
        b.click("#signout").await?;
        b.find("#token").await?;
        let kept = b
            .run("return sessionStorage.getItem('kalpana.token')", json!([]))
            .await?;
        assert_eq!(kept, Value::Null);

        // An administrator sees every running bucket's latest sample.
        let admin = d.admin();
        b.type_into("#token", admin.raw().2.expect("admin token")).await?;
        b.click("#signin").await?;
        b.click("#fleet-link").await?;
        b.wait_for(
            "photos sampled in the fleet",
            &format!("const r = document.querySelector('#fleet tr[data-id=\"{id}\"]'); return !!r && r.children[2].textContent.includes('/')"),
            Duration::from_secs(30),
        )
        .await?;
        b.screenshot(&shots.join("fleet.png")).await?;
        let log = b.log().await?;
        let errors = page_errors(&log);
        assert!(errors.is_empty(), "browser log errors: {errors:?}");
        println!("console screenshots: {}", shots.display());
        anyhow::Ok(())
    }
    .await;
    b.quit().await?;
    result
}

#[tokio::test]
async fn the_console_can_be_turned_off() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_CONSOLE".into(), "false".into())],
        ..Default::default()
    })
    .await?;
    let resp = reqwest::get(format!("{}/ui/", d.url)).await?;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    // The API is unaffected.
    let (status, _) = d.admin().send("GET", "/api/me", None).await?;
    assert_eq!(status, 200);
    Ok(())
}
