//! Layered state access. Reads fall through a stack of overlays to the committed
//! store; writes stay in the top overlay until it is merged into its parent. A
//! transaction runs on a [`Overlay`] of the block's overlay and is merged only when
//! every check has passed, so a rejected transaction changes nothing.

use prost::Message;
use vichain_proto::v1 as pb;

use crate::{Address, Error, Result, state_key, store::ChangeSet};

/// Read access to some version of the state.
pub trait StateRead {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

impl StateRead for crate::store::Storage {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(key)
    }
}

/// Pending changes over a parent state.
pub struct Overlay<'a> {
    parent: &'a dyn StateRead,
    changes: ChangeSet,
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("changes", &self.changes.len())
            .finish()
    }
}

impl<'a> Overlay<'a> {
    pub fn new(parent: &'a dyn StateRead) -> Self {
        Self {
            parent,
            changes: ChangeSet::new(),
        }
    }

    pub fn with_changes(parent: &'a dyn StateRead, changes: ChangeSet) -> Self {
        Self { parent, changes }
    }

    pub fn put_raw(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.changes.insert(key.into(), Some(value));
    }

    pub fn delete_raw(&mut self, key: impl Into<Vec<u8>>) {
        self.changes.insert(key.into(), None);
    }

    pub fn into_changes(self) -> ChangeSet {
        self.changes
    }

    pub fn changes(&self) -> &ChangeSet {
        &self.changes
    }

    /// Applies a child's changes on top of this overlay.
    pub fn merge(&mut self, child: ChangeSet) {
        self.changes.extend(child);
    }

    pub fn put<M: Message>(&mut self, key: impl Into<Vec<u8>>, value: &M) {
        self.put_raw(key, value.encode_to_vec());
    }

    pub fn put_u64(&mut self, key: &str, value: u64) {
        self.put_raw(key, value.to_be_bytes().to_vec());
    }

    pub fn put_account(&mut self, account: &pb::Account) -> Result<()> {
        let address = Address::from_bytes(&account.address)
            .map_err(|e| Error::Protocol(format!("account with bad address: {e}")))?;
        self.put(state_key::account(&address), account);
        Ok(())
    }
}

impl StateRead for Overlay<'_> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.changes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.parent.get_raw(key),
        }
    }
}

/// Typed reads over any state.
pub trait StateReadExt: StateRead {
    fn get_msg<M: Message + Default>(&self, key: &str) -> Result<Option<M>> {
        match self.get_raw(key.as_bytes())? {
            Some(bytes) => M::decode(bytes.as_slice())
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    key: key.into(),
                    reason: e.to_string(),
                }),
            None => Ok(None),
        }
    }

    fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get_raw(key.as_bytes())? {
            Some(bytes) => {
                let arr: [u8; 8] = bytes.as_slice().try_into().map_err(|_| Error::Corrupt {
                    key: key.into(),
                    reason: format!("{} bytes, expected 8", bytes.len()),
                })?;
                Ok(Some(u64::from_be_bytes(arr)))
            }
            None => Ok(None),
        }
    }

    fn params(&self) -> Result<pb::Params> {
        self.get_msg(state_key::PARAMS)?
            .ok_or_else(|| Error::Corrupt {
                key: state_key::PARAMS.into(),
                reason: "missing".into(),
            })
    }

    fn chain_id(&self) -> Result<String> {
        let raw = self
            .get_raw(state_key::CHAIN_ID.as_bytes())?
            .ok_or_else(|| Error::Corrupt {
                key: state_key::CHAIN_ID.into(),
                reason: "missing".into(),
            })?;
        String::from_utf8(raw).map_err(|e| Error::Corrupt {
            key: state_key::CHAIN_ID.into(),
            reason: e.to_string(),
        })
    }

    fn authority(&self) -> Result<Address> {
        let raw = self
            .get_raw(state_key::AUTHORITY.as_bytes())?
            .ok_or_else(|| Error::Corrupt {
                key: state_key::AUTHORITY.into(),
                reason: "missing".into(),
            })?;
        Address::from_bytes(&raw).map_err(|e| Error::Corrupt {
            key: state_key::AUTHORITY.into(),
            reason: e.to_string(),
        })
    }

    fn account(&self, address: &Address) -> Result<Option<pb::Account>> {
        self.get_msg(&state_key::account(address))
    }

    fn model(&self, model_id: &str) -> Result<Option<pb::Model>> {
        self.get_msg(&state_key::model(model_id))
    }

    fn worker(&self, operator: &Address) -> Result<Option<pb::Worker>> {
        self.get_msg(&state_key::worker(operator))
    }

    fn validator(&self, pub_key: &[u8]) -> Result<Option<pb::Validator>> {
        self.get_msg(&state_key::validator(pub_key))
    }

    fn job(&self, id: u64) -> Result<Option<pb::Job>> {
        self.get_msg(&state_key::job(id))
    }
}

impl<T: StateRead + ?Sized> StateReadExt for T {}
