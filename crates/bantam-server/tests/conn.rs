//! Connections on a real socket: idle ones and slow headers are closed, a request in
//! flight never is, and the connection cap makes clients wait rather than fail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::routing::post;
use bantam_server::{serve_on, AppState, ServeSettings};
use bantam_store::Store;
use serde_json::{json, Value};

/// A Bantam whose backend `slow` is an upstream answering after `delay`.
async fn start(extra_toml: &str, delay: Duration) -> (String, tempfile::TempDir) {
    start_with(extra_toml, delay, 0).await
}

/// Same, the answer's content `pad` bytes long (0: "late").
async fn start_with(extra_toml: &str, delay: Duration, pad: usize) -> (String, tempfile::TempDir) {
    let content = if pad == 0 {
        "late".to_string()
    } else {
        "x".repeat(pad)
    };
    let up = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            tokio::time::sleep(delay).await;
            axum::Json(json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))
        }),
    );
    let upl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upl.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(upl, up).await });
    let cfg = ServeSettings::from_toml(
        &format!(
            "{extra_toml}\n[[backends]]\nname = \"slow\"\ntype = \"openai\"\nmodel = \"m\"\nbase_url = \"http://{up_addr}/v1\"\n"
        ),
        std::path::Path::new("t.toml"),
    )
    .unwrap()
    .resolve();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let state = AppState::with_env(store, cfg, &|_| None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(serve_on(listener, state, std::future::pending()));
    (base, dir)
}

/// Seconds until the server closes a connection that sent `sent` and then nothing.
fn closed_after(base: &str, sent: &[u8]) -> f64 {
    let mut s = TcpStream::connect(base).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(sent).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return t.elapsed().as_secs_f64(),
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_and_slow_headers_are_closed() {
    let (base, _dir) = start("idle_timeout_secs = 1", Duration::ZERO).await;
    let b = base.clone();
    let idle = tokio::task::spawn_blocking(move || closed_after(&b, b""))
        .await
        .unwrap();
    assert!((0.8..5.0).contains(&idle), "{idle}");
    // Headers trickling in: the clock started at connect and is not reset by bytes.
    let b = base.clone();
    let slow = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&b).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let t = Instant::now();
        for piece in [
            &b"POST /v1/chat/completions HTTP/1.1\r\n"[..],
            b"Host: x\r\n",
            b"Content-",
        ] {
            if s.write_all(piece).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(400));
        }
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        t.elapsed().as_secs_f64()
    })
    .await
    .unwrap();
    assert!(slow < 5.0, "{slow}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_trickles_in_gets_a_408() {
    // The idle timeout does not apply once the headers are in (a request is in
    // flight); the body has its own deadline.
    let (base, _dir) = start(
        "idle_timeout_secs = 60\nbody_timeout_secs = 1",
        Duration::ZERO,
    )
    .await;
    let (secs, answer) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&base).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let t = Instant::now();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"model\":")
            .unwrap();
        // A byte now and then does not extend the deadline.
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..30 {
                std::thread::sleep(Duration::from_millis(200));
                if w.write_all(b" ").is_err() {
                    break;
                }
            }
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        (t.elapsed().as_secs_f64(), String::from_utf8_lossy(&got).into_owned())
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(secs < 5.0, "{secs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_loses_its_connection() {
    // An answer far larger than the socket buffers, to a client that reads nothing
    // for 4 s: the server gives up after the 1 s idle timeout instead of holding the
    // connection (and the request) until the client reads.
    let (base, _dir) = start_with("idle_timeout_secs = 1", Duration::ZERO, 16 << 20).await;
    let (got, full) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&base).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let body = r#"{"model":"slow","messages":[{"role":"user","content":"hi"}]}"#;
        write!(
            s,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        std::thread::sleep(Duration::from_secs(4));
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        (got, 16usize << 20)
    })
    .await
    .unwrap();
    assert!(
        got < full,
        "the whole answer arrived ({got} bytes): the connection was held"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_longer_than_the_idle_timeout_is_not_cut() {
    let (base, _dir) = start("idle_timeout_secs = 1", Duration::from_millis(2500)).await;
    let body = json!({"model": "slow", "messages": [{"role": "user", "content": "hi"}]});
    let r = reqwest::Client::new()
        .post(format!("http://{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "late");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_cap_a_new_client_takes_an_idle_place() {
    let (base, _dir) = start(
        "max_connections = 2\nidle_timeout_secs = 60",
        Duration::ZERO,
    )
    .await;
    // Two idle connections take both places…
    let mut holders: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&base).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // …a third client is answered at once: the longest-idle one is closed for it.
    let t = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("http://{base}/health"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let closed = tokio::task::spawn_blocking(move || {
        let s = &mut holders[0];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        matches!(s.read(&mut [0u8; 8]), Ok(0) | Err(_))
    })
    .await
    .unwrap();
    assert!(closed, "the oldest idle connection was closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_connections_are_never_taken() {
    let (base, _dir) = start(
        "max_connections = 2\nidle_timeout_secs = 60",
        Duration::from_millis(2000),
    )
    .await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let body = json!({"model": "slow", "messages": [{"role": "user", "content": "hi"}]});
    let slow = (0..2)
        .map(|_| {
            let (c, b, u) = (
                client.clone(),
                body.clone(),
                format!("http://{base}/v1/chat/completions"),
            );
            tokio::spawn(
                async move { c.post(u).json(&b).send().await.map(|r| r.status().as_u16()) },
            )
        })
        .collect::<Vec<_>>();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Both places hold a request in flight: the third client waits for one to end.
    let t = Instant::now();
    let r = client
        .get(format!("http://{base}/health"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    for s in slow {
        assert_eq!(s.await.unwrap().unwrap(), 200);
    }
}
