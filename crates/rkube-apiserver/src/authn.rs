//! Authentication: who is asking. Client certificates (CN = user, O = groups), bearer
//! tokens from a static token file (kube-apiserver's `--token-auth-file` CSV format), or
//! anonymous. Every authenticated user is also in `system:authenticated`.

use std::collections::HashMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (from impersonation's `Impersonate-Extra-*`).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: Default::default(),
        }
    }

    pub fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo { name, uid, groups, extra: Default::default() }
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }
}

/// What a connection's client certificate says about who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCert {
    /// None was presented (or it names no user).
    Absent,
    /// Signed by the cluster CA: CN is the user, O the groups.
    Valid(UserInfo),
    /// Presented but not trusted: such a request is refused (401) unless a bearer token
    /// authenticates it, as kube-apiserver's x509 authenticator refuses it.
    Invalid,
}

/// Verifies a connection's client certificate chain against the cluster CA.
pub fn client_certificate(
    ca: &dyn rustls::server::danger::ClientCertVerifier,
    chain: Option<&[rustls_pki_types::CertificateDer<'static>]>,
) -> ClientCert {
    let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else { return ClientCert::Absent };
    if ca.verify_client_cert(leaf, intermediates, rustls_pki_types::UnixTime::now()).is_err() {
        return ClientCert::Invalid;
    }
    match rkube_pki::identity_from_der(leaf.as_ref()) {
        Some((user, groups)) if !user.is_empty() => {
            ClientCert::Valid(UserInfo::authenticated(user, String::new(), groups))
        }
        _ => ClientCert::Absent,
    }
}

/// Static bearer tokens.
#[derive(Default, Clone)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    /// Reads `token,user,uid[,"group1,group2"]` lines; blank lines and `#` comments skipped.
    pub fn load(path: &Path) -> Result<TokenFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        TokenFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<TokenFile, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err(format!("line {}: expected token,user,uid[,groups]", n + 1));
            }
            let groups: Vec<String> = fields
                .get(3)
                .map(|g| g.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            if fields[0].is_empty() {
                return Err(format!("line {}: empty token", n + 1));
            }
            tokens.insert(fields[0].clone(), UserInfo::authenticated(fields[1].clone(), fields[2].clone(), groups));
        }
        Ok(TokenFile { tokens })
    }

    pub fn lookup(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }
}

/// Splits one CSV line with double-quoted fields.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let f = TokenFile::parse("# c\nabc,alice,u1,\"dev,ops\"\nxyz,bob,u2\n").unwrap();
        let a = f.lookup("abc").unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(f.lookup("xyz").unwrap().groups, vec!["system:authenticated"]);
        assert!(f.lookup("nope").is_none());
        assert!(TokenFile::parse("onlytoken").is_err());
    }
}
