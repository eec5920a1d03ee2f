//! Volume ids to file names and back. Ids are `vg/lv` today, but the encoding takes any
//! string: bytes outside a small safe set become `%XX`, so no id can name another
//! directory, a dot file or a temp file of the store.

const MAX_NAME_BYTES: usize = 200;

fn safe(b: u8, first: bool) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'+' || b == b'-' || (b == b'.' && !first)
}

/// The file name (without suffix) for `id`; `None` for an empty id or one too long for a
/// file name once encoded.
pub fn encode_file_name(id: &str) -> Option<String> {
    if id.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(id.len() + 4);
    for (i, b) in id.bytes().enumerate() {
        if safe(b, i == 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    (out.len() <= MAX_NAME_BYTES).then_some(out)
}

/// The inverse of [`encode_file_name`]; `None` for a name it would never produce.
pub fn decode_file_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            if safe(b, out.is_empty()) || hex.to_ascii_uppercase() != hex {
                return None;
            }
            out.push(b);
            i += 3;
        } else if safe(bytes[i], out.is_empty()) {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    let id = String::from_utf8(out).ok()?;
    (encode_file_name(&id).as_deref() == Some(name)).then_some(id)
}
