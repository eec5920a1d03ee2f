//! The little of QEMU's QMP monitor protocol the harness needs: hot-unplug a device and wait
//! for it to be gone. QMP speaks one JSON object per line; the few messages involved are
//! matched as text, which keeps a JSON parser out of the harness.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{HarnessError, io_err};

/// `device_del id`, then waits until QEMU emits DEVICE_DELETED for it. On a PCI device that
/// event comes only after the guest kernel has ejected the device (ACPI hot-unplug), so on
/// success the disk is really gone from the guest too.
pub(crate) fn device_del(socket: &Path, id: &str, timeout: Duration) -> Result<(), HarnessError> {
    let deadline = Instant::now() + timeout;
    let stream = UnixStream::connect(socket)
        .map_err(io_err(format!("connect to QMP at {}", socket.display())))?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(io_err("QMP read timeout"))?;
    let mut writer = stream.try_clone().map_err(io_err("QMP socket"))?;
    let mut reader = BufReader::new(stream);
    let mut send = |cmd: &str| -> Result<(), HarnessError> {
        writer
            .write_all(format!("{cmd}\n").as_bytes())
            .map_err(io_err("write to QMP"))
    };

    next_matching(&mut reader, deadline, |l| l.contains("\"QMP\":"))?;
    send(r#"{"execute":"qmp_capabilities"}"#)?;
    reply(&mut reader, deadline, "qmp_capabilities")?;
    send(&format!(
        r#"{{"execute":"device_del","arguments":{{"id":"{id}"}}}}"#
    ))?;
    // The event may come before the reply when the guest is quick: remember it.
    let mut deleted = false;
    let is_deleted =
        |l: &str| l.contains("\"DEVICE_DELETED\"") && l.contains(&format!("\"device\":\"{id}\""));
    loop {
        let l = next_line(&mut reader, deadline, "reply to device_del")?;
        deleted |= is_deleted(&l);
        if l.contains("\"error\":") {
            return Err(HarnessError::Config(format!("QMP device_del {id}: {l}")));
        }
        if l.contains("\"return\":") {
            break;
        }
    }
    if !deleted {
        // DEVICE_DELETED for a PCI device needs the guest's cooperation (ACPI eject).
        next_matching(&mut reader, deadline, is_deleted)?;
    }
    Ok(())
}

/// Waits for the `{"return": ...}` of a command; an `{"error": ...}` fails.
fn reply(
    reader: &mut BufReader<UnixStream>,
    deadline: Instant,
    what: &str,
) -> Result<(), HarnessError> {
    let l = next_matching(reader, deadline, |l| {
        l.contains("\"return\":") || l.contains("\"error\":")
    })?;
    if l.contains("\"error\":") {
        return Err(HarnessError::Config(format!("QMP {what}: {l}")));
    }
    Ok(())
}

fn next_matching(
    reader: &mut BufReader<UnixStream>,
    deadline: Instant,
    want: impl Fn(&str) -> bool,
) -> Result<String, HarnessError> {
    loop {
        let l = next_line(reader, deadline, "expected QMP message")?;
        if want(&l) {
            return Ok(l);
        }
    }
}

/// The next line with the blanks outside strings dropped (QEMU writes `"a": 1`), so callers
/// can match `"a":1`.
fn next_line(
    reader: &mut BufReader<UnixStream>,
    deadline: Instant,
    what: &str,
) -> Result<String, HarnessError> {
    let mut buf = String::new();
    loop {
        match reader.read_line(&mut buf) {
            Ok(0) => {
                return Err(HarnessError::Io {
                    context: format!("QMP closed while waiting for {what}"),
                    source: ErrorKind::UnexpectedEof.into(),
                });
            }
            Ok(_) if buf.ends_with('\n') => return Ok(compact(&buf)),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(io_err(format!("read QMP, waiting for {what}"))(e)),
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Io {
                context: format!("QMP: no {what} in time (did the guest eject the device?)"),
                source: ErrorKind::TimedOut.into(),
            });
        }
    }
}

fn compact(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_str = false;
    let mut escaped = false;
    for c in line.trim().chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings() {
        assert_eq!(
            compact(r#"{"event": "DEVICE_DELETED", "data": {"device": "vd 1", "x": "a\" b"}}"#),
            r#"{"event":"DEVICE_DELETED","data":{"device":"vd 1","x":"a\" b"}}"#
        );
    }
}
