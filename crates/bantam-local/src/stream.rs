//! Streams fed by a producer task, aborted when the consumer goes away.

use bantam_api::BackendError;
use futures::Stream;

/// Items of a local stream: chunks, or the error that ended it.
pub(crate) type Item = Result<serde_json::Value, BackendError>;

/// Serialize and send one chunk; false when the client is gone.
pub(crate) async fn send_json<T: serde::Serialize>(
    tx: &tokio::sync::mpsc::Sender<Item>,
    v: &T,
) -> bool {
    tx.send(Ok(to_value(v))).await.is_ok()
}

/// A response object as JSON (plain data: cannot fail).
pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// A stream fed by a producer task. When the client disconnects, the receiver is
/// dropped, the producer's next send fails, and the producer returns — dropping the
/// engine's event streams, which frees the request's slots.
pub(crate) fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Item> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<Item>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(64);
    let on_panic = tx.clone();
    let work = producer(tx);
    let task = tokio::spawn(async move {
        // A bug must not end a stream as if it had finished: the client gets an
        // error event, the process keeps serving.
        if futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(work))
            .await
            .is_err()
        {
            tracing::error!("a stream's producer panicked");
            let _ = on_panic
                .send(Err(BackendError::internal(
                    "bantam",
                    "internal error while streaming the answer (logged on the server)",
                )))
                .await;
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    AbortOnDrop {
        inner: stream,
        task,
    }
}

/// Aborts the producer when the response stream is dropped (client gone), so the
/// engine learns about the disconnect immediately rather than at the next send.
struct AbortOnDrop<S> {
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl<S> Drop for AbortOnDrop<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Stream<Item = Item> + Unpin> Stream for AbortOnDrop<S> {
    type Item = Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}
