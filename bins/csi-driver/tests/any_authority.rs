//! The real server answers clients that send the socket path as HTTP/2 `:authority` (older
//! grpc-go, grpc-java, Python grpcio). A test binary of its own: the library's
//! log-capturing test must not share its process with another test's server.

use std::sync::Arc;

use csi_driver::Mode;
use csi_driver::metrics::Metrics;
use csi_driver::service::server::{bind, serve_starting};

/// The real server answers a client that sends the socket path as `:authority`
/// (hand-built HTTP/2: no Rust client can send it), both %-encoded and raw.
#[tokio::test]
async fn a_path_authority_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let listener = bind(&sock).unwrap();
    let (_startup, handle) = csi_driver::service::startup::Startup::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_starting(
        "lvm.vglet.io".into(),
        Mode::All,
        handle,
        Arc::new(Metrics::new()),
        listener,
        sock.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let frame = |ty: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([ty, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    };
    let raw = sock.to_str().unwrap().to_string();
    let encoded = raw.replace('/', "%2F");
    let mut conn = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    // One encoder for the connection: the second request refers to the first's
    // dynamic-table entries.
    let mut enc = loona_hpack::Encoder::new();
    for (stream, authority) in [(1u32, &raw), (3, &encoded), (5, &raw)] {
        let block = enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/csi.v1.Identity/GetPluginInfo"),
            (b":authority", authority.as_bytes()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]);
        out.extend(frame(0x1, 0x4, stream, &block));
        out.extend(frame(0x0, 0x1, stream, &[0, 0, 0, 0, 0]));
    }
    conn.write_all(&out).await.unwrap();
    // Read until all three streams have their trailers (grpc-status) or one is reset.
    let mut dec = loona_hpack::Decoder::new();
    let (mut status, mut data) = (std::collections::BTreeMap::new(), Vec::new());
    while status.len() < 3 {
        let mut h = [0u8; 9];
        conn.read_exact(&mut h).await.unwrap();
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let stream = u32::from_be_bytes(h[5..9].try_into().unwrap());
        let mut payload = vec![0; len];
        conn.read_exact(&mut payload).await.unwrap();
        match h[3] {
            0x0 => data.extend(payload),
            0x1 => {
                for (n, v) in dec.decode(&payload).unwrap() {
                    if n == b"grpc-status" {
                        status.insert(stream, String::from_utf8(v).unwrap());
                    }
                }
            }
            0x3 => panic!("stream {stream} reset: {payload:?}"),
            0x7 => panic!("GOAWAY: {payload:?}"),
            _ => {}
        }
    }
    assert!(status.values().all(|s| s == "0"), "{status:?}");
    let name = b"lvm.vglet.io";
    assert_eq!(data.windows(name.len()).filter(|w| w == name).count(), 3);
    let _ = stop.send(());
    drop(conn);
    server.await.unwrap().unwrap();
}
