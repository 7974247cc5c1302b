//! Sampling settings: every range checked here, with a message naming the parameter.

use bantam_types::generate::SamplingParams;
use bantam_types::openai::{SamplingOptions, StopSpec};

use super::Invalid;

/// Most stop sequences.
pub const MAX_STOP: usize = bantam_types::limits::MAX_STOP;
/// Most choices per request (`n`).
pub const MAX_N: u32 = bantam_types::limits::MAX_N;

/// `Err` unless `v` is within `lo..=hi` (and a number).
pub fn range(param: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<(), Invalid> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) || x.is_nan() => Err(Invalid::param(
            param,
            format!("{param} must be between {lo} and {hi}, got {x}"),
        )),
        _ => Ok(()),
    }
}

/// `max_tokens` (or `max_completion_tokens`): at least 1 when given.
pub fn max_tokens(param: &str, v: Option<u32>) -> Result<Option<u32>, Invalid> {
    match v {
        Some(0) => Err(Invalid::param(param, format!("{param} must be at least 1"))),
        other => Ok(other),
    }
}

/// Check the sampling fields and produce the engine's settings and stop strings.
/// Unset values take llama.cpp's defaults; without a `seed` one is drawn at random
/// (so `n` choices can use seed, seed+1, …). Token ids in `logit_bias` are checked
/// against the vocabulary by the backend that knows the model.
pub fn sampling(f: &SamplingOptions) -> Result<(SamplingParams, Vec<String>), Invalid> {
    range("temperature", f.temperature, 0.0, 2.0)?;
    range("top_p", f.top_p, 0.0, 1.0)?;
    if f.top_p == Some(0.0) {
        return Err(Invalid::param("top_p", "top_p must be greater than 0"));
    }
    range("min_p", f.min_p, 0.0, 1.0)?;
    range("frequency_penalty", f.frequency_penalty, -2.0, 2.0)?;
    range("presence_penalty", f.presence_penalty, -2.0, 2.0)?;
    range("repetition_penalty", f.repetition_penalty, 0.01, 10.0)?;
    if let Some(k) = f.top_k {
        if k > bantam_types::limits::MAX_TOP_K {
            return Err(Invalid::param(
                "top_k",
                format!("top_k must be at most 100000 (0 disables it), got {k}"),
            ));
        }
    }
    let mut logit_bias = Vec::new();
    if let Some(map) = &f.logit_bias {
        for (k, &v) in map {
            let id: i32 = k.trim().parse().map_err(|_| {
                Invalid::param(
                    "logit_bias",
                    format!("logit_bias keys must be token ids, got {k:?}"),
                )
            })?;
            if id < 0 {
                return Err(Invalid::param(
                    "logit_bias",
                    format!("token id {id} is negative"),
                ));
            }
            range("logit_bias", Some(v), -100.0, 100.0)?;
            logit_bias.push((id, v as f32));
        }
        logit_bias.sort_by_key(|&(id, _)| id);
    }
    let stop = f.stop.clone().map(StopSpec::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOP {
        return Err(Invalid::param(
            "stop",
            format!("at most {MAX_STOP} stop sequences are allowed"),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(Invalid::param("stop", "stop sequences must not be empty"));
    }
    let d = SamplingParams::default();
    let f32_or = |v: Option<f64>, default: f32| v.map_or(default, |x| x as f32);
    let seed = match f.seed {
        Some(s) => s as u64,
        None => rand::random::<u32>() as u64,
    };
    Ok((
        SamplingParams {
            temperature: f32_or(f.temperature, d.temperature),
            top_p: f32_or(f.top_p, d.top_p),
            top_k: f.top_k.unwrap_or(d.top_k),
            min_p: f32_or(f.min_p, d.min_p),
            repetition_penalty: f32_or(f.repetition_penalty, d.repetition_penalty),
            frequency_penalty: f32_or(f.frequency_penalty, 0.0),
            presence_penalty: f32_or(f.presence_penalty, 0.0),
            penalty_last_n: d.penalty_last_n,
            seed,
            logit_bias,
        },
        stop,
    ))
}

/// `n`: 1 to [`MAX_N`] choices.
pub fn choices(n: Option<u32>) -> Result<u32, Invalid> {
    match n {
        None => Ok(1),
        Some(n) if (1..=MAX_N).contains(&n) => Ok(n),
        Some(n) => Err(Invalid::param(
            "n",
            format!("n must be between 1 and {MAX_N}, got {n}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_kept_or_drawn() {
        let f = SamplingOptions {
            seed: Some(42),
            ..Default::default()
        };
        assert_eq!(sampling(&f).unwrap().0.seed, 42);
        assert!(sampling(&SamplingOptions::default()).is_ok());
    }

    #[test]
    fn ranges_see_what_the_client_wrote() {
        let t = |x: f64| {
            sampling(&SamplingOptions {
                temperature: Some(x),
                ..Default::default()
            })
        };
        assert!(t(2.0).is_ok());
        assert_eq!(
            t(2.0000001).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        assert!(t(f64::NAN).is_err());
    }

    #[test]
    fn choices_are_bounded() {
        assert_eq!(choices(None).unwrap(), 1);
        assert_eq!(choices(Some(4)).unwrap(), 4);
        assert_eq!(choices(Some(0)).unwrap_err().param.as_deref(), Some("n"));
        assert!(choices(Some(MAX_N + 1)).is_err());
    }
}
