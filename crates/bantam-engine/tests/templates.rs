//! The real chat templates of the catalog models, rendered by Bantam, compared with
//! the reference renderer (Jinja2 as Hugging Face transformers configures it; see
//! tests/python/render_templates.py, which wrote expected.json).

use bantam_engine::template::{ChatTemplate, TemplateMessage, TemplateSource};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates");

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()).unwrap()
}

#[test]
fn chat_templates_match_reference() {
    let cases = load("cases.json");
    let expected = load("expected.json");
    let mut checked = 0;
    for (model, renders) in expected.as_object().unwrap() {
        let src = std::fs::read_to_string(format!("{DIR}/{model}.jinja")).unwrap();
        let t =
            ChatTemplate::new(src, TemplateSource::Gguf, "<BOS>".into(), "<EOS>".into()).unwrap();
        for (case, want) in renders.as_object().unwrap() {
            let c = &cases[case];
            let messages: Vec<TemplateMessage> = c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    TemplateMessage::new(
                        m["role"].as_str().unwrap(),
                        m["content"].as_str().unwrap(),
                    )
                })
                .collect();
            let add = c
                .get("add_generation_prompt")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let tools = c.get("tools");
            let got = t.render(&messages, add, tools).unwrap();
            assert_eq!(got, want.as_str().unwrap(), "{model} / {case}");
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}
