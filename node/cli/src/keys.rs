//! `vichain keys`: the keyring.

use anyhow::Result;
use serde_json::{Value, json};

use crate::{Cli, keyring, print};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCmd {
    /// Create a new key.
    Add { name: String },
    /// List keys (the built-in `dev` key first).
    List,
    /// Show one key.
    Show {
        name: String,
        /// Print only the address.
        #[arg(long)]
        address: bool,
    },
}

pub(crate) fn run(cli: &Cli, cmd: &KeysCmd) -> Result<()> {
    let ring = keyring(cli);
    let show = |k: &vichain_validator::keys::NamedKey| json!({"name": k.name, "address": k.address().to_string(), "public_key": k.public_key_hex()});
    match cmd {
        KeysCmd::Add { name } => {
            let k = ring.add(name)?;
            print(cli, &show(&k), || format!("{}  {}", k.name, k.address()));
        }
        KeysCmd::List => {
            let all = ring.list()?;
            let v: Vec<Value> = all.iter().map(show).collect();
            print(cli, &json!(v), || {
                all.iter()
                    .map(|k| format!("{:<16} {}", k.name, k.address()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        KeysCmd::Show { name, address } => {
            let k = ring.get(name)?;
            if *address {
                println!("{}", k.address());
            } else {
                print(cli, &show(&k), || {
                    format!(
                        "name:        {}\naddress:     {}\npublic key:  {}",
                        k.name,
                        k.address(),
                        k.public_key_hex()
                    )
                });
            }
        }
    }
    Ok(())
}
