//! Upstreams that stall or flood a stream are cut off: keep-alive comments are not
//! progress, and an event has a size limit.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use bantam_api::{Backend, BackendError, Call, Endpoint, Reply, Request};
use bantam_upstream::{Upstream, UpstreamConfig};
use futures::StreamExt;

/// A server whose chat endpoint streams `piece` every `every` forever.
async fn upstream(piece: &'static [u8], every: Duration) -> Upstream {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            let s = futures::stream::unfold((), move |_| async move {
                tokio::time::sleep(every).await;
                Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from_static(piece)),
                    (),
                ))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(s))
                .unwrap()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Upstream::new(UpstreamConfig {
        name: "up".into(),
        base_url: format!("http://{addr}/v1"),
        api_key: None,
        timeout_secs: 1.0,
        connect_timeout_secs: 1.0,
        native_tasks: false,
    })
    .unwrap()
}

fn streamed_chat() -> Request {
    let body = r#"{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    Request::parse(Endpoint::Chat, body.as_bytes()).unwrap()
}

async fn first_item(up: &Upstream) -> (Result<serde_json::Value, BackendError>, Duration) {
    let t = Instant::now();
    let Reply::Stream(mut s) = up.call(Call::new(streamed_chat())).await.unwrap() else {
        panic!("a stream was asked for")
    };
    let item = tokio::time::timeout(Duration::from_secs(30), s.next())
        .await
        .expect("the stream was not cut off")
        .expect("an item");
    (item, t.elapsed())
}

#[tokio::test]
async fn keep_alive_comments_are_not_progress() {
    let up = upstream(b": keep-alive\n\n", Duration::from_millis(50)).await;
    let (item, took) = first_item(&up).await;
    let e = item.unwrap_err();
    assert!(
        matches!(&e, BackendError::Broken { reason, .. } if reason.contains("keep-alive")),
        "{e}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn an_endless_event_is_refused_not_buffered() {
    static CHUNK: [u8; 1 << 20] = [b'x'; 1 << 20];
    let up = upstream(&CHUNK, Duration::from_millis(1)).await;
    let (item, _) = first_item(&up).await;
    let e = item.unwrap_err();
    assert!(
        matches!(&e, BackendError::Broken { reason, .. } if reason.contains("longer than")),
        "{e}"
    );
}
