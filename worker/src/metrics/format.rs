//! The two exposition formats `/metrics` answers in, chosen by the request's `Accept`:
//! OpenMetrics (what Prometheus asks for, and what `prometheus-client` encodes) and the older
//! Prometheus text format 0.0.4 (for clients that do not ask for OpenMetrics: `curl`,
//! `promtool check metrics`, agents that predate it).

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// OpenMetrics when `accept` names it, else the text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a)
                if a.to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// OpenMetrics text rewritten in the text format 0.0.4: a counter family's `# HELP` and
/// `# TYPE` lines name its samples (`x_total`, where OpenMetrics names the family `x`), `# UNIT`
/// lines and the closing `# EOF` go. Samples are the same in both.
pub fn to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), "");
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            match help.take() {
                Some(h) if h.0 == name => flush_help(&mut out, Some(h), suffix),
                other => flush_help(&mut out, other, ""),
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        flush_help(&mut out, help.take(), "");
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, help, "");
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, suffix: &str) {
    if let Some((name, text)) = help {
        out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_asks_for_openmetrics_and_others_get_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        assert_eq!(Format::from_accept(None), Format::Text);
    }

    #[test]
    fn counters_are_named_by_their_samples_and_eof_goes() {
        let om = "# HELP a_calls Calls.\n# TYPE a_calls counter\na_calls_total{f=\"x\"} 2.0\n\
                  # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n# UNIT a_s seconds\n# EOF\n";
        assert_eq!(
            to_text(om),
            "# HELP a_calls_total Calls.\n# TYPE a_calls_total counter\na_calls_total{f=\"x\"} 2.0\n\
             # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n"
        );
    }
}
