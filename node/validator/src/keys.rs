//! The client keyring: ed25519 account keys as JSON files under `HOME/keys/`.
//!
//! The name `dev` always resolves, even without a file, to the well-known key that
//! `vichaind dev` funds, so the CLI works against a dev chain with no setup.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use vichain_consensus::{Address, dev_signing_key};

/// Name of the built-in dev key.
pub const DEV_KEY: &str = "dev";

#[derive(Debug, Serialize, Deserialize)]
struct KeyFile {
    name: String,
    address: String,
    public_key: String,
    secret_key: String,
}

/// A named account key.
#[derive(Debug, Clone)]
pub struct NamedKey {
    pub name: String,
    pub key: SigningKey,
}

impl NamedKey {
    pub fn address(&self) -> Address {
        Address::from_public_key(&self.key.verifying_key())
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }
}

/// A directory of key files.
#[derive(Debug, Clone)]
pub struct Keyring {
    dir: PathBuf,
}

impl Keyring {
    pub fn new(home: &Path) -> Self {
        Self {
            dir: home.join("keys"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn check_name(name: &str) -> Result<()> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("key name {name:?} must be 1-64 letters, digits, '-' or '_'");
        }
        Ok(())
    }

    /// Creates a new random key; refuses to overwrite an existing one.
    pub fn add(&self, name: &str) -> Result<NamedKey> {
        Self::check_name(name)?;
        if name == DEV_KEY {
            bail!("{DEV_KEY:?} is the built-in dev key; choose another name");
        }
        if self.path(name).exists() {
            bail!("key {name:?} already exists in {}", self.dir.display());
        }
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let named = NamedKey {
            name: name.into(),
            key,
        };
        self.save(&named)?;
        Ok(named)
    }

    /// Writes a key file readable only by its owner.
    pub fn save(&self, named: &NamedKey) -> Result<()> {
        Self::check_name(&named.name)?;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let file = KeyFile {
            name: named.name.clone(),
            address: named.address().to_string(),
            public_key: named.public_key_hex(),
            secret_key: hex::encode(named.key.to_bytes()),
        };
        let path = self.path(&named.name);
        std::fs::write(&path, serde_json::to_string_pretty(&file)?)
            .with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<NamedKey> {
        let path = self.path(name);
        if name == DEV_KEY && !path.exists() {
            return Ok(NamedKey {
                name: DEV_KEY.into(),
                key: dev_signing_key(),
            });
        }
        Self::check_name(name)?;
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no key {name:?} in {} (try `vichain keys list`)",
                self.dir.display()
            )
        })?;
        let file: KeyFile = serde_json::from_str(&text)
            .with_context(|| format!("parsing key file {}", path.display()))?;
        let bytes: [u8; 32] = hex::decode(&file.secret_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{}: secret_key is not 32 bytes of hex", path.display()))?;
        Ok(NamedKey {
            name: name.into(),
            key: SigningKey::from_bytes(&bytes),
        })
    }

    /// Every key, the built-in dev key first.
    pub fn list(&self) -> Result<Vec<NamedKey>> {
        let mut out = vec![self.get(DEV_KEY)?];
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_owned)
            })
            .filter(|n| n != DEV_KEY)
            .collect();
        names.sort();
        for n in names {
            out.push(self.get(&n)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_and_dev_always_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::new(dir.path());
        let dev = ring.get(DEV_KEY).unwrap();
        assert_eq!(dev.key.to_bytes(), dev_signing_key().to_bytes());
        let alice = ring.add("alice").unwrap();
        assert!(ring.add("alice").is_err());
        assert_eq!(ring.get("alice").unwrap().address(), alice.address());
        let names: Vec<_> = ring.list().unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["dev", "alice"]);
        assert!(ring.get("bob").is_err());
        assert!(ring.add("../evil").is_err());
    }
}
