//! Primitives the charts are drawn with: escaping for HTML/XML text and attributes,
//! coordinates that are never NaN, axes with round ticks, a colour-blind-safe palette
//! and a sequential colour scale.

use std::fmt::Write;

/// `s` escaped for HTML and XML text and attribute values. Characters XML 1.0 does
/// not allow (control characters other than tab, newline and carriage return,
/// U+FFFE, U+FFFF) and C1 controls become U+FFFD, so user labels cannot break the
/// document.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c) => o.push('\u{fffd}'),
            '\u{fffe}' | '\u{ffff}' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// A coordinate or length for SVG: non-finite values become 0, rounded to 0.1.
pub fn num(x: f64) -> String {
    let x = if x.is_finite() { x } else { 0.0 };
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// At most `max` characters of `s`, ending in "…" when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut o: String = s.chars().take(max.saturating_sub(1)).collect();
        o.push('…');
        o
    }
}

/// A label as shown: the empty label (a failed prediction) is named.
pub fn shown(label: &str) -> &str {
    if label.is_empty() {
        "(none)"
    } else {
        label
    }
}

/// Estimated width of `s` in pixels at `size` (average glyph of a sans-serif font).
pub fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.58
}

/// A value axis from 0 to a round maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The top of the axis (≥ the data's maximum, > 0).
    pub max: f64,
    /// Tick values from 0 to `max`.
    pub ticks: Vec<f64>,
    /// Distance between ticks.
    pub step: f64,
}

impl Axis {
    /// About `n` round ticks from 0 to at least `max` (1 when `max` is not positive
    /// or not finite).
    pub fn new(max: f64, n: usize) -> Axis {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let raw = max / n.max(1) as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let f = raw / mag;
        let step = mag
            * if f <= 1.0 {
                1.0
            } else if f <= 2.0 {
                2.0
            } else if f <= 2.5 {
                2.5
            } else if f <= 5.0 {
                5.0
            } else {
                10.0
            };
        let k = (max / step - 1e-9).ceil().max(1.0) as usize;
        Axis {
            max: step * k as f64,
            ticks: (0..=k).map(|i| step * i as f64).collect(),
            step,
        }
    }

    /// The unit interval with ticks every 0.2 (scores).
    pub fn unit() -> Axis {
        Axis {
            max: 1.0,
            ticks: (0..=5).map(|i| f64::from(i) * 0.2).collect(),
            step: 0.2,
        }
    }

    /// `v` in `[0, 1]` of the axis (clamped).
    pub fn frac(&self, v: f64) -> f64 {
        if v.is_finite() {
            (v / self.max).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// A tick's label with as many decimals as the step needs.
    pub fn label(&self, v: f64) -> String {
        let mut d = (-self.step.log10().floor()).max(0.0) as usize;
        if ((self.step / 10f64.powi(-(d as i32))) - 2.5).abs() < 1e-9 {
            d += 1;
        }
        format!("{v:.prec$}", prec = d.min(4))
    }
}

/// Okabe–Ito colours (distinguishable with the common colour-vision deficiencies),
/// without the yellow that is unreadable on white.
const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000",
];

/// The colour of the `i`-th target.
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// A sequential blue for `t` in `[0, 1]` (white to dark blue), as `#rrggbb`.
pub fn blues(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let stops = [
        (247.0, 251.0, 255.0),
        (107.0, 174.0, 214.0),
        (8.0, 48.0, 107.0),
    ];
    let (a, b, u) = if t < 0.5 {
        (stops[0], stops[1], t * 2.0)
    } else {
        (stops[1], stops[2], (t - 0.5) * 2.0)
    };
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// The opening `<svg>` tag of a chart `w` × `h` pixels, described by `label`.
pub fn open(w: f64, h: f64, label: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{l}\" font-size=\"12\">",
        w = num(w),
        h = num(h),
        l = escape(label)
    )
}

/// A `<text>` element; `attrs` are further attributes (already escaped).
pub fn text(out: &mut String, x: f64, y: f64, attrs: &str, content: &str) {
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\"{}{attrs}>{}</text>",
        num(x),
        num(y),
        if attrs.is_empty() { "" } else { " " },
        escape(content)
    );
}

/// A line.
pub fn line(out: &mut String, x1: f64, y1: f64, x2: f64, y2: f64, attrs: &str) {
    let _ = write!(
        out,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {attrs}/>",
        num(x1),
        num(y1),
        num(x2),
        num(y2)
    );
}

/// A rectangle with an optional hover text.
pub fn rect(out: &mut String, x: f64, y: f64, w: f64, h: f64, attrs: &str, title: Option<&str>) {
    let _ = write!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" {attrs}",
        num(x),
        num(y),
        num(w.max(0.0)),
        num(h.max(0.0))
    );
    match title {
        Some(t) => {
            let _ = write!(out, "><title>{}</title></rect>", escape(t));
        }
        None => out.push_str("/>"),
    }
}

/// A legend row of coloured squares and names starting at (`x`, `y`), wrapping at
/// `width`; returns the height used.
pub fn legend(out: &mut String, names: &[(&str, &str)], x: f64, y: f64, width: f64) -> f64 {
    let (mut cx, mut cy) = (x, y);
    for (name, colour) in names {
        let shown = clip(name, 40);
        let w = 16.0 + text_width(&shown, 12.0) + 18.0;
        if cx > x && cx + w > x + width {
            cx = x;
            cy += 18.0;
        }
        rect(
            out,
            cx,
            cy,
            11.0,
            11.0,
            &format!("fill=\"{colour}\" rx=\"2\""),
            None,
        );
        text(out, cx + 16.0, cy + 10.0, "", &shown);
        cx += w;
    }
    cy - y + 18.0
}

/// Every number in a coordinate attribute parses and is finite.
#[cfg(test)]
pub(crate) fn coords_finite(svg: &str) {
    for attr in [
        "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "height",
    ] {
        let pat = format!(" {attr}=\"");
        for part in svg.split(&pat).skip(1) {
            let v = &part[..part.find('"').unwrap()];
            let x: f64 = v.parse().unwrap_or_else(|_| panic!("{attr}={v:?}"));
            assert!(x.is_finite(), "{attr}={v}");
        }
    }
    assert!(
        !svg.contains("NaN") && !svg.contains("\"inf") && !svg.contains("\"-inf"),
        "{svg}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_quotes_and_invalid_characters() {
        assert_eq!(
            escape("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(
            escape("a\u{1}b\u{85}c\u{ffff}"),
            "a\u{fffd}b\u{fffd}c\u{fffd}"
        );
        assert_eq!(escape("tab\tnew\nline ünï"), "tab\tnew\nline ünï");
    }

    #[test]
    fn numbers_are_never_nan() {
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(f64::INFINITY), "0");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(7.0), "7");
    }

    #[test]
    fn axes_have_round_ticks_covering_the_data() {
        let a = Axis::new(433.9, 5);
        assert_eq!(a.step, 100.0);
        assert_eq!(a.max, 500.0);
        assert_eq!(a.ticks.len(), 6);
        assert_eq!(a.label(200.0), "200");
        let a = Axis::new(0.87, 5);
        assert_eq!((a.step, a.label(0.2)), (0.2, "0.2".to_string()));
        assert!(a.max >= 0.87);
        let a = Axis::new(1.2, 5);
        assert_eq!((a.step, a.label(0.25)), (0.25, "0.25".to_string()));
        // Degenerate data: a usable axis, no division by zero.
        for m in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            let a = Axis::new(m, 5);
            assert_eq!(a.max, 1.0, "{m}");
            assert!(a.frac(0.5).is_finite());
        }
        let a = Axis::new(100.0, 5);
        assert_eq!(a.ticks.last(), Some(&100.0));
        assert_eq!(a.frac(150.0), 1.0);
        assert_eq!(a.frac(f64::NAN), 0.0);
    }

    #[test]
    fn colours_and_clipping() {
        assert_eq!(blues(0.0), "#f7fbff");
        assert_eq!(blues(1.0), "#08306b");
        assert_eq!(blues(f64::NAN), "#f7fbff");
        assert_ne!(colour(0), colour(1));
        assert_eq!(colour(7), colour(0));
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(shown(""), "(none)");
    }
}
