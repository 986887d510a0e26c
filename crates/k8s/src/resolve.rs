//! `hoist resolve`: image references in the user's own YAML rewritten to
//! the digests hoist built, and nothing else touched.
//!
//! The text is parsed for its events only (saphyr-parser), each scalar
//! with the span it occupies in the source; a scalar to rewrite has its
//! value replaced inside that span, and every other byte (comments, key
//! order, quoting style, anchors, line endings, document markers) is
//! copied as it was. No YAML is ever re-serialised.
//!
//! Which scalars are candidates (any kind of object, CRDs included):
//! - a value starting with `hoist://` (as ko's `ko://`), anywhere;
//! - a value of a key named `image` or ending in `Image` (CRDs:
//!   `sidecarImage`), or an item of a list under a key `images` or ending
//!   in `Images`, when the caller maps that exact text to an image
//!   (`--image`). Field names are camelCase, so an annotation such as
//!   `source-image` is never one.

use super::K8sError;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// The `hoist://` prefix that marks a reference to an image hoist built.
pub const PREFIX: &str = "hoist://";

/// A scalar that may name an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub value: &'a str,
    /// The mapping key it is the value of (for list items: the key of the
    /// list), when that key is a scalar.
    pub key: Option<&'a str>,
    /// Whether the key names an image field (see the module docs).
    pub image_field: bool,
    /// 1-based line and column, for messages.
    pub line: usize,
    pub column: usize,
}

/// One rewrite made, for the caller's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub line: usize,
    pub from: String,
    pub to: String,
}

/// Frames of the collection stack: where the next node sits.
enum Frame {
    Mapping {
        expect_key: bool,
        key: Option<String>,
    },
    Sequence {
        key: Option<String>,
    },
}

/// Rewrites `text` (named `path` in messages): `lookup` returns the new
/// reference for a candidate, or `None` to leave it. Returns the new text
/// and what changed.
pub fn resolve_text(
    path: &str,
    text: &str,
    lookup: &mut dyn FnMut(&Candidate) -> Result<Option<String>, K8sError>,
) -> Result<(String, Vec<Rewrite>), K8sError> {
    // Markers count characters; slicing needs bytes.
    let offsets: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let byte = |char_index: usize| offsets[char_index.min(offsets.len() - 1)];
    let mut edits: Vec<(usize, usize, String, Rewrite)> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| K8sError::Yaml {
            path: path.to_owned(),
            line: e.marker().line(),
            column: e.marker().col() + 1,
            reason: e.info().to_owned(),
        })?;
        match event {
            Event::Scalar(value, style, _, _) => {
                let as_key = matches!(
                    stack.last(),
                    Some(Frame::Mapping {
                        expect_key: true,
                        ..
                    })
                );
                if as_key {
                    if let Some(Frame::Mapping { key, expect_key }) = stack.last_mut() {
                        *key = Some(value.to_string());
                        *expect_key = false;
                    }
                    continue;
                }
                let (key, in_list) = match stack.last() {
                    Some(Frame::Mapping { key, .. }) => (key.as_deref(), false),
                    Some(Frame::Sequence { key }) => (key.as_deref(), true),
                    None => (None, false),
                };
                // Kubernetes field names are camelCase: `image`,
                // `sidecarImage`; not `source-image` (an annotation).
                let image_field = key.is_some_and(|k| {
                    if in_list {
                        k == "images" || k.ends_with("Images")
                    } else {
                        k == "image" || k.ends_with("Image")
                    }
                });
                // A block scalar keeps its chomping: its final line break
                // is not part of the reference.
                let value = match style {
                    ScalarStyle::Literal | ScalarStyle::Folded => {
                        value.trim_end_matches(['\n', '\r'])
                    }
                    _ => &value,
                };
                let candidate = Candidate {
                    value,
                    key,
                    image_field,
                    line: span.start.line(),
                    column: span.start.col() + 1,
                };
                if let Some(new) = lookup(&candidate)? {
                    let (start, end) =
                        value_range(text, &span, value, style, &byte).ok_or_else(|| {
                            K8sError::Resolve {
                                path: path.to_owned(),
                                line: candidate.line,
                                column: candidate.column,
                                reason: format!(
                                    "`{value}` is written in a way hoist cannot rewrite in place \
                                 (escapes or line breaks inside it): write it on one line, \
                                 plain or quoted"
                                ),
                            }
                        })?;
                    edits.push((
                        start,
                        end,
                        new.clone(),
                        Rewrite {
                            line: candidate.line,
                            from: value.to_string(),
                            to: new,
                        },
                    ));
                }
                value_done(&mut stack);
            }
            Event::Alias(_) => value_done(&mut stack),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let key = match stack.last() {
                    Some(Frame::Mapping {
                        expect_key: false,
                        key,
                    }) => key.clone(),
                    Some(Frame::Sequence { key }) => key.clone(),
                    _ => None,
                };
                stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::Mapping {
                        expect_key: true,
                        key: None,
                    }
                } else {
                    Frame::Sequence { key }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                // A collection used as a key leaves no usable key.
                if let Some(Frame::Mapping { expect_key, key }) = stack.last_mut()
                    && *expect_key
                {
                    *key = None;
                    *expect_key = false;
                    continue;
                }
                value_done(&mut stack);
            }
            Event::DocumentStart(_) | Event::DocumentEnd => stack.clear(),
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut rewrites = Vec::new();
    for (start, end, new, rewrite) in edits {
        out.push_str(&text[at..start]);
        out.push_str(&new);
        at = end;
        rewrites.push(rewrite);
    }
    out.push_str(&text[at..]);
    Ok((out, rewrites))
}

/// After a value in a mapping, the next node is a key.
fn value_done(stack: &mut [Frame]) {
    if let Some(Frame::Mapping { expect_key, .. }) = stack.last_mut() {
        *expect_key = true;
    }
}

/// The byte range of `value`'s text inside the scalar's span: the span
/// covers quotes and block indicators, the value sits verbatim inside
/// unless escapes or folding changed it (then `None`).
fn value_range(
    text: &str,
    span: &Span,
    value: &str,
    style: ScalarStyle,
    byte: &dyn Fn(usize) -> usize,
) -> Option<(usize, usize)> {
    if value.is_empty() || value.contains(['\n', '\r']) {
        return None;
    }
    let (mut start, end) = (byte(span.start.index()), byte(span.end.index()));
    // The span may open with the node's properties (`&anchor`, `!tag`).
    while text[start..].starts_with(['&', '!']) {
        let token = text[start..].find([' ', '\t', '\n', '\r'])?;
        start += token;
        start += text[start..].len() - text[start..].trim_start_matches([' ', '\t']).len();
    }
    let source = &text[start..end.max(start)];
    let found = match style {
        // The value is all of a plain scalar, and the inside of quotes.
        ScalarStyle::Plain => (source.trim_end() == value).then_some(0),
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            let quote = if style == ScalarStyle::SingleQuoted {
                '\''
            } else {
                '"'
            };
            (source.starts_with(quote) && source[1..].starts_with(value)).then_some(1)
        }
        // A block scalar's span starts at its content (past the header
        // line), or at the header: skip to the line holding the value.
        ScalarStyle::Literal | ScalarStyle::Folded => {
            let offset = source.find(value)?;
            let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
            (source[line_start..offset].chars().all(|c| c == ' ')
                && source[offset + value.len()..]
                    .chars()
                    .take_while(|&c| c != '\n')
                    .all(|c| c == ' ' || c == '\r'))
            .then_some(offset)
        }
    }?;
    Some((start + found, start + found + value.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_all(text: &str) -> (String, Vec<Rewrite>) {
        resolve_text("test.yaml", text, &mut |c| {
            Ok(c.value
                .strip_prefix(PREFIX)
                .map(|r| format!("{r}@sha256:0123")))
        })
        .unwrap()
    }

    #[test]
    fn every_scalar_style_is_rewritten_in_place() {
        let cases = [
            ("image: hoist://app\n", "image: app@sha256:0123\n"),
            (
                "image: 'hoist://app' # c\n",
                "image: 'app@sha256:0123' # c\n",
            ),
            (
                "image: \"hoist://app\"\r\n",
                "image: \"app@sha256:0123\"\r\n",
            ),
            (
                "image: >-\n  hoist://app\nx: 1\n",
                "image: >-\n  app@sha256:0123\nx: 1\n",
            ),
            (
                "image: |\n    hoist://app\n",
                "image: |\n    app@sha256:0123\n",
            ),
            (
                "{\"image\": \"hoist://app\"}\n",
                "{\"image\": \"app@sha256:0123\"}\n",
            ),
            (
                "a: &i hoist://app\nb: *i\n",
                "a: &i app@sha256:0123\nb: *i\n",
            ),
            (
                "é: ü\nimage: hoist://app\n",
                "é: ü\nimage: app@sha256:0123\n",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(resolve_all(input).0, expected, "{input:?}");
        }
    }

    #[test]
    fn keys_and_image_fields_are_reported() {
        let text = "spec:\n  image: a\n  sidecarImage: b\n  images: [c]\n  name: d\n";
        let mut seen = Vec::new();
        let _ = resolve_text("t", text, &mut |c| {
            seen.push((c.value.to_owned(), c.key.map(str::to_owned), c.image_field));
            Ok(None)
        });
        assert_eq!(
            seen,
            [
                ("a".into(), Some("image".into()), true),
                ("b".into(), Some("sidecarImage".into()), true),
                ("c".into(), Some("images".into()), true),
                ("d".into(), Some("name".into()), false),
            ]
        );
    }

    #[test]
    fn escaped_values_are_refused_not_mangled() {
        let err = resolve_text("t.yaml", "image: \"hoist:\\/\\/app\"\n", &mut |_| {
            Ok(Some("x".into()))
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("t.yaml:1:8: "), "{err}");
    }

    #[test]
    fn invalid_yaml_names_the_place() {
        let err = resolve_text("t.yaml", "a: [1, 2\nb: 1\n", &mut |_| Ok(None)).unwrap_err();
        assert!(err.to_string().starts_with("t.yaml:"), "{err}");
    }
}
