//! tokio-tungstenite peer for wsbench: `peer-tokio-tungstenite echo|broadcast PORT`.
//!
//! One current-thread runtime (the comparison pins every server to one core).
//! Echo feeds every message back and flushes once per batch of messages that
//! are ready; broadcast sends every message to every client, sender included,
//! through one writer task per connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::stream::SplitSink;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Clients = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(64 << 20))
}

async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await
    else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if !(msg.is_binary() || msg.is_text()) {
            continue; // pings are answered and closes handled by tungstenite
        }
        if ws.feed(msg).await.is_err() {
            return;
        }
        // Everything already received goes out with one flush.
        while let Some(Some(Ok(msg))) = ws.next().now_or_never() {
            if (msg.is_binary() || msg.is_text()) && ws.feed(msg).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

/// The writer task of a connection: sends what arrives on its channel and
/// flushes once per batch of messages that are ready.
fn spawn_writer(
    mut sink: SplitSink<WebSocketStream<TcpStream>, Message>,
) -> (mpsc::UnboundedSender<Message>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(msg) = rx.try_recv() {
                if sink.feed(msg).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    (tx, writer)
}

async fn broadcast(stream: TcpStream, id: u64, clients: Clients) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await else {
        return;
    };
    let (sink, mut source) = ws.split();
    let (tx, writer) = spawn_writer(sink);
    if let Ok(mut c) = clients.lock() {
        c.insert(id, tx);
    }
    while let Some(Ok(msg)) = source.next().await {
        if (msg.is_binary() || msg.is_text())
            && let Ok(c) = clients.lock()
        {
            for tx in c.values() {
                let _ = tx.send(msg.clone());
            }
        }
    }
    if let Ok(mut c) = clients.lock() {
        c.remove(&id);
    }
    writer.abort();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("echo").to_string();
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(9001);
    if mode != "echo" && mode != "broadcast" {
        eprintln!("usage: peer-tokio-tungstenite echo|broadcast PORT");
        std::process::exit(2);
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("tokio-tungstenite {mode} listening on 127.0.0.1:{port}");
    let clients: Clients = Arc::default();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                next_id += 1;
                if mode == "echo" {
                    tokio::spawn(echo(stream));
                } else {
                    tokio::spawn(broadcast(stream, next_id, clients.clone()));
                }
            }
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}
