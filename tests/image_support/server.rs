//! The fake registry: a tiny HTTP server on 127.0.0.1 whose answers each
//! test scripts, and the requests it saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request as the fake registry saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What to answer.
pub enum Reply {
    /// Status, headers, body.
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// Sends headers announcing `announced` bytes, then only `body`, then
    /// closes the connection (a reset mid-transfer).
    Cut(u16, Vec<(String, String)>, Vec<u8>, u64),
    /// Like `Cut`, but keeps the connection open without sending more.
    Stall(u16, Vec<(String, String)>, Vec<u8>, u64),
}

pub fn ok(body: &[u8]) -> Reply {
    Reply::Full(200, vec![], body.to_vec())
}

pub fn status(code: u16) -> Reply {
    Reply::Full(code, vec![], Vec::new())
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A fake registry on 127.0.0.1:PORT, answering with `handler`.
pub struct FakeServer {
    pub addr: String,
    pub log: Arc<Mutex<Vec<Seen>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> FakeServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log2 = log.clone();
        runtime.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (handler, log) = (handler.clone(), log2.clone());
                tokio::spawn(async move { serve(sock, handler, log).await });
            }
        });
        FakeServer {
            addr,
            log,
            runtime: Some(runtime),
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self, method: &str, path_part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .count()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn serve(mut sock: tokio::net::TcpStream, handler: Arc<Handler>, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let first: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
        let mut headers = HashMap::new();
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < length {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        let seen = Seen {
            method: first.first().unwrap_or(&"").to_string(),
            path: first.get(1).unwrap_or(&"").to_string(),
            headers,
            body,
        };
        log.lock().unwrap().push(seen.clone());
        let head_only = seen.method == "HEAD";
        match handler(&seen) {
            Reply::Full(code, hdrs, body) => {
                let mut out = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in hdrs {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                if !head_only {
                    bytes.extend_from_slice(&body);
                }
                if sock.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            reply @ (Reply::Cut(..) | Reply::Stall(..)) => {
                let stall = matches!(reply, Reply::Stall(..));
                let (Reply::Cut(code, hdrs, body, announced)
                | Reply::Stall(code, hdrs, body, announced)) = reply
                else {
                    return;
                };
                let mut out = format!("HTTP/1.1 {code} X\r\nContent-Length: {announced}\r\n");
                for (k, v) in hdrs {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                let _ = sock.write_all(&bytes).await;
                let _ = sock.flush().await;
                if stall {
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
                return;
            }
        }
    }
}
