//! Every source file of the risk area opens with a `//!` doc saying what it is.

#[test]
fn every_risk_file_has_a_module_doc() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for dir in ["src/risk", "src/llm", "src/github", "tests/it/risk"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text.starts_with("//!"),
                    "{} lacks a //! module doc",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} files found");
}
