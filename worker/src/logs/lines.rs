//! Bytes from a sandbox's pipe become lines: split on `\n`, a line longer than [`MAX_LINE`]
//! bytes split there, invalid UTF-8 replaced (U+FFFD), a partial line kept until its newline
//! comes or it is ended ([`Lines::end`]).

/// The longest line kept whole, in bytes; a longer one is cut into pieces of this size.
pub const MAX_LINE: usize = 256 * 1024;

/// The bytes of a line still waiting for its newline (see the module docs).
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Feeds `bytes`, calling `line` with each line they complete, in order (without its `\n`).
    pub fn feed(&mut self, mut bytes: &[u8], line: &mut impl FnMut(String)) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial.len();
            // A newline right after `room` bytes still ends a line that fits.
            let window = &bytes[..bytes.len().min(room + 1)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                let text = if self.partial.is_empty() {
                    text_of(&window[..i])
                } else {
                    self.partial.extend_from_slice(&window[..i]);
                    let text = text_of(&self.partial);
                    self.partial.clear();
                    text
                };
                line(text);
                bytes = &bytes[i + 1..];
            } else if bytes.len() >= room {
                // MAX_LINE bytes without a newline: a line of its own.
                self.partial.extend_from_slice(&bytes[..room]);
                line(text_of(&self.partial));
                self.partial.clear();
                bytes = &bytes[room..];
            } else {
                self.partial.extend_from_slice(bytes);
                bytes = &[];
            }
        }
    }

    /// Ends the partial line, if any: it becomes a line of its own.
    pub fn end(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let text = text_of(&self.partial);
        self.partial.clear();
        if self.partial.capacity() > 64 * 1024 {
            self.partial = Vec::new();
        }
        Some(text)
    }
}

/// The text of one line's bytes: UTF-8, invalid sequences replaced.
fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last bytes of a sandbox's output, kept in memory for the message of a failed sandbox.
#[derive(Debug)]
pub struct OutputTail {
    bytes: std::collections::VecDeque<u8>,
    keep: usize,
}

impl OutputTail {
    pub fn new(keep: usize) -> Self {
        Self {
            bytes: std::collections::VecDeque::with_capacity(keep),
            keep,
        }
    }

    /// Adds what the sandbox wrote.
    pub fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.keep)..];
        let over = (self.bytes.len() + chunk.len()).saturating_sub(self.keep);
        self.bytes.drain(..over);
        self.bytes.extend(chunk);
    }

    /// The kept bytes as text (a character cut at the start is replaced).
    pub fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(a.len() + b.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        String::from_utf8_lossy(&all).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> (Vec<String>, Option<String>) {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for c in chunks {
            lines.feed(c, &mut |l| out.push(l));
        }
        let rest = lines.end();
        (out, rest)
    }

    #[test]
    fn lines_are_split_on_newlines_across_chunks() {
        let (out, rest) = feed_all(&[b"a\nb", b"c\n\nd", b"e"]);
        assert_eq!(out, ["a", "bc", ""]);
        assert_eq!(rest.as_deref(), Some("de"));
        let (out, rest) = feed_all(&[b"one\ntwo\n"]);
        assert_eq!(out, ["one", "two"]);
        assert_eq!(rest, None);
    }

    #[test]
    fn long_lines_are_cut_at_the_limit() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let (out, rest) = feed_all(&[&long[..100], &long[100..], b"\nnext\n"]);
        assert_eq!(out.len(), 4, "two full pieces, the rest, next");
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[1].len(), MAX_LINE);
        assert_eq!(out[2].len(), 10);
        assert_eq!(out[3], "next");
        assert_eq!(rest, None);
        // Exactly MAX_LINE bytes then a newline: one line.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        let (out, rest) = feed_all(&[&exact[..10], &exact[10..]]);
        assert_eq!((out.len(), out[0].len(), rest), (1, MAX_LINE, None));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (out, rest) = feed_all(&[b"caf\xc3\xa9 \xff!\n", b"\xe2\x82"]);
        assert_eq!(out, ["café \u{fffd}!"]);
        assert_eq!(rest.as_deref(), Some("\u{fffd}"));
        // A character split across two chunks is whole in its line.
        let (out, _) = feed_all(&[b"\xe2\x82", b"\xac\n"]);
        assert_eq!(out, ["€"]);
    }

    #[test]
    fn the_output_tail_keeps_the_last_bytes() {
        let mut t = OutputTail::new(8);
        t.push(b"abc");
        t.push(b"defgh");
        assert_eq!(t.text(), "abcdefgh");
        t.push(b"ij");
        assert_eq!(t.text(), "cdefghij");
        t.push(b"0123456789");
        assert_eq!(t.text(), "23456789");
    }
}
