//! `bastion data … --server URL`: the same commands through the server's dataset API
//! (`/api/bastion/v1/datasets`), authenticated with a bearer token. Downloads are checked
//! against the digest the server states before they replace the output file.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use bastion_core::digest::{Digest, Hasher};
use bastion_data::ingest::{IngestOptions, list_inputs};
use futures::StreamExt;
use reqwest::{Method, RequestBuilder, Response, Url};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

pub struct Remote {
    base: Url,
    client: reqwest::Client,
    token: Option<String>,
}

/// A downloaded file: the version it came from, its digest and (for a redacted copy) how
/// many values were changed.
pub struct Downloaded {
    pub dataset: String,
    pub digest: String,
    pub values_changed: u64,
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Remote {
    pub fn new(url: &str, token: Option<String>) -> Result<Self> {
        let base = Url::parse(url).with_context(|| format!("--server {url}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!("--server {url}: give an http:// or https:// URL");
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("bastion/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            base,
            client,
            token,
        })
    }

    /// `{base}/api/bastion/v1/…` with each segment percent-encoded.
    fn v1_url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| anyhow!("--server is not a base URL"))?;
            path.pop_if_empty();
            path.extend(["api", "bastion", "v1"]);
            path.extend(segments);
        }
        Ok(url)
    }

    /// `{base}/api/bastion/v1/datasets/…`
    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut all = vec!["datasets"];
        all.extend_from_slice(segments);
        self.v1_url(&all)
    }

    /// A `/api/bastion/v1` GET with query parameters.
    pub async fn api_query(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value> {
        let mut url = self.v1_url(segments)?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        self.json(self.request(Method::GET, url)).await
    }

    /// Any `/api/bastion/v1` call with a JSON answer: GET without a body, POST with one.
    pub async fn api(&self, segments: &[&str], body: Option<&Value>) -> Result<Value> {
        let url = self.v1_url(segments)?;
        match body {
            None => self.json(self.request(Method::GET, url)).await,
            Some(b) => self.json(self.request(Method::POST, url).json(b)).await,
        }
    }

    /// `POST /api/bastion/feedback` (outside the versioned API, where the MLOps tools put it).
    pub async fn post_feedback(&self, body: &Value) -> Result<Value> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| anyhow!("--server is not a base URL"))?
            .pop_if_empty()
            .extend(["api", "bastion", "feedback"]);
        self.json(self.request(Method::POST, url).json(body)).await
    }

    /// The URL of one version's endpoint (`op` empty: the version itself).
    fn version_url(&self, reference: &str, op: &str) -> Result<Url> {
        let (name, version) = bastion_store::meta::parse_dataset_reference(reference)?;
        let version = version.map_or_else(|| "latest".to_owned(), |v| v.to_string());
        let mut segments = vec![name.as_str(), "versions", version.as_str()];
        if !op.is_empty() {
            segments.push(op);
        }
        self.url(&segments)
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let r = self.client.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends, and turns a refusal into an error carrying the server's message.
    async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("reaching the server {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match (body["message"].as_str(), body["error_code"].as_str()) {
            (Some(m), Some(code)) => bail!("{m} ({code}, HTTP {})", status.as_u16()),
            _ => bail!(
                "the server answered HTTP {}: {}",
                status.as_u16(),
                bastion_core::limits::truncate(&text, 300)
            ),
        }
    }

    async fn json(&self, req: RequestBuilder) -> Result<Value> {
        Ok(self.send(req).await?.json().await?)
    }

    pub async fn list(&self, name: Option<&str>) -> Result<Value> {
        let mut url = self.url(&[])?;
        if let Some(n) = name {
            url.query_pairs_mut().append_pair("name", n);
        }
        let mut out = self.json(self.request(Method::GET, url)).await?;
        Ok(out["versions"].take())
    }

    pub async fn show(&self, reference: &str) -> Result<Value> {
        let url = self.version_url(reference, "")?;
        self.json(self.request(Method::GET, url)).await
    }

    /// A check that records evidence (`POST …/{op}` with a JSON body).
    pub async fn post(&self, reference: &str, op: &str, body: &Value) -> Result<Value> {
        let url = self.version_url(reference, op)?;
        self.json(self.request(Method::POST, url).json(body)).await
    }

    /// A check whose result is a report: pretty JSON, or the server's HTML rendering.
    pub async fn report(
        &self,
        reference: &str,
        op: &str,
        body: &Value,
        html: bool,
    ) -> Result<String> {
        let mut url = self.version_url(reference, op)?;
        if html {
            url.query_pairs_mut().append_pair("format", "html");
            let resp = self
                .send(self.request(Method::POST, url).json(body))
                .await?;
            return Ok(resp.text().await?);
        }
        let v = self
            .json(self.request(Method::POST, url).json(body))
            .await?;
        Ok(serde_json::to_string_pretty(&v)?)
    }

    pub async fn text(&self, reference: &str, op: &str) -> Result<String> {
        let url = self.version_url(reference, op)?;
        Ok(self
            .send(self.request(Method::GET, url))
            .await?
            .text()
            .await?)
    }

    /// Uploads a file as the body, or a folder as multipart (one part per file, named by
    /// its path in the folder, exactly the files a local ingest would read).
    pub async fn add(
        &self,
        input: &Path,
        name: &str,
        source: &str,
        opts: &IngestOptions,
    ) -> Result<Value> {
        let mut url = self.url(&[name, "versions"])?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("source", source)
                .append_pair("max_line_bytes", &opts.max_line_bytes.to_string());
            if let Some(f) = opts.format {
                q.append_pair("format", f.as_str());
            }
        }
        let files = list_inputs(input)?;
        let total: u64 = files
            .iter()
            .map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let req = if input.is_dir() {
            let mut form = reqwest::multipart::Form::new();
            for (path, rel) in files {
                let (body, len) = file_body(&path, &bar).await?;
                let part = reqwest::multipart::Part::stream_with_length(body, len).file_name(rel);
                form = form.part("file", part);
            }
            self.request(Method::POST, url).multipart(form)
        } else {
            let filename = files
                .first()
                .map(|(_, rel)| rel.clone())
                .unwrap_or_default();
            url.query_pairs_mut().append_pair("filename", &filename);
            let (body, len) = file_body(input, &bar).await?;
            self.request(Method::POST, url)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body)
        };
        let out = self.json(req).await;
        bar.finish_and_clear();
        out
    }

    /// Streams a version's file (`parquet`, `redacted`) to `dest`, hashing it on the way; the
    /// Parquet must match the digest the server states for the version.
    pub async fn download(
        &self,
        reference: &str,
        op: &str,
        query: &[(&str, &str)],
        dest: &Path,
    ) -> Result<Downloaded> {
        let mut url = self.version_url(reference, op)?;
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let resp = self.send(self.request(Method::GET, url)).await?;
        let stated = header(&resp, "x-bastion-digest");
        let dataset = header(&resp, "x-bastion-dataset").unwrap_or_else(|| reference.to_owned());
        let values_changed = header(&resp, "x-bastion-values-changed")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut out = tokio::fs::File::create(dest)
            .await
            .with_context(|| format!("writing {}", dest.display()))?;
        let mut hasher = Hasher::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context("downloading")?;
            std::io::Write::write_all(&mut hasher, &chunk)?;
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        let got = hasher.finish();
        if op == "parquet" {
            let want: Digest = stated
                .as_deref()
                .ok_or_else(|| anyhow!("the server sent no X-Bastion-Digest for {reference}"))?
                .parse()
                .map_err(|e| anyhow!("the server's X-Bastion-Digest: {e}"))?;
            if got != want {
                bail!("{reference}: downloaded bytes have digest {got}, not the version's {want}");
            }
        }
        Ok(Downloaded {
            dataset,
            digest: got.to_string(),
            values_changed,
        })
    }
}

async fn file_body(path: &Path, bar: &indicatif::ProgressBar) -> Result<(reqwest::Body, u64)> {
    let f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let len = f.metadata().await?.len();
    let bar = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20).inspect(move |c| {
        if let Ok(c) = c {
            bar.inc(c.len() as u64);
        }
    });
    Ok((reqwest::Body::wrap_stream(stream), len))
}
