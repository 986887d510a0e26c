//! The subset of Go's text/template that `docker inspect --format` users
//! write, over JSON values: text, and actions `{{.Path.To.Field}}`,
//! `{{json PIPE}}`, `{{index PIPE KEY...}}`, `{{join PIPE "SEP"}}`,
//! `{{upper PIPE}}`, `{{lower PIPE}}`. Values print as Go prints them:
//! strings bare, lists `[a b]`, maps `map[k:v]`, a missing field
//! `<no value>`.

use serde_json::Value;

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Action(Expr),
}

#[derive(Debug)]
enum Expr {
    /// `.A.B` (`.` alone: the whole value).
    Path(Vec<String>),
    /// A string or number literal.
    Literal(Value),
    /// A function and its arguments.
    Call(String, Vec<Expr>),
}

impl Template {
    /// A `--format` flag's template, parsed; `None` without the flag.
    pub fn from_flag(text: Option<&str>) -> anyhow::Result<Option<Template>> {
        text.map(Template::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--format: {e}"))
    }

    /// One line of `--format` output: the template over `value`, then a
    /// newline.
    pub fn line(&self, value: &Value) -> anyhow::Result<String> {
        let mut text = self
            .render(value)
            .map_err(|e| anyhow::anyhow!("--format: {e}"))?;
        text.push('\n');
        Ok(text)
    }

    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed action in {text:?}"))?;
            let inner = after[..end]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-');
            parts.push(Part::Action(parse_expr(inner.trim())?));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn render(&self, value: &Value) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(&unescape(text)),
                Part::Action(expr) => out.push_str(&go_text(&eval(expr, value)?)),
            }
        }
        Ok(out)
    }
}

/// `\n` and `\t` in the template's text, as a shell user writes them.
fn unescape(text: &str) -> String {
    text.replace("\\n", "\n").replace("\\t", "\t")
}

fn parse_expr(text: &str) -> Result<Expr, String> {
    let words = split_words(text)?;
    let Some((first, args)) = words.split_first() else {
        return Err("empty action {{}}".to_owned());
    };
    if args.is_empty() {
        return word(first);
    }
    let name = first.as_str();
    if !["json", "index", "join", "upper", "lower"].contains(&name) {
        return Err(format!(
            "function {name:?} is not supported: use json, index, join, upper or lower"
        ));
    }
    Ok(Expr::Call(
        name.to_owned(),
        args.iter().map(|a| word(a)).collect::<Result<_, _>>()?,
    ))
}

fn word(text: &str) -> Result<Expr, String> {
    if text == "." {
        return Ok(Expr::Path(Vec::new()));
    }
    if let Some(path) = text.strip_prefix('.') {
        return Ok(Expr::Path(path.split('.').map(str::to_owned).collect()));
    }
    if text.starts_with('"') {
        return serde_json::from_str(text)
            .map(Expr::Literal)
            .map_err(|_| format!("bad string {text}"));
    }
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Expr::Literal(Value::from(n)));
    }
    Err(format!(
        "{text:?} is not a field (.Name), a string or a number"
    ))
}

/// Words of an action, a quoted string counting as one.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            word.push(chars.next().unwrap_or('"'));
            let mut escaped = false;
            loop {
                let Some(c) = chars.next() else {
                    return Err(format!("unterminated string in {text:?}"));
                };
                word.push(c);
                if c == '"' && !escaped {
                    break;
                }
                escaped = c == '\\' && !escaped;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

fn eval(expr: &Expr, value: &Value) -> Result<Value, String> {
    match expr {
        Expr::Literal(v) => Ok(v.clone()),
        Expr::Path(path) => {
            let mut current = value;
            for field in path {
                match current.get(field) {
                    Some(next) => current = next,
                    None => return Ok(Value::Null),
                }
            }
            Ok(current.clone())
        }
        Expr::Call(name, args) => {
            let args: Vec<Value> = args
                .iter()
                .map(|a| eval(a, value))
                .collect::<Result<_, _>>()?;
            match (name.as_str(), args.as_slice()) {
                ("json", [v]) => Ok(Value::String(
                    serde_json::to_string(v).map_err(|e| e.to_string())?,
                )),
                ("upper", [v]) => Ok(Value::String(go_text(v).to_uppercase())),
                ("lower", [v]) => Ok(Value::String(go_text(v).to_lowercase())),
                ("join", [Value::Array(items), Value::String(sep)]) => Ok(Value::String(
                    items.iter().map(go_text).collect::<Vec<_>>().join(sep),
                )),
                ("join", [Value::Null, _]) => Ok(Value::String(String::new())),
                ("index", [v, keys @ ..]) if !keys.is_empty() => {
                    let mut current = v.clone();
                    for key in keys {
                        current = match (&current, key) {
                            (Value::Array(a), Value::Number(n)) => n
                                .as_u64()
                                .and_then(|i| a.get(i as usize).cloned())
                                .ok_or_else(|| format!("index {n} out of range"))?,
                            (Value::Object(o), Value::String(k)) => {
                                o.get(k).cloned().unwrap_or(Value::Null)
                            }
                            _ => {
                                return Err(format!(
                                    "cannot index {} with {key}",
                                    go_text(&current)
                                ));
                            }
                        };
                    }
                    Ok(current)
                }
                _ => Err(format!("wrong arguments for {name}")),
            }
        }
    }
}

/// A value as Go's text/template prints it.
fn go_text(value: &Value) -> String {
    match value {
        Value::Null => "<no value>".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_text).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => format!(
            "map[{}]",
            map.iter()
                .map(|(k, v)| format!("{k}:{}", go_text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(template: &str, value: &Value) -> String {
        Template::parse(template).unwrap().render(value).unwrap()
    }

    #[test]
    fn docker_inspect_templates_render_as_go_does() {
        let value = json!({
            "Id": "sha256:abc",
            "RepoTags": ["app:1", "app:latest"],
            "Config": {"Env": ["A=1", "B=2"], "Cmd": ["node", "server.js"], "Labels": {"k": "v"}},
        });
        assert_eq!(render("{{.Id}}", &value), "sha256:abc");
        assert_eq!(render("id={{ .Id }}\\n", &value), "id=sha256:abc\n");
        assert_eq!(
            render("{{json .Config.Cmd}}", &value),
            r#"["node","server.js"]"#
        );
        assert_eq!(render("{{.Config.Env}}", &value), "[A=1 B=2]");
        assert_eq!(render("{{index .RepoTags 1}}", &value), "app:latest");
        assert_eq!(render("{{index .Config.Labels \"k\"}}", &value), "v");
        assert_eq!(render("{{join .Config.Env \",\"}}", &value), "A=1,B=2");
        assert_eq!(render("{{.Config.Labels}}", &value), "map[k:v]");
        assert_eq!(render("{{.Nope}}", &value), "<no value>");
        assert!(Template::parse("{{.Id").is_err());
        assert!(Template::parse("{{printf \"%s\" .Id}}").is_err());
    }
}
