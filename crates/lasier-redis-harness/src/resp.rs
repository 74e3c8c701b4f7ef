//! Just enough of RESP to split a client's byte stream into commands: what
//! clients send is arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`).

/// Splits a stream of client bytes into commands, fed in chunks as they
/// arrive.
#[derive(Debug, Default)]
pub(crate) struct CommandSplitter {
    buffer: Vec<u8>,
}

impl CommandSplitter {
    /// Adds `bytes` and returns the name of every command now complete
    /// (upper case; `CLIENT SETINFO`, `SCRIPT LOAD`: with their
    /// subcommand). Something that is not RESP is reported as `?` and
    /// dropped, so a test sees it instead of a hang.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut names = Vec::new();
        loop {
            match parse(&self.buffer) {
                Parsed::Command { name, len } => {
                    self.buffer.drain(..len);
                    names.push(name);
                }
                Parsed::Incomplete => return names,
                Parsed::Invalid => {
                    self.buffer.clear();
                    names.push("?".to_owned());
                    return names;
                }
            }
        }
    }
}

enum Parsed {
    Command { name: String, len: usize },
    Incomplete,
    Invalid,
}

/// A `\r\n`-terminated header such as `*3` or `$5`: the number and the
/// position after the line.
fn header(buffer: &[u8], at: usize, kind: u8) -> Option<Result<(usize, usize), ()>> {
    let rest = buffer.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let line = &rest[..end];
    if line.first() != Some(&kind) {
        return Some(Err(()));
    }
    let n = std::str::from_utf8(&line[1..])
        .ok()
        .and_then(|s| s.parse::<usize>().ok());
    Some(n.map(|n| (n, at + end + 2)).ok_or(()))
}

fn parse(buffer: &[u8]) -> Parsed {
    if buffer.is_empty() {
        return Parsed::Incomplete;
    }
    let (count, mut at) = match header(buffer, 0, b'*') {
        None => return Parsed::Incomplete,
        Some(Err(())) => return Parsed::Invalid,
        Some(Ok(h)) => h,
    };
    let mut words = Vec::new();
    for _ in 0..count {
        let (len, start) = match header(buffer, at, b'$') {
            None => return Parsed::Incomplete,
            Some(Err(())) => return Parsed::Invalid,
            Some(Ok(h)) => h,
        };
        let end = start + len;
        if buffer.len() < end + 2 {
            return Parsed::Incomplete;
        }
        if words.len() < 2 {
            words.push(String::from_utf8_lossy(&buffer[start..end]).to_uppercase());
        }
        at = end + 2;
    }
    let name = match words.as_slice() {
        [first, second] if matches!(first.as_str(), "CLIENT" | "SCRIPT" | "CONFIG") => {
            format!("{first} {second}")
        }
        [first, ..] => first.clone(),
        [] => "?".to_owned(),
    };
    Parsed::Command { name, len: at }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_commands_across_chunks() {
        let mut s = CommandSplitter::default();
        let stream =
            b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n*3\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$1\r\nx\r\n";
        let (a, b) = stream.split_at(7);
        assert!(s.feed(a).is_empty());
        assert_eq!(s.feed(b), ["GET", "CLIENT SETINFO"]);
        assert_eq!(s.feed(b"nonsense\r\n"), ["?"]);
    }
}
