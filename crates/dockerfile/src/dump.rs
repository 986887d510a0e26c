//! BuildKit's AST dump format (`Node.Dump()`), used by `hoist parse
//! --format buildkit` and the conformance tests.
//!
//! One line per instruction: `(keyword ["--flag" ...] "arg" ...)`, values
//! quoted as Go's `strconv.Quote` does, ONBUILD's instruction nested in
//! parentheses, JSON and shell forms not told apart.

use super::ast::{Arg, Ast, Node};
use super::parser::go_quote;

/// The whole file, one parenthesised line per instruction, ending in `\n`.
pub fn dump(ast: &Ast) -> String {
    let mut out = String::new();
    for node in &ast.nodes {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

/// One instruction, without the surrounding parentheses.
pub fn dump_node(node: &Node) -> String {
    let mut out = node.keyword.to_lowercase();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    for arg in &node.args {
        out.push(' ');
        match arg {
            Arg::Value(v) => out.push_str(&go_quote(v)),
            Arg::Nested(child) => {
                out.push('(');
                out.push_str(&dump_node(child));
                out.push(')');
            }
        }
    }
    out.trim().to_string()
}
