//! Test harness: start the real `bantam` binary on loopback with the real SmolLM2.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const MODEL: &str = "smollm2:135m";

/// The store holding the test model: `BANTAM_TEST_HOME`, else the default store.
pub fn model_home() -> PathBuf {
    let home = std::env::var_os("BANTAM_TEST_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(bantam_store::Store::default_home);
    let store = bantam_store::Store::open(&home).expect("open store");
    if store.get(MODEL).is_err() {
        panic!(
            "these tests need {MODEL} in the model store at {}: run `bantam pull {MODEL}` first (or set BANTAM_TEST_HOME)",
            home.display()
        );
    }
    home
}

/// The `bantam` binary on the test store. Servers run one engine thread each
/// (`BANTAM_TEST_THREADS` changes it): the test harness runs two tests at a time on
/// this 2-core machine, and two servers with a thread per core each would make
/// llama.cpp's spinning workers wait for each other at every step (see
/// `bench/contention.sh` in BENCHMARKS.md).
pub fn bantam() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bantam"));
    c.env("BANTAM_HOME", model_home());
    c.env(
        "BANTAM_THREADS",
        std::env::var("BANTAM_TEST_THREADS").unwrap_or_else(|_| "1".into()),
    );
    c
}

/// A running `bantam serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub http: reqwest::blocking::Client,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Self::start_env(extra, &[])
    }

    /// Start with extra environment variables.
    pub fn start_env(extra: &[&str], envs: &[(&str, &str)]) -> Server {
        Self::launch(&[], extra, envs)
    }

    /// Start under a wrapper command that execs the server (`prlimit --as=… --`).
    pub fn start_wrapped(wrapper: &[&str], extra: &[&str]) -> Server {
        Self::launch(wrapper, extra, &[])
    }

    fn launch(wrapper: &[&str], extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let plain = bantam();
                let mut c = Command::new(w);
                c.args(rest).arg(plain.get_program());
                for (k, v) in plain.get_envs() {
                    if let Some(v) = v {
                        c.env(k, v);
                    }
                }
                c
            }
            None => bantam(),
        };
        cmd.envs(envs.iter().copied());
        cmd.args(["serve", "--host", "127.0.0.1", "--port", "0"]);
        if !extra.contains(&"--keep-alive") {
            cmd.args(["--keep-alive", "0"]);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bantam serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(url) = line.strip_prefix("bantam listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not start");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap();
        Server { child, base, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POST JSON; returns status and parsed body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        status_and_body(self.http.post(self.url(path)).json(body))
    }

    /// POST raw bytes.
    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        status_and_body(self.http.post(self.url(path)).body(body.to_string()))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().expect("request");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// POST with `stream: true`; returns every `data:` payload until `[DONE]` (included as a string).
    pub fn stream(&self, path: &str, body: &Value) -> Vec<Value> {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .expect("request");
        assert_eq!(r.status().as_u16(), 200, "stream status");
        read_sse(r)
    }

    pub fn inflight(&self) -> u64 {
        self.get("/health").1["inflight"].as_u64().unwrap()
    }

    /// Chat text of a non-streaming greedy request.
    pub fn chat_text(&self, prompt: &str, max_tokens: u32) -> String {
        let (s, v) = self.post("/v1/chat/completions", &chat_body(prompt, max_tokens));
        assert_eq!(s, 200, "{v}");
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Send; the status and the body as JSON (or as a string when it is not JSON).
fn status_and_body(req: reqwest::blocking::RequestBuilder) -> (u16, Value) {
    let r = req.send().expect("request");
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn read_sse(r: impl Read) -> Vec<Value> {
    let mut out = Vec::new();
    for line in BufReader::new(r).lines() {
        let line = line.expect("read stream");
        if let Some(data) = line.strip_prefix("data: ") {
            if data == "[DONE]" {
                out.push(Value::String("[DONE]".into()));
                break;
            }
            out.push(serde_json::from_str(data).expect("chunk is JSON"));
        }
    }
    out
}

/// Concatenated `delta.content` of chat chunks.
pub fn chunks_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c["choices"]
                .get(0)
                .and_then(|ch| ch["delta"]["content"].as_str())
        })
        .collect()
}

pub fn chat_body(prompt: &str, max_tokens: u32) -> Value {
    serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `tests/python/SCRIPT` with `python3` (or `BANTAM_PYTHON`); success and the
/// combined output.
pub fn python(script: &str, args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let path = format!("{}/../../tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(
        std::env::var("BANTAM_PYTHON").unwrap_or_else(|_| "python3".into()),
    )
    .arg(path)
    .args(args)
    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
    .output()
    .expect("python3 is installed");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

/// `bantam ARGS` on the test store: success, stdout, stderr.
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out = bantam().args(args).output().expect("run bantam");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tests/fixtures/NAME` at the workspace root.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// Removes a model from the shared test store however the test ends.
pub struct Installed(pub String);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = bantam().args(["rm", &self.0]).output();
    }
}
