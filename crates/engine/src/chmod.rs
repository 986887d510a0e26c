//! `--chmod` values: an octal mode (`0755`), or a symbolic one as chmod(1)
//! takes it (`u+x`, `go-w`, `a=rX,u+s`), which BuildKit accepts since
//! Dockerfile 1.10 and applies to every copied file and directory from its
//! source mode, with no umask.

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Replaces the permission bits (and setuid/setgid/sticky).
    Octal(u32),
    /// Edits the source's mode, clause by clause.
    Symbolic(Vec<Clause>),
}

/// `[ugoa]*` followed by actions, as in `go-w` or `a=rX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bits the clause may touch: 0o4700 for `u`, 0o2070 for `g`, 0o1007 for
    /// `o`; all of them for `a` or nothing.
    who: u32,
    actions: Vec<(char, Perm)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    /// `rwxXst` letters.
    Letters(String),
    /// `=u`, `+g`...: copy another class's bits.
    Copy(char),
}

impl Chmod {
    /// Parses `--chmod`: octal up to 0o7777, else symbolic.
    pub fn parse(text: &str) -> Result<Chmod, String> {
        let bad = || {
            format!(
                "invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777, or a symbolic mode such as u+x or a=rX"
            )
        };
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            return u32::from_str_radix(text, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(bad);
        }
        let mut clauses = Vec::new();
        for part in text.split(',') {
            let who_len = part
                .find(|c: char| !"ugoa".contains(c))
                .unwrap_or(part.len());
            let mut who = 0;
            for c in part[..who_len].chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    _ => 0o7777,
                };
            }
            if who == 0 {
                who = 0o7777;
            }
            let mut rest = &part[who_len..];
            let mut actions = Vec::new();
            while let Some(op) = rest.chars().next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(bad());
                }
                rest = &rest[1..];
                let len = rest.find(['+', '-', '=']).unwrap_or(rest.len());
                let perm = &rest[..len];
                rest = &rest[len..];
                let perm = match perm {
                    "u" | "g" | "o" => Perm::Copy(perm.chars().next().unwrap_or('u')),
                    p if p.chars().all(|c| "rwxXst".contains(c)) => Perm::Letters(p.to_string()),
                    _ => return Err(bad()),
                };
                actions.push((op, perm));
            }
            if actions.is_empty() {
                return Err(bad());
            }
            clauses.push(Clause { who, actions });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode of a copied entry whose source mode is `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let Chmod::Symbolic(clauses) = self else {
            let Chmod::Octal(m) = self else {
                unreachable!()
            };
            return *m;
        };
        let mut mode = mode & 0o7777;
        for clause in clauses {
            for (op, perm) in &clause.actions {
                let bits = match perm {
                    Perm::Letters(letters) => {
                        let mut b = 0;
                        for c in letters.chars() {
                            b |= match c {
                                'r' => 0o444,
                                'w' => 0o222,
                                'x' => 0o111,
                                'X' if is_dir || mode & 0o111 != 0 => 0o111,
                                's' => 0o6000,
                                't' => 0o1000,
                                _ => 0,
                            };
                        }
                        b
                    }
                    Perm::Copy(class) => {
                        let rwx = match class {
                            'u' => (mode >> 6) & 7,
                            'g' => (mode >> 3) & 7,
                            _ => mode & 7,
                        };
                        rwx * 0o111
                    }
                } & clause.who;
                mode = match op {
                    '+' => mode | bits,
                    '-' => mode & !bits,
                    _ => (mode & !(clause.who & 0o7777)) | bits,
                };
            }
        }
        mode
    }

    /// The mode of directories the copy creates: an octal `--chmod`, else
    /// 0755 (fsutil's MkdirAll ignores symbolic modes).
    pub fn created_dir_mode(chmod: Option<&Chmod>) -> u32 {
        match chmod {
            Some(Chmod::Octal(m)) => *m,
            _ => 0o755,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(spec: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(spec).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_and_symbolic_modes() {
        assert_eq!(Chmod::parse("0755").unwrap(), Chmod::Octal(0o755));
        assert!(Chmod::parse("08").is_err());
        assert!(Chmod::parse("17777").is_err());
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("go-w", 0o666, false), 0o644);
        assert_eq!(apply("a=rX", 0o640, false), 0o444);
        assert_eq!(apply("a=rX", 0o640, true), 0o555);
        assert_eq!(apply("a=rX", 0o744, false), 0o555);
        assert_eq!(apply("u+s,g+s", 0o755, false), 0o6755);
        assert_eq!(apply("+t", 0o755, true), 0o1755);
        assert_eq!(apply("g=u", 0o740, false), 0o770);
        assert_eq!(apply("u=rw,go=r", 0o777, false), 0o644);
        assert_eq!(apply("+x", 0o600, false), 0o711);
        for bad in ["", "u", "u+q", "z+x", "u+x,", "rwx"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
