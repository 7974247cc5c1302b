//! A server-sent-events parser for upstream streams: bytes in, `data` payloads out.

/// Incremental SSE parser (the `data` field only; comments, `event`, `id` and
/// `retry` are ignored). Handles `\n`, `\r\n` and events split across reads.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// Feed bytes; returns the payloads of the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            self.line(&line, &mut out);
        }
        self.buf.drain(..start);
        out
    }

    /// Bytes held for an event not finished yet (a line without its newline, data
    /// lines without the blank line that ends the event).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.data.as_ref().map_or(0, String::len)
    }

    /// The stream ended: a last event not followed by a blank line.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        let mut out = Vec::new();
        if !rest.is_empty() {
            let line = String::from_utf8_lossy(&rest)
                .trim_end_matches('\r')
                .to_string();
            self.line(&line, &mut out);
        }
        self.line("", &mut out);
        out.pop()
    }

    fn line(&mut self, line: &str, out: &mut Vec<String>) {
        if line.is_empty() {
            if let Some(d) = self.data.take() {
                out.push(d);
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere() {
        let text = b": comment\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line1\ndata:line2\n\ndata: [DONE]";
        for split in 0..text.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&text[..split]);
            got.extend(p.push(&text[split..]));
            got.extend(p.finish());
            assert_eq!(
                got,
                vec!["{\"a\":1}", "line1\nline2", "[DONE]"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_with_multibyte_utf8() {
        let text = "data: {\"t\":\"héllo ✓\"}\n\n".as_bytes();
        let mut p = SseParser::default();
        let mut got = Vec::new();
        for b in text {
            got.extend(p.push(std::slice::from_ref(b)));
        }
        assert_eq!(got, vec!["{\"t\":\"héllo ✓\"}"]);
        assert_eq!(p.finish(), None);
    }
}
