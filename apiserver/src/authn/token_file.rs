//! `--token-auth-file`: static bearer tokens for bootstrapping, one per
//! line as upstream reads them: `token,user,uid[,"group1,group2"]`
//! (CSV; lines starting with `#` are comments).

use std::collections::HashMap;
use std::path::Path;

use super::User;

#[derive(Default)]
pub struct TokenFile {
    users: HashMap<String, User>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{file} line {line}: {why}")]
    Line { file: String, line: usize, why: String },
}

/// Splits one CSV line (double quotes group commas; `""` is a quote).
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(last) = out.last_mut() {
                    last.push('"');
                }
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

impl TokenFile {
    pub fn parse(text: &str, file: &str) -> Result<TokenFile, TokenFileError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = fields(line);
            let bad = |why: &str| TokenFileError::Line {
                file: file.to_string(),
                line: i + 1,
                why: why.to_string(),
            };
            if f.len() < 3 {
                return Err(bad("expected token,user,uid[,\"groups\"]"));
            }
            if f[0].is_empty() || f[1].is_empty() {
                return Err(bad("the token and the user may not be empty"));
            }
            let groups = f
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if users.contains_key(&f[0]) {
                return Err(bad("duplicate token"));
            }
            users.insert(
                f[0].clone(),
                User {
                    name: f[1].clone(),
                    uid: f[2].clone(),
                    groups,
                    ..Default::default()
                },
            );
        }
        Ok(TokenFile { users })
    }

    pub fn load(path: &Path) -> Result<TokenFile, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenFileError::Read(path.display().to_string(), e))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn lookup(&self, token: &str) -> Option<User> {
        self.users.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_users_with_groups() {
        let file = TokenFile::parse(
            "# bootstrap\nsecret1,alice,1,\"devs,ops\"\nsecret2,bob,2\n",
            "tokens.csv",
        )
        .unwrap();
        let alice = file.lookup("secret1").unwrap();
        assert_eq!((alice.name.as_str(), alice.uid.as_str()), ("alice", "1"));
        assert_eq!(alice.groups, vec!["devs", "ops"]);
        assert!(file.lookup("secret2").unwrap().groups.is_empty());
        assert!(file.lookup("nope").is_none());
        let err = TokenFile::parse("only,two\n", "t.csv").err().unwrap().to_string();
        assert!(err.contains("t.csv line 1"), "{err}");
        assert!(TokenFile::parse("a,b,1\na,c,2\n", "t").is_err());
    }
}
