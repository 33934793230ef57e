//! A system under test: something that runs the hello handler once per `call`.
//!
//! Adding a row to the latency table means writing a `System` (or a [`FnSystem`] closure) and
//! listing it in `scenarios::latency`.

/// The event every system sends, and the answer every system must give back.
pub const EVENT: &str = r#"{"name": "bench"}"#;
/// The JSON the hello handler returns for [`EVENT`].
pub const EXPECTED: &str = r#""Hello, bench!""#;

/// One system of the latency table.
pub trait System {
    /// Runs the hello handler once with [`EVENT`]; fails unless the answer is [`EXPECTED`].
    fn call(&mut self) -> anyhow::Result<()>;
}

/// A system made of a closure.
pub struct FnSystem<F>(pub F);

impl<F> std::fmt::Debug for FnSystem<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnSystem")
    }
}

impl<F: FnMut() -> anyhow::Result<()>> System for FnSystem<F> {
    fn call(&mut self) -> anyhow::Result<()> {
        (self.0)()
    }
}

/// Checks a handler's answer (surrounding whitespace aside) against [`EXPECTED`].
pub fn check_answer(who: &str, out: &[u8]) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(out);
    if text.trim() == EXPECTED {
        Ok(())
    } else {
        anyhow::bail!(
            "{who} answered {:?}, expected {EXPECTED}",
            truncate(text.trim(), 300)
        )
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The Python driver used by systems that start an interpreter per call (fresh python, OCI
/// runtimes): it loads `lambda_func.py` from the directory in argv[1], calls `handler` with the
/// JSON event in argv[2], and prints the JSON answer. Like the worker's runtime it decodes and
/// encodes with CPython's C accelerator `_json` rather than `import json` (which pulls in `re`
/// and costs about 12 ms here), so these rows are as lean as an interpreter-per-call design can
/// be.
pub const PY_DRIVER: &str = "import sys, _json\n\
sys.path.insert(0, sys.argv[1])\n\
import lambda_func\n\
class D:\n    strict = True\n    object_hook = object_pairs_hook = parse_constant = None\n    parse_float = float\n    parse_int = int\n\
event = _json.make_scanner(D())(sys.argv[2], 0)[0]\n\
enc = _json.make_encoder({}, None, _json.encode_basestring_ascii, None, ': ', ', ', False, False, False)\n\
sys.stdout.write(''.join(enc(lambda_func.handler(event), 0)))\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        check_answer("x", b"\"Hello, bench!\"\n").unwrap();
        let err = check_answer("runc", b"oops").unwrap_err().to_string();
        assert!(err.contains("runc answered \"oops\""), "{err}");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
