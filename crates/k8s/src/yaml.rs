//! YAML output: JSON values (keys sorted) through serde-saphyr, one
//! document per object, so the same objects always give the same bytes
//! and a change shows as a small diff.

use super::K8sError;

/// The values as a multi-document stream, `---` between documents.
pub fn documents<'a>(
    values: impl IntoIterator<Item = &'a serde_json::Value>,
) -> Result<String, K8sError> {
    let mut out = String::new();
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&document(value)?);
    }
    Ok(out)
}

/// One value as a YAML document ending in a newline.
pub fn document(value: &serde_json::Value) -> Result<String, K8sError> {
    // Long one-line strings (digest-pinned image references) stay on one
    // line: folding them at 80 columns would only make diffs noisier.
    // Multi-line strings (config files) are still literal blocks.
    let options = serde_saphyr::ser_options! {
        folded_wrap_chars: usize::MAX,
    };
    let mut text = serde_saphyr::to_string_with_options(value, options)
        .map_err(|e| K8sError::Serialize(e.to_string()))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}
