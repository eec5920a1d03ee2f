use loona_hpack::{Decoder, Encoder};

use super::*;

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn request(authority: &str, extra: &[(&str, &str)]) -> Headers {
    let mut h: Headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/csi.v1.Identity/GetPluginInfo"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    h.extend(
        extra
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())),
    );
    h
}

fn encode(enc: &mut Encoder, h: &Headers) -> Vec<u8> {
    enc.encode(h.iter().map(|(n, v)| (&n[..], &v[..])))
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    super::frame_header(&mut out, payload.len(), ty, flags, stream);
    out.extend_from_slice(payload);
    out
}

struct Frame {
    ty: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Splits what the rewriter produced (after the preface) into frames.
fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut v = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        v.push(Frame {
            ty: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes(bytes[5..9].try_into().unwrap()),
            payload: bytes[9..9 + len].to_vec(),
        });
        bytes = &bytes[9 + len..];
    }
    v
}

/// The header lists the server will see, decoded with one decoder like h2's; also checks
/// that no output frame exceeds the default frame size and no entry enters a table.
fn server_view(out: &[u8]) -> Vec<Headers> {
    assert_eq!(&out[..PREFACE.len()], PREFACE);
    let mut dec = Decoder::new();
    let mut lists = Vec::new();
    let mut block = Vec::new();
    for f in frames(&out[PREFACE.len()..]) {
        assert!(f.payload.len() <= MAX_FRAME, "frame of {}", f.payload.len());
        match f.ty {
            HEADERS => {
                assert_eq!(f.flags & PADDED, 0);
                let skip = if f.flags & PRIORITY != 0 { 5 } else { 0 };
                block = f.payload[skip..].to_vec();
            }
            CONTINUATION => block.extend_from_slice(&f.payload),
            _ => continue,
        }
        if f.flags & END_HEADERS != 0 {
            // 0x00 prefix on every field: literal, not indexed.
            lists.push(dec.decode(&block).unwrap());
        }
    }
    lists
}

fn rewrite(input: &[u8]) -> Vec<u8> {
    let mut r = Rewriter::new();
    let mut out = Vec::new();
    r.feed(input, &mut out).unwrap();
    out
}

fn authority_of(h: &Headers) -> &[u8] {
    &h.iter().find(|(n, _)| n == b":authority").unwrap().1
}

#[test]
fn a_path_authority_becomes_localhost_and_nothing_else_changes() {
    let mut enc = Encoder::new();
    let h = request("/tmp/x y/csi.sock", &[("x-custom", "v")]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    input.extend(frame(HEADERS, END_HEADERS, 1, &encode(&mut enc, &h)));
    input.extend(frame(0x0, END_STREAM, 1, &[0, 0, 0, 0, 0])); // DATA
    let out = rewrite(&input);
    let seen = server_view(&out);
    assert_eq!(seen.len(), 1);
    let mut want = h.clone();
    want[3].1 = REPLACEMENT.to_vec();
    assert_eq!(seen[0], want);
    let f = frames(&out[PREFACE.len()..]);
    assert_eq!(f[0].ty, 0x4);
    assert_eq!(
        (f[2].ty, f[2].flags, &f[2].payload[..]),
        (0x0, END_STREAM, &[0u8; 5][..])
    );
    // %-encoded and empty authorities are refused by h2 too.
    for bad in ["%2Ftmp%2Fcsi.sock", "", "a b"] {
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &encode(&mut Encoder::new(), &request(bad, &[])),
        ));
        assert_eq!(
            authority_of(&server_view(&rewrite(&input))[0]),
            REPLACEMENT,
            "{bad:?}"
        );
    }
}

#[test]
fn a_valid_authority_is_kept() {
    for good in ["localhost", "csi.sock", "10.0.0.1:8080", "unix"] {
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &encode(&mut Encoder::new(), &request(good, &[])),
        ));
        assert_eq!(
            authority_of(&server_view(&rewrite(&input))[0]),
            good.as_bytes()
        );
    }
}

#[test]
fn fragmented_padded_prioritised_block_fed_byte_by_byte() {
    let h = request("/run/csi/csi.sock", &[]);
    let block = encode(&mut Encoder::new(), &h);
    let (a, rest) = block.split_at(7);
    let (b, c) = rest.split_at(11);
    let mut headers = vec![3u8]; // pad length
    headers.extend([0x80, 0, 0, 0, 16]); // exclusive dependency on 0, weight 16
    headers.extend(a);
    headers.extend([0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 3, &headers));
    input.extend(frame(CONTINUATION, 0, 3, b));
    input.extend(frame(CONTINUATION, END_HEADERS, 3, c));
    let mut r = Rewriter::new();
    let mut out = Vec::new();
    for byte in &input {
        r.feed(std::slice::from_ref(byte), &mut out).unwrap();
    }
    let f = frames(&out[PREFACE.len()..]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].flags, PRIORITY | END_STREAM | END_HEADERS);
    assert_eq!(f[0].stream, 3);
    assert_eq!(&f[0].payload[..5], &[0x80, 0, 0, 0, 16]);
    let mut want = h.clone();
    want[3].1 = REPLACEMENT.to_vec();
    assert_eq!(server_view(&out), vec![want]);
}

#[test]
fn dynamic_table_entries_reused_across_requests() {
    // As grpc-go does: the first request adds the path authority (and a custom header) to
    // the dynamic table, the second refers to both by index. Only the rewriter's decoder
    // holds that table; h2 must get literals.
    let path = b"/csi.v1.Identity/Probe";
    let sock = b"/tmp/csi.sock";
    let common = |b: &mut Vec<u8>| {
        b.extend([0x83, 0x86, 0x04, path.len() as u8]); // POST, http, :path (not indexed)
        b.extend(path);
    };
    let mut b1 = Vec::new();
    common(&mut b1);
    b1.extend([0x41, sock.len() as u8]); // :authority, incremental indexing -> 63 later
    b1.extend(sock);
    b1.extend([0x40, 7]);
    b1.extend(b"x-trace"); // new name, incremental indexing -> 62
    b1.extend([3]);
    b1.extend(b"one");
    let mut b2 = Vec::new();
    common(&mut b2);
    b2.extend([0xbf, 0xbe]); // indexed 63, 62
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS, 1, &b1));
    input.extend(frame(HEADERS, END_HEADERS, 3, &b2));
    let seen = server_view(&rewrite(&input));
    let want: Headers = [
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", REPLACEMENT),
        (b"x-trace", b"one"),
    ]
    .iter()
    .map(|(n, v)| (n.to_vec(), v.to_vec()))
    .collect();
    assert_eq!(seen, vec![want.clone(), want]);
}

#[test]
fn a_huge_block_is_split_into_continuations() {
    let big = "v".repeat(40_000);
    let h = request("/tmp/csi.sock", &[("x-big", &big)]);
    let block = encode(&mut Encoder::new(), &h);
    let mut input = PREFACE.to_vec();
    // The client splits it its own way (at 10,000 bytes).
    let mut chunks = block.chunks(10_000).peekable();
    let mut first = true;
    while let Some(c) = chunks.next() {
        let end = if chunks.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        let ty = if first { HEADERS } else { CONTINUATION };
        input.extend(frame(ty, end, 5, c));
        first = false;
    }
    let out = rewrite(&input);
    let f = frames(&out[PREFACE.len()..]);
    assert_eq!(f.len(), 3, "40 kB in 16 kB frames");
    assert_eq!(f[0].ty, HEADERS);
    assert!(f[1..].iter().all(|f| f.ty == CONTINUATION && f.stream == 5));
    assert_eq!(f[2].flags, END_HEADERS);
    let mut want = h.clone();
    want[3].1 = REPLACEMENT.to_vec();
    assert_eq!(server_view(&out), vec![want]);
}

#[test]
fn broken_input_is_a_connection_error() {
    let block = encode(&mut Encoder::new(), &request("/s", &[]));
    type Case = (Vec<u8>, fn(&RewriteError) -> bool);
    let cases: Vec<Case> = vec![
        (
            [frame(HEADERS, 0, 1, &block[..5]), frame(0x0, 0, 1, b"x")].concat(),
            |e| matches!(e, RewriteError::Interleaved { got: 0, .. }),
        ),
        (
            [
                frame(HEADERS, 0, 1, &block[..5]),
                frame(CONTINUATION, END_HEADERS, 3, &block[5..]),
            ]
            .concat(),
            |e| {
                matches!(
                    e,
                    RewriteError::Interleaved {
                        stream: 3,
                        open: 1,
                        ..
                    }
                )
            },
        ),
        (frame(CONTINUATION, END_HEADERS, 1, &block), |e| {
            matches!(e, RewriteError::StrayContinuation(1))
        }),
        (frame(HEADERS, PADDED | END_HEADERS, 1, &[200, 1, 2]), |e| {
            matches!(e, RewriteError::BadPadding(1))
        }),
        (
            frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0x7f]),
            |e| matches!(e, RewriteError::Hpack(_)),
        ),
    ];
    for (i, (frames, ok)) in cases.into_iter().enumerate() {
        let mut input = PREFACE.to_vec();
        input.extend(frames);
        let e = Rewriter::new().feed(&input, &mut Vec::new()).unwrap_err();
        assert!(ok(&e), "case {i}: {e:?}");
    }
    // A block over the limit is refused before it is buffered.
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, 0, 1, &vec![0; MAX_FRAME]));
    let mut r = Rewriter::new();
    let mut out = Vec::new();
    r.feed(&input, &mut out).unwrap();
    let cont = frame(CONTINUATION, 0, 1, &vec![0; MAX_FRAME]);
    let mut err = None;
    for _ in 0..MAX_BLOCK / MAX_FRAME {
        if let Err(e) = r.feed(&cont, &mut out) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(RewriteError::TooLarge(1)));
}
