//! Stop strings over streamed text.
//!
//! Text that could be the start of a stop string is held back until it is ruled out,
//! so a client never receives part of a stop string and the returned text never
//! contains one.

/// Finds stop strings in text that arrives in pieces.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// Result of feeding text to a [`StopMatcher`].
#[derive(Debug, PartialEq, Eq)]
pub struct StopScan {
    /// Text that is safe to emit now.
    pub emit: String,
    /// A stop string was found; `emit` ends just before it.
    pub stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Feed new text.
    pub fn push(&mut self, text: &str) -> StopScan {
        if self.stops.is_empty() {
            return StopScan {
                emit: text.to_string(),
                stopped: false,
            };
        }
        self.held.push_str(text);
        // Earliest complete match wins.
        if let Some(pos) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let emit = self.held[..pos].to_string();
            self.held.clear();
            return StopScan {
                emit,
                stopped: true,
            };
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s
                .char_indices()
                .skip(1)
                .chain(std::iter::once((s.len(), ' ')))
            {
                let prefix = &s[..i];
                if i > keep && self.held.ends_with(prefix) {
                    keep = i;
                }
            }
        }
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopScan {
            emit,
            stopped: false,
        }
    }

    /// End of generation: release whatever was held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let r = m.push(p);
            out.push_str(&r.emit);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_split_across_pieces_is_not_emitted() {
        assert_eq!(
            feed(&["END"], &["abc E", "N", "D more"]),
            ("abc ".into(), true)
        );
    }

    #[test]
    fn false_start_is_released() {
        assert_eq!(feed(&["END"], &["abc E", "X"]), ("abc EX".into(), false));
        assert_eq!(feed(&["END"], &["abc EN"]), ("abc EN".into(), false));
    }

    #[test]
    fn earliest_of_several_stops() {
        assert_eq!(feed(&["b", "a"], &["xxab"]), ("xx".into(), true));
        assert_eq!(
            feed(&["\n\n"], &["line\n", "\nnext"]),
            ("line".into(), true)
        );
    }

    #[test]
    fn multibyte_stop_prefixes_cut_on_char_boundaries() {
        assert_eq!(feed(&["€€"], &["a€", "b"]), ("a€b".into(), false));
        assert_eq!(feed(&["€€"], &["a€", "€"]), ("a".into(), true));
    }
}
